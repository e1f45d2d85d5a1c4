"""Raw shards: the one format every source writes.

Gzipped newline-delimited JSON with the columns of the BigQuery export, named like BigQuery's
exports (`file-000000000000.json.gz`, ...), plus `manifest.json` (counts, bytes, checksums).
"""

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

from codeparrot.atomic import atomic_write_text, commit, discard, temp_path

RAW_COLUMNS = ("repo_name", "path", "copies", "size", "content", "license")
INT_COLUMNS = ("copies", "size")


def shard_file_name(index: int) -> str:
    return f"file-{index:012d}.json.gz"


def normalise_record(record: dict) -> dict:
    """Real BigQuery exports write INT64 columns as JSON strings; make them ints."""
    for key in INT_COLUMNS:
        value = record.get(key)
        if isinstance(value, str):
            record[key] = int(value)
    return record


def size_out_of_bounds(size: int, min_size: int, max_size: int) -> str | None:
    """The skip reason for a file outside the SQL's size bounds (`c.size BETWEEN min AND max`), else None."""
    if size < min_size:
        return "too_small"
    if size > max_size:
        return "too_large"
    return None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_entry(path: str | Path, records: int | None, content_bytes: int | None) -> dict:
    """`records`/`content_bytes`: None for a shard only downloaded (its lines are counted in the clean stage)."""
    path = Path(path)
    return {
        "file": path.name,
        "records": records,
        "content_bytes": content_bytes,
        "file_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def _total(shards: list[dict], key: str) -> int | None:
    values = [s[key] for s in shards]
    return None if None in values else sum(values)


def write_manifest(path: str | Path, shards: list[dict], source: str, skipped: Counter | dict) -> dict:
    manifest = {
        "source": source,
        "records": _total(shards, "records"),
        "content_bytes": _total(shards, "content_bytes"),
        "file_bytes": sum(s["file_bytes"] for s in shards),
        "skipped": dict(sorted(dict(skipped).items())),
        "shards": shards,
    }
    write_json(path, manifest)
    return manifest


def write_json(path: str | Path, obj, sort_keys: bool = False) -> None:
    """`obj` as indented JSON, written atomically (its folder created)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """One object per non-empty line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)


class RawShardWriter:
    """Writes records into numbered shards of at most `shard_bytes` content bytes.

    Output is byte-identical for the same records: gzip header without name or mtime, keys in
    column order. Each shard is written to a temporary name and renamed when complete.
    """

    def __init__(self, out_dir: str | Path, shard_bytes: int):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_bytes = shard_bytes
        self.shards: list[dict] = []
        self._file = None

    def _open(self):
        self._path = self.out_dir / shard_file_name(len(self.shards))
        self._tmp = temp_path(self._path)
        self._raw = open(self._tmp, "wb")
        self._file = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        self._records = 0
        self._bytes = 0

    def _close(self):
        self._file.close()
        self._raw.close()
        commit(self._tmp, self._path)
        self.shards.append(shard_entry(self._path, self._records, self._bytes))
        self._file = None

    def write(self, record: dict) -> None:
        if self._file is None:
            self._open()
        line = json.dumps({k: record[k] for k in RAW_COLUMNS}, ensure_ascii=False)
        self._file.write(line.encode("utf-8") + b"\n")
        self._records += 1
        self._bytes += record["size"]
        if self._bytes >= self.shard_bytes:
            self._close()

    def close(self) -> list[dict]:
        if self._file is not None:
            self._close()
        return self.shards

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        elif self._file is not None:
            self._file.close()
            self._raw.close()
            discard(self._tmp)


def read_raw_records(path: str | Path):
    """Yield the records of one well-formed raw shard, ints normalised."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield normalise_record(json.loads(line))
