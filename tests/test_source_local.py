"""The local source on a small tree of real Python files (with the traps of a real disk) and on
the real default (this environment's site-packages)."""

import bisect
import colorsys
import json
import json.decoder
import os
import textwrap
from pathlib import Path

import pytest
from source_fixtures import real_bytes

from codeparrot.raw import read_raw_records
from codeparrot.sources.local import collect_local


@pytest.fixture
def tree(tmp_path):
    """root/ with an installed distribution (pkg-a, MIT), loose files, a symlink, a Latin-1 file."""
    root = tmp_path / "root"
    files = {
        "pkg_a/__init__.py": b"",
        "pkg_a/colors.py": real_bytes(colorsys),
        "pkg_a/sub/decoder.py": real_bytes(json.decoder),
        "pkg_a/sub/wrap.py": real_bytes(textwrap),  # 19.7 kB: above the test's max_size
        "loose/bisect.py": real_bytes(bisect),
        "loose/latin1.py": ("# café crème\n" + real_bytes(bisect).decode()).encode("latin-1"),
        "loose/readme.txt": real_bytes(bisect),
        "loose/small.py": b"x = 1\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    os.symlink(root / "loose/bisect.py", root / "loose/linked.py")
    dist = root / "pkg_a-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.4\nName: pkg-a\nVersion: 1.0\nLicense-Expression: MIT\n")
    (dist / "RECORD").write_text("".join(f"{n},,\n" for n in files if n.startswith("pkg_a/")))
    return root, files


def collect(root, out: Path, **kwargs) -> dict:
    return collect_local(str(out / "shards"), str(out / "manifest.json"), roots=[str(root)], max_size=15000, **kwargs)


def test_local_tree_selects_counts_and_attributes(tree, tmp_path):
    root, files = tree
    manifest = collect(root, tmp_path / "run")
    records = [r for s in manifest["shards"] for r in read_raw_records(tmp_path / "run/shards" / s["file"])]
    assert [r["path"] for r in records] == ["loose/bisect.py", "pkg_a/colors.py", "pkg_a/sub/decoder.py"]
    for r in records:
        assert r["content"].encode("utf-8") == files[r["path"]]
        assert r["size"] == len(files[r["path"]])
    assert [(r["repo_name"], r["license"]) for r in records] == [("loose", None), ("pkg-a", "MIT"), ("pkg-a", "MIT")]
    assert manifest["skipped"] == {"symlink": 1, "too_large": 1, "too_small": 2, "undecodable": 1}
    assert manifest["records"] == 3 and manifest["content_bytes"] == sum(r["size"] for r in records)


def test_local_source_is_byte_identical_across_runs(tree, tmp_path):
    root, _ = tree
    a = collect(root, tmp_path / "a", shard_bytes=4096)
    collect(root, tmp_path / "b", shard_bytes=4096)
    assert len(a["shards"]) == 2
    assert (tmp_path / "a/manifest.json").read_bytes() == (tmp_path / "b/manifest.json").read_bytes()
    for s in a["shards"]:
        assert (tmp_path / "a/shards" / s["file"]).read_bytes() == (tmp_path / "b/shards" / s["file"]).read_bytes()


def test_local_size_bounds_and_max_files(tree, tmp_path):
    root, _ = tree
    manifest = collect_local(str(tmp_path / "s"), str(tmp_path / "m.json"), roots=[str(root)], min_size=4000,
                             max_size=1 << 20, max_files=2)
    records = [r for s in manifest["shards"] for r in read_raw_records(tmp_path / "s" / s["file"])]
    assert [r["path"] for r in records] == ["pkg_a/colors.py", "pkg_a/sub/decoder.py"]
    assert all(r["size"] >= 4000 for r in records)


def test_missing_root_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="source.local.roots"):
        collect_local(str(tmp_path / "s"), str(tmp_path / "m.json"), roots=[str(tmp_path / "nowhere")])


def test_real_default_site_packages(tmp_path):
    manifest = collect_local(str(tmp_path / "s"), str(tmp_path / "m.json"), max_files=300)
    records = [r for s in manifest["shards"] for r in read_raw_records(tmp_path / "s" / s["file"])]
    assert len(records) == manifest["records"] == 300
    assert all(1024 <= r["size"] <= 1048575 and r["path"].endswith(".py") for r in records)
    assert sum(r["license"] is not None for r in records) > 150  # installed distributions declare licenses
    assert len({r["repo_name"] for r in records}) > 1
    assert json.loads((tmp_path / "m.json").read_text()) == manifest
