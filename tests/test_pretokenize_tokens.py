"""The packed token shard format (codeparrot.tokens) that pretokenize writes and training reads."""

import numpy as np
import pytest

from codeparrot.tokens import (
    TokenShardWriter,
    open_split,
    open_token_shard,
    read_document_starts,
    read_meta,
    token_dtype,
    write_meta,
)


def test_token_dtype_fits_vocab():
    assert token_dtype(32768) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_shard_round_trip_with_eos_and_index(tmp_path):
    docs = [[5, 6, 7], [], [65535, 1]]
    path = tmp_path / "train" / "shard-00000.bin"
    with TokenShardWriter(path, token_dtype(65536), eos_token_id=0) as writer:
        for doc in docs:
            writer.add_document(doc)
    tokens = open_token_shard(path, np.uint16)
    assert tokens.tolist() == [5, 6, 7, 0, 0, 65535, 1, 0]
    assert read_document_starts(path).tolist() == [0, 4, 5]
    assert path.stat().st_size == 8 * 2  # raw uint16, no header
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard-00000.bin", "shard-00000.idx.npy"]


def test_failed_write_leaves_no_shard(tmp_path):
    path = tmp_path / "shard-00000.bin"
    with pytest.raises(ValueError, match="out of range"):
        with TokenShardWriter(path, np.uint16, eos_token_id=0) as writer:
            writer.add_document([70000])
    assert list(tmp_path.iterdir()) == []


def test_open_split_reads_meta_dtype(tmp_path):
    for i, doc in enumerate([[1, 2], [100000]]):
        with TokenShardWriter(tmp_path / "valid" / f"shard-{i:05d}.bin", np.uint32, 3) as writer:
            writer.add_document(doc)
    meta = {"dtype": "uint32", "vocab_size": 100001, "eos_token_id": 3,
            "splits": {"valid": {"shards": 2, "tokens": 5}}}
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    shards = open_split(tmp_path, "valid")
    assert [s.tolist() for s in shards] == [[1, 2, 3], [100000, 3]]
    with pytest.raises(KeyError, match="valid"):
        open_split(tmp_path, "train")


def test_missing_meta_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretokenize"):
        read_meta(tmp_path)
