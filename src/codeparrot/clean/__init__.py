"""Cleaning at scale: raw shards -> exact dedup -> filters -> decontamination -> near dedup -> Hub dataset.

One module per step; each Snakemake rule calls one function (see workflow/rules/clean.smk):

    partition.partition_shard      raw shard -> records with hash + bucket, quarantine of bad lines
    bucket.clean_bucket            exact dedup, heuristic filters, decontamination, license per bucket
    near_dedup.*                   MinHash signatures -> LSH band edges -> union-find clusters
    publish.*                      drop near duplicates, split, write Hub layout + dataset card, push
"""
