"""Map step: one raw shard -> its records with content hash and filter statistics, partitioned into hash buckets.

Records with equal hashes land in the same bucket whichever shard they come from, so each
bucket can be deduplicated on its own. The output is an Arrow IPC file with one record batch per
(batch, bucket): a temporary file that the bucket jobs memory-map and read without decoding
(parquet's encode + decode cost more than the whole dedup). Per-file facts (hash, statistics,
contamination) are computed here, once, while the record is in memory; the bucket step decides.
"""

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from codeparrot.atomic import atomic_output
from codeparrot.clean.decontaminate import build_decontaminator
from codeparrot.clean.filters import STAT_COLUMNS, file_stats
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
    *STAT_COLUMNS,
    ("contamination", pa.string()),  # the evaluation needle the file contains, or null
    ("bucket", pa.int32()),
])


def read_partition_bucket(path: str, bucket: int) -> list[pa.RecordBatch]:
    """The record batches of one bucket in a partition file, memory-mapped (no copy, no decoding)."""
    reader = pa.ipc.open_file(pa.memory_map(path))
    if reader.schema != PARTITION_SCHEMA:
        raise ValueError(f"{path}: not a partition file of this version; delete it and rerun the partition step")
    batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    return [b for b in batches if b.num_rows and b.column("bucket")[0].as_py() == bucket]


def shard_name(path: str | Path) -> str:
    return Path(path).name.removesuffix(".gz").removesuffix(".json")


def _write_batch(writer: pa.ipc.RecordBatchFileWriter, rows: dict[int, dict[str, list]]) -> None:
    """One record batch per bucket, in bucket order."""
    for bucket in sorted(rows):
        columns = rows[bucket]
        columns["bucket"] = [bucket] * len(columns["hash"])
        # The content is kept as the UTF-8 bytes already made for hashing: no second encoding.
        columns["content"] = pa.array(columns["content"], pa.large_binary()).view(pa.large_string())
        writer.write_batch(pa.record_batch(columns, schema=PARTITION_SCHEMA))


def _empty_rows() -> dict[str, list]:
    return {name: [] for name in PARTITION_SCHEMA.names if name != "bucket"}


def partition_shard(
    raw_path: str,
    out_path: str,
    quarantine_path: str,
    stats_path: str,
    num_buckets: int,
    stat_settings: dict | None = None,
    max_line_bytes: int = 8 << 20,
    batch_bytes: int = 4 << 20,
    decontaminate: dict | None = None,
    max_shard_bytes: int | None = None,
    on_corrupt_shard: str = "fail",
) -> dict:
    """Hash, measure and bucket every record of `raw_path`; quarantine the lines that are not records.

    Reading follows records.read_shard (the reader contract of every source); `size` is the
    content's UTF-8 length, whatever the shard says.
    `stat_settings`: filters.stat_settings(...), the original's by default. The whitespace-free
    content that gives the hash is also searched for evaluation problems here (see decontaminate.py)."""
    decontaminator = (build_decontaminator(decontaminate["humaneval"], decontaminate["mbpp_path"],
                                           decontaminate["min_chars"])
                      if decontaminate and decontaminate["enabled"] else None)
    shard = shard_name(raw_path)
    rows: dict[int, dict[str, list]] = {}
    stats = {"shard": shard, "records_in": 0, "bytes_in": 0, "records_out": 0, "bytes_out": 0,
             "quarantined": 0, "quarantined_by_reason": Counter(), "normalised": {}}
    batch = 0
    with atomic_output(out_path) as tmp_out, atomic_output(quarantine_path) as tmp_quarantine, \
            pa.OSFile(str(tmp_out), "wb") as sink, pa.ipc.new_file(sink, PARTITION_SCHEMA) as writer, \
            open_quarantine(tmp_quarantine) as quarantine:
        items = read_shard(raw_path, max_line_bytes, max_shard_bytes, on_corrupt_shard, stats["normalised"])
        for item in tqdm(items, desc=f"partition {shard}", unit=" records", mininterval=5):
            stats["records_in"] += 1
            if isinstance(item, BadLine):
                stats["bytes_in"] += len(item.raw) if item.length is None else item.length
                stats["quarantined"] += 1
                stats["quarantined_by_reason"][item.reason] += 1
                quarantine.write(item.to_json(shard).encode("utf-8") + b"\n")
                continue
            content = item["content"]
            encoded = content.encode("utf-8")
            size = len(encoded)
            stats["bytes_in"] += size
            stats["records_out"] += 1
            stats["bytes_out"] += size
            stripped = strip_whitespace(content, encoded)
            digest = hashlib.md5(stripped).hexdigest()  # = records.content_hash(content)
            columns = rows.setdefault(bucket_of(digest, num_buckets), _empty_rows())
            for name in ("repo_name", "path", "copies", "license"):
                columns[name].append(item[name])
            columns["size"].append(size)
            columns["content"].append(encoded)
            columns["hash"].append(digest)
            for name, value in file_stats(content, stat_settings, stripped).items():
                columns[name].append(value)
            columns["contamination"].append(decontaminator.match(stripped) if decontaminator else None)
            batch += size
            if batch >= batch_bytes:
                _write_batch(writer, rows)
                rows, batch = {}, 0
        _write_batch(writer, rows)
    stats["quarantined_by_reason"] = counter_dict(stats["quarantined_by_reason"])
    stats["normalised"] = dict(sorted(stats["normalised"].items()))
    write_stats(stats_path, stats)
    return stats
