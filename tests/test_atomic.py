"""Outputs appear complete or not at all: one helper for files and save_pretrained folders."""

import pytest

from codeparrot.atomic import atomic_output, atomic_write_text, temp_path


def test_temporary_names_are_unique_hidden_and_in_the_same_folder(tmp_path):
    a, b = temp_path(tmp_path / "x.parquet"), temp_path(tmp_path / "x.parquet")
    assert a != b and a.parent == b.parent == tmp_path and a.name.startswith(".x.parquet.tmp-")


def test_a_failed_writer_leaves_the_old_output_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_folder_replaces_the_old_folder_whole(tmp_path):
    target = tmp_path / "model"
    for files in ({"config.json": "1", "old.bin": "x"}, {"config.json": "2"}):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            for name, text in files.items():
                (tmp / name).write_text(text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert {p.name: p.read_text() for p in target.iterdir()} == {"config.json": "2"}
