"""Map step: one raw shard -> its records with content hash, partitioned into hash buckets.

Records with equal hashes land in the same bucket whichever shard they come from, so each
bucket can be deduplicated on its own. One parquet file per shard, one row group per
(batch, bucket), so a bucket job reads only its row groups (see read_bucket_rows).
"""

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from codeparrot.clean.decontaminate import build_decontaminator
from codeparrot.clean.records import BadLine, bucket_of, open_quarantine, read_shard, strip_whitespace
from codeparrot.clean.stats import counter_dict, write_stats

PARTITION_SCHEMA = pa.schema([
    ("repo_name", pa.string()),
    ("path", pa.string()),
    ("copies", pa.int64()),
    ("size", pa.int64()),
    ("content", pa.large_string()),
    ("license", pa.string()),
    ("hash", pa.string()),
    ("contamination", pa.string()),  # the evaluation needle the file contains, or null
    ("bucket", pa.int32()),
])


def read_bucket_rows(path: str, bucket: int, columns: list[str] | None = None) -> pa.Table:
    """Rows of one bucket from a file sorted by `bucket`, reading only the row groups whose
    statistics can hold it (without pyarrow.dataset, whose import alone costs 0.5 CPU-s)."""
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


def shard_name(path: str | Path) -> str:
    return Path(path).name.removesuffix(".gz").removesuffix(".json")


def _write_batch(writer: pq.ParquetWriter, rows: dict[int, dict[str, list]]) -> None:
    """One row group per bucket, in bucket order: a bucket job reads only its own groups."""
    for bucket in sorted(rows):
        columns = rows[bucket]
        columns["bucket"] = [bucket] * len(columns["hash"])
        writer.write_table(pa.table(columns, schema=PARTITION_SCHEMA))


def _empty_rows() -> dict[str, list]:
    return {name: [] for name in PARTITION_SCHEMA.names if name != "bucket"}


def partition_shard(
    raw_path: str,
    out_path: str,
    quarantine_path: str,
    stats_path: str,
    num_buckets: int,
    max_line_bytes: int = 8 << 20,
    batch_bytes: int = 64 << 20,
    decontaminate: dict | None = None,
) -> dict:
    """Hash and bucket every record of `raw_path`; quarantine the lines that are not records.

    The whitespace-free content that gives the hash is also searched for evaluation problems
    here (see decontaminate.py), so it is computed once; the bucket step decides what to drop."""
    decontaminator = (build_decontaminator(decontaminate["humaneval"], decontaminate["mbpp_path"], decontaminate["min_chars"])
                      if decontaminate and decontaminate["enabled"] else None)
    shard = shard_name(raw_path)
    rows: dict[int, dict[str, list]] = {}
    stats = {"shard": shard, "records_in": 0, "bytes_in": 0, "records_out": 0, "bytes_out": 0,
             "quarantined": 0, "quarantined_by_reason": Counter()}
    batch = 0
    # Statistics only for `bucket` (row-group pruning); none for content, no dictionary: both cost time.
    with pq.ParquetWriter(out_path, PARTITION_SCHEMA, use_dictionary=False, write_statistics=["bucket"],
                          compression="lz4") as writer, \
            open_quarantine(quarantine_path) as quarantine:
        for item in tqdm(read_shard(raw_path, max_line_bytes), desc=f"partition {shard}", unit=" records", mininterval=5):
            stats["records_in"] += 1
            if isinstance(item, BadLine):
                stats["bytes_in"] += len(item.raw)
                stats["quarantined"] += 1
                stats["quarantined_by_reason"][item.reason] += 1
                quarantine.write(item.to_json(shard).encode("utf-8") + b"\n")
                continue
            content = item["content"]
            size = len(content) if content.isascii() else len(content.encode("utf-8"))
            stats["bytes_in"] += size
            stats["records_out"] += 1
            stats["bytes_out"] += size
            stripped = strip_whitespace(content)
            digest = hashlib.md5(stripped).hexdigest()  # = records.content_hash(content)
            columns = rows.setdefault(bucket_of(digest, num_buckets), _empty_rows())
            for name in ("repo_name", "path", "copies", "size", "content", "license"):
                columns[name].append(item[name])
            columns["hash"].append(digest)
            columns["contamination"].append(decontaminator.match(stripped) if decontaminator else None)
            batch += size
            if batch >= batch_bytes:
                _write_batch(writer, rows)
                rows, batch = {}, 0
        _write_batch(writer, rows or {0: _empty_rows()})  # an empty shard still gets a valid file
    stats["quarantined_by_reason"] = counter_dict(stats["quarantined_by_reason"])
    write_stats(stats_path, stats)
    return stats
