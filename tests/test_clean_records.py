"""Bad input: every broken line is counted and quarantined with shard, line and reason; nothing is lost."""

import gzip
import json

import pyarrow as pa
import pytest

from bad_input_corpus import check_clean_outputs, write_corpus

from codeparrot.clean.local import clean_dataset, clean_settings
from codeparrot.clean.partition import partition_shard
from codeparrot.clean.records import EVIDENCE_BYTES, content_hash, iter_gzip_lines

GOOD = {"repo_name": "o/r", "path": "a.py", "copies": "3", "size": "2048",
        "content": "def f(x):\n    return x\n" * 100, "license": "mit"}


def line(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode() + b"\n"


def partition(tmp_path, raw_path):
    stats = partition_shard(str(raw_path), str(tmp_path / "p.arrow"), str(tmp_path / "q.jsonl.gz"),
                            str(tmp_path / "s.json"), num_buckets=3, max_line_bytes=1 << 20)
    with gzip.open(tmp_path / "q.jsonl.gz", "rt") as f:
        quarantine = [json.loads(line) for line in f]
    return stats, quarantine, pa.ipc.open_file(tmp_path / "p.arrow").read_all()


def test_each_kind_of_bad_line_is_quarantined(tmp_path):
    big = b'{"content": "' + b"x" * (50 << 20) + b'"}\n'  # one 50 MB line
    lines = [
        line(path="ok1.py"),
        b'{"repo_name": "o/r", "path": "broken.py", "content": "x\n',  # malformed JSON
        line(path="latin1.py")[:-1].replace(b"def f", b"d\xe9f f") + b"\n",  # invalid UTF-8
        line(path="binary.py", content="PK\x00\x03 binary"),  # NUL bytes
        big,
        json.dumps({"repo_name": "o/r", "path": "nocontent.py"}).encode() + b"\n",
        b"\n",  # blank lines are not records
        line(path="ok2.py", license=5, size=True),  # unambiguous: normalised
        line(path="list.py", copies=[1]),
        b"[1, 2]\n",
    ]
    raw = tmp_path / "file-000000000000.json.gz"
    with gzip.open(raw, "wb") as f:
        f.write(b"".join(lines))
    stats, quarantine, table = partition(tmp_path, raw)

    assert sorted(table["path"].to_pylist()) == ["ok1.py", "ok2.py"]
    size = len(GOOD["content"].encode())
    # string ints fixed, size recomputed
    assert table["copies"].to_pylist() == [3, 3] and table["size"].to_pylist() == [size, size]
    assert sorted(table["license"].to_pylist()) == ["5", "mit"]
    assert stats["normalised"] == {"copies_from_string": 2, "license_from_number": 1}
    reasons = {q["reason"]: q["line"] for q in quarantine}
    assert reasons == {"malformed_json": 2, "invalid_utf8": 3, "nul_bytes": 4, "line_too_long": 5, "missing_columns": 6,
                       "wrong_type": 9, "not_an_object": 10}
    assert all(q["shard"] == "file-000000000000" for q in quarantine)
    assert stats["records_in"] == 9 == stats["records_out"] + stats["quarantined"]
    # Lossless: the quarantined bytes are the original line.
    latin = next(q for q in quarantine if q["reason"] == "invalid_utf8")
    assert latin["raw_complete"] and latin["raw"].encode("utf-8", "surrogateescape") == lines[2][:-1]
    # An over-long line keeps its first 64 KiB as evidence, and its full length.
    long = next(q for q in quarantine if q["reason"] == "line_too_long")
    assert (long["bytes"], long["raw_complete"], long["raw"]) == (len(big) - 1, False, big[:EVIDENCE_BYTES].decode())


def test_every_damage_of_the_corpus_is_quarantined_at_its_position(tmp_path):
    """The committed corpus (tests/bad_input_corpus.py) through the whole clean stage, in one process."""
    expected = write_corpus(tmp_path / "raw", max_line_bytes=65536)
    settings = clean_settings(num_buckets=2, max_line_bytes=65536)
    summary = clean_dataset(sorted(map(str, (tmp_path / "raw").glob("*.json.gz"))), str(tmp_path / "work"),
                            str(tmp_path / "dataset"), settings=settings, on_corrupt_shard="quarantine")
    check_clean_outputs(expected, tmp_path / "work/quarantine", summary, tmp_path / "dataset/data")


def test_damaged_shard_fails_naming_it_and_the_remedy(tmp_path):
    write_corpus(tmp_path, max_line_bytes=65536)
    with pytest.raises(ValueError,
                       match=r"file-000000000002.json.gz: not a readable gzip file "
                             r".*source.on_corrupt_shard: quarantine"):
        partition(tmp_path, tmp_path / "file-000000000002.json.gz")


def test_decompressed_bytes_per_shard_are_bounded(tmp_path):
    """A gzip bomb (64 MB of zeros in 64 KB) is refused once past clean.max_shard_bytes, in bounded memory."""
    raw = tmp_path / "file-000000000004.json.gz"
    raw.write_bytes(gzip.compress(line(path="ok.py") + b"0" * (64 << 20), compresslevel=9))
    with pytest.raises(ValueError, match="file-000000000004.json.gz: .*more than clean.max_shard_bytes=4194304"):
        list(iter_gzip_lines(raw, max_line_bytes=1 << 20, max_shard_bytes=4 << 20))
    lines = list(iter_gzip_lines(raw, max_line_bytes=1 << 20, max_shard_bytes=4 << 20, on_corrupt="quarantine"))
    assert [line.status for line in lines] == ["ok", "corrupt_shard"]
    assert len(lines[1].data) == EVIDENCE_BYTES  # the over-long line in progress, as evidence


def test_truncated_gzip_keeps_what_came_before(tmp_path):
    raw = tmp_path / "file-000000000001.json.gz"
    data = gzip.compress(b"".join(line(path=f"f{i}.py", content=f"x_{i} = {i}\n" * 200) for i in range(50)))
    raw.write_bytes(data[: len(data) * 2 // 3])
    stats, quarantine, table = partition(tmp_path, raw)
    assert table.num_rows >= 20
    assert [q["reason"] for q in quarantine] == ["truncated_gzip"]
    assert quarantine[0]["line"] == table.num_rows + 1
    assert stats["records_in"] == table.num_rows + 1


def test_concatenated_gzip_members_are_read(tmp_path):
    raw = tmp_path / "file-000000000002.json.gz"
    raw.write_bytes(gzip.compress(line(path="a.py")) + gzip.compress(line(path="b.py")))
    assert [line.status for line in iter_gzip_lines(raw)] == ["ok", "ok"]


def test_unreadable_shard_fails_naming_the_file(tmp_path):
    raw = tmp_path / "file-000000000003.json.gz"
    raw.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match="file-000000000003.json.gz: not a readable gzip file.*re-download"):
        partition(tmp_path, raw)


def test_hash_ignores_whitespace_only():
    assert content_hash("def f(x):\n    return x\n") == content_hash("def  f(x):\n\treturn x")
    assert content_hash("def f(x): return x") != content_hash("def f(y): return y")
    assert content_hash("é = 1\u00a0") == content_hash("é=1")  # unicode whitespace, like str.split


def test_whitespace_removal_matches_str_split():
    from codeparrot.clean.records import ASCII_WHITESPACE, UNICODE_WHITESPACE, strip_whitespace

    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert spaces == {chr(b) for b in ASCII_WHITESPACE} | {s.decode() for s in UNICODE_WHITESPACE}
    text = "a\u3000b\u00a0c \u2028d\té\u0085\u200bf\n"
    assert strip_whitespace(text) == "".join(text.split()).encode()
