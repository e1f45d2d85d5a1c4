"""Last steps: drop near duplicates, split train/validation, write the Hub dataset layout."""

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from codeparrot.arrow import read_parquet
from codeparrot.clean.filters import seeded_uniform
from codeparrot.clean.stats import counter_dict, read_stats, sum_stats, write_stats
from codeparrot.atomic import atomic_output, atomic_write_text

SPLITS = ("train", "validation")


def split_file_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def read_bucket_rows(path: str, bucket: int, columns: list[str] | None = None) -> pa.Table:
    """Rows of one bucket from a parquet file sorted by `bucket`, reading only the row groups whose
    statistics can hold it (without pyarrow.dataset: see arrow.read_parquet)."""
    f = pq.ParquetFile(path)
    index = f.schema_arrow.get_field_index("bucket")
    groups = []
    for i in range(f.metadata.num_row_groups):
        stats = f.metadata.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max or stats.min <= bucket <= stats.max:
            groups.append(i)
    schema = f.schema_arrow if columns is None else pa.schema([f.schema_arrow.field(c) for c in columns])
    table = f.read_row_groups(groups, columns=columns) if groups else schema.empty_table()
    return table.filter(pc.equal(table["bucket"], bucket))


def near_duplicate_drops(clusters_path: str | None, bucket: int) -> tuple[set[int], dict[int, int]]:
    """Row numbers of this bucket that near dedup removes, and cluster size per clustered row."""
    if not clusters_path:
        return set(), {}
    table = read_bucket_rows(clusters_path, bucket, columns=["id", "keep", "size", "bucket"])
    rows = (table["id"].to_numpy() & np.uint64(0xFFFFFFFF)).astype(np.int64).tolist()
    drops = {r for r, keep in zip(rows, table["keep"].to_pylist()) if not keep}
    return drops, dict(zip(rows, table["size"].to_pylist()))


def assign_split(keys: list[str], seed: int, validation_fraction: float) -> np.ndarray:
    """True for validation: a seeded draw per key (file hash or repository), so stable in any order."""
    return np.array([seeded_uniform(seed, "split", k) < validation_fraction for k in keys], dtype=bool)


def finalize_bucket(
    filtered_path: str, clusters_path: str | None, bucket: int, split_paths: dict[str, str], stats_path: str,
    seed: int, validation_fraction: float, split_by: str,
) -> dict:
    """Drop near duplicates of one bucket and write its train and validation files."""
    table = read_parquet(filtered_path)
    drops, sizes = near_duplicate_drops(clusters_path, bucket)
    table = table.append_column("near_duplicates", pa.array([sizes.get(i, 1) for i in range(table.num_rows)], pa.int64()))
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(drops)] = False
    kept = table.filter(pa.array(keep))
    keys = kept["repo_name" if split_by == "repository" else "hash"].to_pylist()
    validation = assign_split(keys, seed, validation_fraction)
    stats = {"bucket": bucket, "records_in": table.num_rows, "near_duplicates_removed": len(drops),
             "near_duplicates_bytes_removed": pc.sum(pc.binary_length(table["content"]).filter(pa.array(~keep))).as_py() or 0,
             "kept_by_license": counter_dict(Counter(l or "(unknown)" for l in kept["license"].to_pylist())),
             "kept_by_extension": counter_dict(Counter(Path(p).suffix or "(none)" for p in kept["path"].to_pylist())),
             "splits": {}}
    for split, mask in (("train", ~validation), ("validation", validation)):
        part = kept.filter(pa.array(mask))
        # An empty split file gets no row group at all: `datasets` cannot read a row group of 0 rows.
        with atomic_output(split_paths[split]) as tmp, pq.ParquetWriter(tmp, part.schema, compression="zstd") as writer:
            if part.num_rows:
                writer.write_table(part)
        stats["splits"][split] = {"records": part.num_rows,
                                  "bytes": pc.sum(pc.binary_length(part["content"])).as_py() or 0}
    write_stats(stats_path, stats)
    return stats


def features(schema: pa.Schema) -> list[dict]:
    names = {pa.string(): "string", pa.large_string(): "large_string", pa.int64(): "int64",
             pa.float64(): "float64", pa.bool_(): "bool"}
    return [{"name": f.name, "dtype": names.get(f.type, str(f.type))} for f in schema]


def write_dataset_card(
    dataset_dir: str, card_path: str, stats_dir: str, partition_stats: list[str], bucket_stats: list[str],
    signature_stats: list[str], near_dedup_stats: str | None, finalize_stats: list[str], pretty_name: str, settings: dict,
) -> dict:
    """Aggregate the stage statistics (one JSON per stage) and write README.md with YAML metadata."""
    read = sum_stats([{k: v for k, v in s.items() if k != "shard"} for s in read_stats(partition_stats)])
    buckets = sum_stats([{k: v for k, v in s.items() if k != "bucket"} for s in read_stats(bucket_stats)])
    near = read_stats([near_dedup_stats])[0] if near_dedup_stats else {"clusters": 0, "removed": 0}
    signed = sum_stats([{k: v for k, v in s.items() if k in ("files", "signed", "skipped_short")} for s in read_stats(signature_stats)])
    near = {**near, **signed}
    final = sum_stats([{k: v for k, v in s.items() if k != "bucket"} for s in read_stats(finalize_stats)])
    removed = dict(buckets["removed_by_reason"])
    removed["exact_duplicate"] = buckets["exact_dedup"]["removed"]
    removed["near_duplicate"] = final["near_duplicates_removed"]
    kept = sum(s["records"] for s in final["splits"].values())
    summary = {
        "records_in": read["records_in"],
        "bytes_in": read["bytes_in"],
        "quarantined": read["quarantined"],
        "quarantined_by_reason": read["quarantined_by_reason"],
        "normalised": read["normalised"],
        "removed_by_reason": dict(sorted(removed.items())),
        "kept": kept,
        "splits": final["splits"],
    }
    # The accounting identity: nothing is dropped silently.
    accounted = kept + sum(removed.values()) + read["quarantined"]
    if accounted != read["records_in"]:
        raise RuntimeError(f"accounting mismatch: {read['records_in']} records in, {accounted} accounted for")
    per_stage = {"read": read, "exact_dedup_and_filters": buckets, "near_dedup": near, "split": final, "clean": summary}
    for stage, stats in per_stage.items():
        write_stats(Path(stats_dir) / f"{stage}.json", stats)

    data_dir = Path(dataset_dir) / "data"
    files = {s: sorted(p.name for p in data_dir.glob(f"{s}-*.parquet")) for s in SPLITS}
    schema = pq.read_schema(data_dir / files["train"][0])
    licenses = sorted({l for s in SPLITS for f in files[s] for l in read_parquet(data_dir / f, columns=["license"])["license"].drop_null().unique().to_pylist()})
    metadata = {
        "license": "other",
        "language": ["code"],
        "task_categories": ["text-generation"],
        "pretty_name": pretty_name,
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in SPLITS]}],
        "dataset_info": {
            "features": features(schema),
            "splits": [{"name": s, "num_examples": final["splits"][s]["records"], "num_bytes": final["splits"][s]["bytes"]}
                       for s in SPLITS],
        },
    }
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "",
        f"# {metadata['pretty_name']}", "",
        "Python files cleaned like CodeParrot (exact dedup, heuristic filters, decontamination, near dedup),",
        "produced by the CodeParrot Snakemake workflow. Each file keeps its source license "
        f"(column `license`; {len(licenses)} distinct values), so the dataset license is `other`.", "",
        "## Cleaning statistics", "",
        "| step | files |", "|---|---:|",
        f"| records read | {read['records_in']:,} |",
        f"| quarantined (bad input) | {read['quarantined']:,} |",
        *[f"| removed: {reason} | {n:,} |" for reason, n in sorted(removed.items())],
        *[f"| kept: {s} | {final['splits'][s]['records']:,} |" for s in SPLITS], "",
        f"Near-duplicate clusters: {near.get('clusters', 0):,}. Settings:", "",
        "```yaml", yaml.safe_dump(settings, sort_keys=True).rstrip(), "```", "",
        "## Columns", "",
        "`repo_name, path, copies, size, content, license` as in the GitHub BigQuery export; `hash` (md5 of the",
        "content without whitespace), `line_mean, line_max, alpha_frac, autogenerated, config_or_test,",
        "has_no_keywords, has_few_assignments, char_token_ratio` (filter statistics), `exact_copies` and",
        "`near_duplicates` (size of the file's exact and near-duplicate groups).", "",
    ]
    atomic_write_text(card_path, "\n".join(lines))
    return summary


def push_dataset(dataset_dir: str, card_path: str, out_path: str, repo_id: str, revision: str | None) -> dict:
    """Upload the dataset folder to the Hub (see codeparrot.hub.push_folder) and record where."""
    from codeparrot.hub import push_folder

    if not Path(card_path).is_file():
        raise FileNotFoundError(f"{card_path} is missing: run the dataset_card rule first")
    return push_folder(dataset_dir, repo_id, "dataset", out_path, revision)
