# Stage: clean (see docs/cleaning.md). A map-reduce over hash buckets:
#   raw shard --clean_partition--> records with hash, bucketed --clean_bucket--> exact dedup + filters
#   + decontamination + license --near_dedup_signatures--> band hashes --near_dedup_band--> edges
#   --near_dedup_clusters--> clusters --clean_split--> data/{split}-0000X-of-0000N.parquet --dataset_card--> README.md
import os

from codeparrot.clean.filters import resolve_filters, stat_settings
from codeparrot.clean.near_dedup import band_groups, lsh_bands
from codeparrot.clean.stats import STAGES

CLEAN = config["clean"]
BUCKETS = [f"{b:05d}" for b in range(NUM_BUCKETS)]
CLEAN_FILTERS = resolve_filters(CLEAN["preset"], CLEAN["filters"])
# Paths the clean jobs read from outside the workflow: fail before any job if they are missing.
for key, path in (
    ("clean.filters.char_token_ratio.tokenizer", CLEAN["filters"]["char_token_ratio"]["tokenizer"]),
    ("clean.decontaminate.mbpp_path", CLEAN["decontaminate"]["mbpp_path"]),
):
    if path and not os.path.exists(path):
        raise ValueError(f"config key `{key}`: {path} does not exist; give an existing path or null")
NEAR_DEDUP = CLEAN["near_dedup"]
NEAR_BANDS, NEAR_ROWS = lsh_bands(NEAR_DEDUP)
BAND_GROUPS = band_groups(NEAR_BANDS, NEAR_DEDUP["band_jobs"])
STAGE_STATS = [f"results/stats/clean/{stage}.json" for stage in STAGES]


wildcard_constraints:
    bucket=r"\d{5}",
    band=r"\d{3}",
    shard=r"[^/]+",


rule clean_partition:
    input:
        shard="results/raw/shards/{shard}.json.gz",
        mbpp=CLEAN["decontaminate"]["mbpp_path"] or [],  # a changed local MBPP copy reruns this
    output:
        partition=temp("results/clean/partition/{shard}.arrow"),
        quarantine="results/quarantine/{shard}.jsonl.gz",
        stats="results/stats/clean/partition/{shard}.json",
    params:
        num_buckets=NUM_BUCKETS,
        # Only the settings that change a statistic: a changed threshold reruns the bucket jobs alone.
        stat_settings=stat_settings(CLEAN_FILTERS),
        max_line_bytes=CLEAN["max_line_bytes"],
        max_shard_bytes=CLEAN["max_shard_bytes"],
        on_corrupt_shard=config["source"]["on_corrupt_shard"],
        batch_bytes=CLEAN["batch_bytes"],
        decontaminate=CLEAN["decontaminate"],
    log:
        "results/logs/clean_partition/{shard}.log",
    threads: 1
    resources:
        mem_mb=lambda wc: 1000 + 6 * CLEAN["batch_bytes"] // 2**20,
        runtime=lambda wc, input: 10 + int(input.size_mb // 20),
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/clean_partition.py"


rule clean_bucket:
    input:
        partitions=partition_files,
        # A user-given tokenizer is an input, so replacing its files reruns the filter.
        tokenizer=CLEAN["filters"]["char_token_ratio"]["tokenizer"] or [],
    output:
        filtered="results/clean/filtered/bucket-{bucket}.parquet",
        removed="results/clean/removed/bucket-{bucket}.parquet",
        stats="results/stats/clean/bucket/bucket-{bucket}.json",
    params:
        bucket=lambda wc: int(wc.bucket),
        seed=config["seed"],
        filters=CLEAN_FILTERS,
        license=CLEAN["license"],
    log:
        "results/logs/clean_bucket/bucket-{bucket}.log",
    threads: 1
    resources:
        # One bucket is about 1/num_buckets of the (uncompressed) partitioned data.
        mem_mb=lambda wc, input: 1500 + int(8 * input.size_mb / NUM_BUCKETS),
        runtime=lambda wc, input: 10 + int(input.size_mb / NUM_BUCKETS / 5),
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/clean_bucket.py"


rule near_dedup_signatures:
    input:
        "results/clean/filtered/bucket-{bucket}.parquet",
    output:
        signatures=temp("results/clean/near_dedup/signatures/bucket-{bucket}.parquet"),
        stats="results/stats/clean/signatures/bucket-{bucket}.json",
    params:
        bucket=lambda wc: int(wc.bucket),
        ngram=NEAR_DEDUP["ngram"],
        num_perm=NEAR_DEDUP["num_perm"],
        bands=NEAR_BANDS,
        rows=NEAR_ROWS,
        min_words=NEAR_DEDUP["min_words"],
        seed=config["seed"],
        batch_bytes=NEAR_DEDUP["batch_bytes"],
    log:
        "results/logs/near_dedup_signatures/bucket-{bucket}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1500 + int(3 * input.size_mb) + 40 * NEAR_DEDUP["batch_bytes"] // 2**20,
        runtime=lambda wc, input: 10 + int(input.size_mb / 5),
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/near_dedup_signatures.py"


rule near_dedup_band:
    input:
        expand("results/clean/near_dedup/signatures/bucket-{bucket}.parquet", bucket=BUCKETS),
    output:
        temp("results/clean/near_dedup/edges/bands-{band}.parquet"),
    params:
        bands=lambda wc: BAND_GROUPS[int(wc.band)],
    log:
        "results/logs/near_dedup_band/bands-{band}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1000 + int(input.size_mb / max(NEAR_BANDS, 1) * 6),
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/near_dedup_band.py"


rule near_dedup_clusters:
    input:
        edges=expand("results/clean/near_dedup/edges/bands-{band:03d}.parquet", band=range(len(BAND_GROUPS))),
        signatures=expand("results/clean/near_dedup/signatures/bucket-{bucket}.parquet", bucket=BUCKETS),
    output:
        clusters="results/clean/near_dedup/clusters.parquet",
        stats="results/stats/clean/near_dedup/clusters.json",
    log:
        "results/logs/near_dedup_clusters.log",
    threads: 1
    resources:
        mem_mb=lambda wc, input: 2000 + int(2 * input.size_mb),
        runtime=60,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/near_dedup_clusters.py"


rule clean_split:
    input:
        filtered="results/clean/filtered/bucket-{bucket}.parquet",
        clusters="results/clean/near_dedup/clusters.parquet" if NEAR_DEDUP["enabled"] else [],
    output:
        train=f"{DATASET}/data/train-{{bucket}}-of-{NUM_BUCKETS:05d}.parquet",
        validation=f"{DATASET}/data/validation-{{bucket}}-of-{NUM_BUCKETS:05d}.parquet",
        stats="results/stats/clean/split/bucket-{bucket}.json",
    params:
        bucket=lambda wc: int(wc.bucket),
        seed=config["seed"],
        validation_fraction=CLEAN["split"]["validation_fraction"],
        split_by=CLEAN["split"]["by"],
    log:
        "results/logs/clean_split/bucket-{bucket}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1000 + int(4 * input.size_mb),
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/clean_split.py"


rule dataset_card:
    input:
        train=dataset_files("train"),
        validation=dataset_files("validation"),
        partition_stats=partition_stats,
        bucket_stats=expand("results/stats/clean/bucket/bucket-{bucket}.json", bucket=BUCKETS),
        signature_stats=(
            expand("results/stats/clean/signatures/bucket-{bucket}.json", bucket=BUCKETS)
            if NEAR_DEDUP["enabled"]
            else []
        ),
        near_dedup_stats="results/stats/clean/near_dedup/clusters.json" if NEAR_DEDUP["enabled"] else [],
        split_stats=expand("results/stats/clean/split/bucket-{bucket}.json", bucket=BUCKETS),
    output:
        card=f"{DATASET}/README.md",
        stats=STAGE_STATS,
    params:
        pretty_name=PUBLISH["pretty_name"],
        settings={"seed": config["seed"], "clean": CLEAN},
    log:
        "results/logs/dataset_card.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/dataset_card.py"


rule push_dataset:
    input:
        card=f"{DATASET}/README.md",
        data=dataset_files("train") + dataset_files("validation"),
    output:
        "results/publish/dataset.json",
    params:
        repo_id=PUBLISH["repo_id"],
        revision=PUBLISH["revision"],
    log:
        "results/logs/push_dataset.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/push_dataset.py"
