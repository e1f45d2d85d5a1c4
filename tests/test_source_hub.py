"""The hub source on a local folder in Hub layout (what `datasets` streams from the Hub, offline)."""

import bisect
import colorsys
import json
import textwrap
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from bad_input_corpus import Shard, check_clean_outputs, good_sources
from source_fixtures import real_source

from codeparrot.raw import read_raw_records
from codeparrot.sources.hub import collect_hub, hub_records


@pytest.fixture
def hub_folder(tmp_path, monkeypatch):
    """A dataset repo as on the Hub: data/{train,validation}-0000X-of-0000N.parquet and a card.

    Like the original raw CodeParrot data it has string sizes; it lacks `copies` and `license`.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root = tmp_path / "codeparrot-mini"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: other\n---\n# codeparrot-mini\nTest data in Hub layout.\n")
    train = [
        ("psf/cpython", "Lib/textwrap.py", real_source(textwrap)),
        ("psf/cpython", "Lib/bisect.py", real_source(bisect)),
        ("psf/cpython", "Lib/colorsys.py", "# Farbräume — 色空間\n" + real_source(colorsys)),
        ("edge/cases", "small.py", "x = 1\n"),
        ("edge/cases", "notes.txt", real_source(textwrap)),
        ("edge/cases", "huge.py", "x = 0\n" * 200_000),
        ("edge/cases", "empty.py", None),
    ]
    shards = [train[:4], train[4:]]
    for i, rows in enumerate(shards):
        table = pa.table({
            "repo_name": [r[0] for r in rows], "path": [r[1] for r in rows], "content": [r[2] for r in rows],
            "size": [None if r[2] is None else str(len(r[2].encode())) for r in rows],
        })
        pq.write_table(table, root / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet")
    pq.write_table(pa.table({"repo_name": ["v/v"], "path": ["v.py"], "content": [real_source(bisect)], "size": ["1"]}),
                   root / "data" / "validation-00000-of-00001.parquet")
    return root


def test_hub_folder_becomes_raw_shards(hub_folder, tmp_path):
    manifest = collect_hub(str(tmp_path / "shards"), str(tmp_path / "manifest.json"), str(hub_folder), split="train")
    records = [r for s in manifest["shards"] for r in read_raw_records(tmp_path / "shards" / s["file"])]
    assert [r["path"] for r in records] == ["Lib/textwrap.py", "Lib/bisect.py", "Lib/colorsys.py"]
    assert records[2]["content"].startswith("# Farbräume — 色空間\n")
    for r in records:
        assert r["size"] == len(r["content"].encode("utf-8"))
        assert (r["repo_name"], r["copies"], r["license"]) == ("psf/cpython", 1, None)
    assert manifest["skipped"] == {"no_content": 1, "other_extension": 1, "too_large": 1, "too_small": 1}
    assert manifest["records"] == 3 and manifest["source"] == "hub"


def test_hub_source_is_deterministic_and_bounded(hub_folder, tmp_path):
    a = collect_hub(str(tmp_path / "a"), str(tmp_path / "a.json"), str(hub_folder), max_records=2, shard_bytes=1024)
    b = collect_hub(str(tmp_path / "b"), str(tmp_path / "b.json"), str(hub_folder), max_records=2, shard_bytes=1024)
    assert a["records"] == 2 and len(a["shards"]) == 2  # one file per shard at 1 KiB per shard
    assert a == b
    for s in a["shards"]:
        assert (tmp_path / "a" / s["file"]).read_bytes() == (tmp_path / "b" / s["file"]).read_bytes()


def test_hub_split_and_missing_path(hub_folder, tmp_path):
    manifest = collect_hub(str(tmp_path / "v"), str(tmp_path / "v.json"), str(hub_folder), split="validation")
    assert manifest["records"] == 1
    skipped = Counter()
    rows = [{"content": real_source(bisect), "copies": "7"}]
    (record,) = hub_records(rows, ".py", 1024, 1 << 20, skipped, "someone/code")
    # Filled from the dataset id and the row; "7" is normalised by the clean stage like every source's.
    assert (record["path"], record["copies"], record["repo_name"]) == ("file-000000000.py", "7", "someone/code")


def test_hub_dataset_without_repo_name_and_with_odd_types_is_cleaned(tmp_path, monkeypatch, snakemake):
    """Most Hub code datasets lack repo_name; some store licenses as numbers: through the DAG's
    source and clean stages, records are kept (normalised), not quarantined."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    sources = good_sources(12)
    root = tmp_path / "code-no-repo"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({
        "path": [None if i % 3 == 0 else f"Lib/{p}" for i, (p, _) in enumerate(sources)],
        "content": [c for _, c in sources],
        "license": [i for i in range(len(sources))],
        "copies": [str(i + 1) for i in range(len(sources))],
    }), root / "data" / "train-00000-of-00001.parquet")
    run = tmp_path / "run"
    run.mkdir()
    config = run / "hub.yaml"
    config.write_text(yaml.safe_dump({"source": {"kind": "hub", "hub": {"path": str(root)}},
                                      "clean": {"num_buckets": 1}, "publish": {"repo_id": None}}))
    snakemake(["--configfile", str(config), "--cores", "2", "results/dataset/README.md"], workdir=run, timeout=600)
    manifest = json.loads((run / "results/raw/manifest.json").read_text())
    summary = json.loads((run / "results/stats/clean/clean.json").read_text())
    expected = {"file-000000000000": Shard(good=[
        {"repo_name": "code-no-repo", "path": f"file-{i:09d}.py" if i % 3 == 0 else f"Lib/{p}", "copies": str(i + 1),
         "content": c, "license": i} for i, (p, c) in enumerate(sources)])}
    assert manifest["records"] == len(sources)
    check_clean_outputs(expected, run / "results/quarantine", summary, run / "results/dataset/data")
    assert summary["quarantined"] == 0
    assert summary["normalised"] == {"copies_from_string": 12, "license_from_number": 12}


def test_dataset_without_content_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["hello"]}), tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="no `content` column"):
        collect_hub(str(tmp_path / "s"), str(tmp_path / "m.json"), str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="source.hub.path is not set"):
        collect_hub(str(tmp_path / "s"), str(tmp_path / "m.json"), None)


def test_collect_hub_rule(hub_folder, tmp_path, snakemake):
    """The hub checkpoint through Snakemake, with the source section of a user's config."""
    (tmp_path / "run").mkdir()
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({"source": {"kind": "hub", "hub": {"path": str(hub_folder), "split": "train"}}}))
    snakemake(["--configfile", str(config), "--cores", "1", "results/raw/manifest.json"], workdir=tmp_path / "run",
              timeout=300)
    manifest = json.loads((tmp_path / "run/results/raw/manifest.json").read_text())
    assert manifest["source"] == "hub" and manifest["records"] == 3
