# Config validation and input functions shared by all stages.
from pathlib import Path

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
