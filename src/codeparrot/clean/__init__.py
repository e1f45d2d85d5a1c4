"""Cleaning at scale: raw shards -> exact dedup -> filters -> decontamination -> near dedup -> Hub dataset.

Each Snakemake rule (workflow/rules/clean.smk) runs one script that calls one function:

    clean_partition        partition.partition_shard      raw shard -> records with hash + bucket, quarantine
    clean_bucket           bucket.clean_bucket            exact dedup, filters, decontamination, license per bucket
    near_dedup_signatures  near_dedup.bucket_signatures   MinHash band hashes per bucket
    near_dedup_band        near_dedup.band_edges          LSH band collisions -> edges
    near_dedup_clusters    near_dedup.cluster_duplicates  union-find clusters, one keeper each
    clean_split            split.split_bucket             drop near duplicates, train/validation files
    dataset_card           publish.dataset_card           stats.aggregate_clean_stats + README.md
    push_dataset           publish.push_dataset           upload the dataset folder to the Hub

Shared internals, one module each: filters (the filter table and its typed settings), seeded
(per-file seeded draws), doc_id (the near-dedup document id), token_counter and gpt2_bytes
(the char_token_ratio filter's token counts), stats (statistics JSON). local.clean_dataset runs
the whole stage in one process.
"""
