"""Drop near duplicates and split train/validation, per bucket: the dataset's parquet files."""

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeparrot.arrow import read_parquet
from codeparrot.atomic import atomic_output
from codeparrot.clean.doc_id import decode_doc_ids
from codeparrot.clean.seeded import seeded_uniform
from codeparrot.clean.stats import counter_dict, write_stats

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
    rows = decode_doc_ids(table["id"].to_numpy())[1].tolist()
    drops = {r for r, keep in zip(rows, table["keep"].to_pylist()) if not keep}
    return drops, dict(zip(rows, table["size"].to_pylist()))


def assign_split(keys: list[str], seed: int, validation_fraction: float) -> np.ndarray:
    """True for validation: a seeded draw per key (file hash or repository), so stable in any order."""
    return np.array([seeded_uniform(seed, "split", k) < validation_fraction for k in keys], dtype=bool)


def split_bucket(
    filtered_path: str, clusters_path: str | None, bucket: int, split_paths: dict[str, str], stats_path: str,
    seed: int, validation_fraction: float, split_by: str,
) -> dict:
    """Drop near duplicates of one bucket and write its train and validation files."""
    table = read_parquet(filtered_path)
    drops, sizes = near_duplicate_drops(clusters_path, bucket)
    table = table.append_column("near_duplicates",
                                pa.array([sizes.get(i, 1) for i in range(table.num_rows)], pa.int64()))
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(drops)] = False
    kept = table.filter(pa.array(keep))
    keys = kept["repo_name" if split_by == "repository" else "hash"].to_pylist()
    validation = assign_split(keys, seed, validation_fraction)
    stats = {"bucket": bucket, "records_in": table.num_rows, "near_duplicates_removed": len(drops),
             "near_duplicates_bytes_removed":
                 pc.sum(pc.binary_length(table["content"]).filter(pa.array(~keep))).as_py() or 0,
             "kept_by_license": counter_dict(Counter(name or "(unknown)" for name in kept["license"].to_pylist())),
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
