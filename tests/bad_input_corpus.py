"""A corpus of raw shards with every kind of damage a real export or third-party dataset has,
mixed into good records (real Python sources of this interpreter's standard library).

`write_corpus` returns what the clean stage must make of it: for each shard, the 1-based line
number and quarantine reason of every bad line, and the good records (some of them with a field
of a wrong but unambiguous type, which the reader normalises).
"""

import gzip
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

STDLIB = Path(sys.modules["json"].__file__).resolve().parents[1]


def good_sources(count: int) -> list[tuple[str, str]]:
    """(path, content) of `count` distinct standard library modules between 2 and 60 KB."""
    found = []
    for path in sorted(STDLIB.glob("*.py")):
        data = path.read_bytes()
        if 2048 <= len(data) <= 60_000:
            try:
                found.append((path.name, data.decode("utf-8")))
            except UnicodeDecodeError:
                continue
        if len(found) == count:
            return found
    raise RuntimeError(f"only {len(found)} standard library modules of the right size")


def record(path: str, content: str, **changes) -> dict:
    return {"repo_name": "python/cpython", "path": path, "copies": 1, "size": len(content.encode()),
            "content": content, "license": "psf-2.0", **changes}


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def damaged_lines(path: str, content: str, max_line_bytes: int) -> list[tuple[bytes, str]]:
    """(line, expected reason) for every kind of bad line, built from one good file."""
    good = record(path, content)
    return [
        (dumps({**good, "copies": [1]}), "wrong_type"),
        (dumps({**good, "license": True}), "wrong_type"),
        (dumps({**good, "content": 5}), "wrong_type"),
        (dumps({**good, "repo_name": None}), "wrong_type"),
        (dumps([good]), "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (dumps(good).replace(b"import", b"imp\xffort", 1), "invalid_utf8"),
        (dumps({**good, "content": "x = '"}).replace(b"x = '", b"x = '\\ud800", 1), "invalid_utf8"),
        (dumps(good)[:-40], "malformed_json"),
        (dumps({k: v for k, v in good.items() if k != "content"}), "missing_columns"),
        (dumps({**good, "content": "PK\x03\x04\x00\x00 binary"}), "nul_bytes"),
        (dumps({**good, "content": "# " + "x" * max_line_bytes}), "line_too_long"),
    ]


def normalised_variants(path: str, content: str) -> list[dict]:
    """Good records whose fields have wrong but unambiguous types (kept, normalised)."""
    return [
        record(path, content, license=5),
        record(path, content, size=True),
        record(path, content, copies="3"),
        record(path, content, copies=2.0, size="not a number"),
    ]


@dataclass
class Shard:
    bad: dict[int, str] = field(default_factory=dict)  # line -> reason
    good: list[dict] = field(default_factory=list)


def write_corpus(folder: Path, max_line_bytes: int, seed: int = 0, num_shards: int = 3,
                 files: int = 40) -> dict[str, Shard]:
    """Write `num_shards` mixed shards, one ending in a truncated gzip member and one followed by
    bytes that are not gzip (a damaged shard), as file-*.json.gz in `folder`; return the expectation."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sources = good_sources(files)
    items: list[tuple[bytes, str | None, dict | None]] = []
    for i, (path, content) in enumerate(sources):
        name = f"Lib/{path}"
        if i % 8 == 0:
            items += [(line, reason, None) for line, reason in damaged_lines(name, content, max_line_bytes)]
        elif i % 8 == 1:
            variant = normalised_variants(name, content)[(i // 8) % 4]
            items.append((dumps(variant), None, {**variant, "path": name}))
        else:
            items.append((dumps(record(name, content)), None, record(name, content)))
    rng.shuffle(items)
    expected = {}
    for index in range(num_shards):
        shard = expected[f"file-{index:012d}"] = Shard()
        lines = []
        for number, (line, reason, good) in enumerate(items[index::num_shards], 1):
            lines.append(line)
            if reason:
                shard.bad[number] = reason
            else:
                shard.good.append(good)
        data = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
        if index == 1:  # a second gzip member cut in half: the export was interrupted
            cut = gzip.compress(dumps(record("Lib/cut.py", sources[0][1])) + b"\n", mtime=0)
            data += cut[: len(cut) // 2]
            shard.bad[len(lines) + 1] = "truncated_gzip"
        if index == 2:  # bytes after the last member that are not gzip: a damaged shard
            data += b"\x00garbage after the last member" * 10
            shard.bad[len(lines) + 1] = "corrupt_shard"
        (folder / f"file-{index:012d}.json.gz").write_bytes(data)
    return expected


def read_quarantine(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def check_clean_outputs(expected: dict[str, Shard], quarantine_dir: Path, summary: dict, data_dir: Path) -> None:
    """Every bad line quarantined with its reason and position; every good record kept or removed by a filter."""
    import pyarrow.parquet as pq

    for name, shard in expected.items():
        entries = read_quarantine(quarantine_dir / f"{name}.jsonl.gz")
        assert {q["line"]: q["reason"] for q in entries} == shard.bad, name
        assert all(q["shard"] == name and q["detail"] for q in entries)
    good = {(r["repo_name"], r["path"]): r for shard in expected.values() for r in shard.good}
    assert summary["quarantined"] == sum(len(s.bad) for s in expected.values())
    assert summary["records_in"] == (summary["kept"] + sum(summary["removed_by_reason"].values())
                                     + summary["quarantined"])
    assert len(good) == summary["kept"] + sum(summary["removed_by_reason"].values())
    kept = [row for path in sorted(data_dir.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert len(kept) == summary["kept"] > 0
    for row in kept:  # normalised: license numbers as strings, copies as ints, size recomputed
        want = good[(row["repo_name"], row["path"])]
        assert row["content"] == want["content"] and row["size"] == len(want["content"].encode())
        assert row["license"] == (None if want["license"] is None else str(want["license"]))
        assert row["copies"] == int(want["copies"])
