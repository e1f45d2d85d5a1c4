"""The whole clean stage in one process, step for step as the Snakemake DAG runs it.

For tests, benchmarks and notebooks; the workflow runs each step as its own job instead.
"""

from pathlib import Path

from codeparrot.clean.bucket import clean_bucket
from codeparrot.clean.filters import resolve_filters, stat_settings
from codeparrot.clean.near_dedup import band_edges, band_groups, bucket_signatures, cluster_duplicates, lsh_bands
from codeparrot.clean.partition import partition_shard, shard_name
from codeparrot.clean.publish import dataset_card
from codeparrot.clean.split import SPLITS, split_bucket, split_file_name
from codeparrot.config import validate_config

# The schema is the one source of the defaults (workflow and library cannot drift apart).
SCHEMA = Path(__file__).resolve().parents[3] / "workflow/schemas/clean.schema.yaml"


def clean_settings(**overrides) -> dict:
    """The `clean` config section as the workflow sees it: `overrides` with the schema's defaults filled in."""
    return validate_config(overrides, SCHEMA)


def clean_dataset(raw_paths: list[str], work_dir: str, dataset_dir: str, seed: int = 1, settings: dict | None = None,
                  on_corrupt_shard: str = "fail") -> dict:
    """Raw shards -> published dataset folder; returns the summary statistics (stats/clean.json).

    `on_corrupt_shard`: source.on_corrupt_shard."""
    s = settings or clean_settings()
    work, n = Path(work_dir), s["num_buckets"]
    for sub in ("partition", "quarantine", "stats", "filtered", "removed", "signatures", "edges"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    filters = resolve_filters(s["preset"], s["filters"])
    partitions, partition_stats = [], []
    for raw in raw_paths:
        name = shard_name(raw)
        partitions.append(str(work / "partition" / f"{name}.arrow"))
        partition_stats.append(str(work / "stats" / f"partition-{name}.json"))
        partition_shard(raw, partitions[-1], str(work / "quarantine" / f"{name}.jsonl.gz"), partition_stats[-1],
                        n, stat_settings(filters), s["max_line_bytes"], s["batch_bytes"], s["decontaminate"],
                        s["max_shard_bytes"], on_corrupt_shard)
    filtered = [str(work / "filtered" / f"bucket-{b:05d}.parquet") for b in range(n)]
    bucket_stats = [str(work / "stats" / f"bucket-{b:05d}.json") for b in range(n)]
    for b in range(n):
        clean_bucket(partitions, b, filtered[b], str(work / "removed" / f"bucket-{b:05d}.parquet"), bucket_stats[b],
                     seed, filters, s["license"])
    near = s["near_dedup"]
    signature_stats, clusters, clusters_stats = [], None, None
    if near["enabled"]:
        bands, rows = lsh_bands(near)
        signatures = [str(work / "signatures" / f"bucket-{b:05d}.parquet") for b in range(n)]
        signature_stats = [str(work / "stats" / f"signatures-{b:05d}.json") for b in range(n)]
        for b in range(n):
            bucket_signatures(filtered[b], b, signatures[b], signature_stats[b], near["ngram"], near["num_perm"],
                              bands, rows, near["min_words"], seed, near["batch_bytes"])
        groups = band_groups(bands, near["band_jobs"])
        edges = [str(work / "edges" / f"bands-{g:03d}.parquet") for g in range(len(groups))]
        for path, group in zip(edges, groups):
            band_edges(signatures, group, path)
        clusters, clusters_stats = str(work / "clusters.parquet"), str(work / "stats" / "clusters.json")
        cluster_duplicates(edges, signatures, clusters, clusters_stats)
    split_stats = [str(work / "stats" / f"split-{b:05d}.json") for b in range(n)]
    for b in range(n):
        paths = {split: str(Path(dataset_dir) / "data" / split_file_name(split, b, n)) for split in SPLITS}
        split_bucket(filtered[b], clusters, b, paths, split_stats[b], seed, s["split"]["validation_fraction"],
                     s["split"]["by"])
    return dataset_card(dataset_dir, str(Path(dataset_dir) / "README.md"), str(work / "stats" / "clean"),
                        partition_stats, bucket_stats, signature_stats, clusters_stats, split_stats,
                        "CodeParrot clean Python", {"seed": seed, "clean": s})
