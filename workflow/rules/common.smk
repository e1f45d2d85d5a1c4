# Config validation and input functions shared by all stages.
from pathlib import Path

from codeparrot.clean.split import split_file_name
from codeparrot.config import validate_config

# Fails before any job, naming the key, the value and what is allowed.
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

# The checkpoint that writes results/raw/ for each source kind (see source.smk).
RAW_CHECKPOINT = {
    "local": "collect_local",
    "hub": "collect_hub",
    "gcs": "gcs_download",
    "bigquery": "gcs_download",
}[config["source"]["kind"]]


def raw_shard_names():
    """Raw shard names (`file-000000000000`, ...); call it inside an input function so that
    Snakemake re-evaluates the DAG once the raw data checkpoint has run."""
    import json

    manifest = getattr(checkpoints, RAW_CHECKPOINT).get().output.manifest
    with open(manifest) as f:
        return [s["file"].removesuffix(".json.gz") for s in json.load(f)["shards"]]


# The published dataset (clean.smk): one parquet file per hash bucket and split, so the file
# names are known when the DAG is built.
DATASET = "results/dataset"
NUM_BUCKETS = config["clean"]["num_buckets"]
PUBLISH = config["publish"]


def dataset_files(split):
    """Published parquet files of one split (known at DAG-parse time: one per bucket)."""
    return [f"{DATASET}/data/{split_file_name(split, b, NUM_BUCKETS)}" for b in range(NUM_BUCKETS)]


def hub_push_targets():
    """The optional Hub pushes (dataset, initial model, trained model): each only when its repo id is set."""
    receipts = {
        "results/publish/dataset.json": PUBLISH["repo_id"],
        "results/model/init_pushed.json": config["model"]["repo_id"],
        "results/train/hub_push.json": config["train"]["hub"]["repo_id"],
    }
    return [receipt for receipt, repo_id in receipts.items() if repo_id]


def partition_files(wildcards):
    return expand("results/clean/partition/{shard}.arrow", shard=raw_shard_names())


def partition_stats(wildcards):
    return expand("results/stats/clean/partition/{shard}.json", shard=raw_shard_names())
