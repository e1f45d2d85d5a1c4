"""Pretokenize: every published parquet file becomes a token shard that decodes back to its documents."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeparrot.pretokenize import pretokenize, tokens_meta
from codeparrot.tokenizer import iter_text_batches, load_tokenizer, train_tokenizer
from codeparrot.tokens import open_split, read_document_starts, read_meta, shard_name
from tokenizer_fixtures import ADVERSARIAL, small_dataset, write_dataset


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Tokenizer and shards for the small dataset, plus adversarial documents as a second validation file."""
    root = tmp_path_factory.mktemp("pretokenize")
    files, _ = small_dataset(root / "dataset")
    files["validation"] += write_dataset(root / "extra", {"validation": [ADVERSARIAL]})["validation"]
    tokenizer_dir = root / "tokenizer"
    train_tokenizer(files["train"], tokenizer_dir, vocab_size=1000, n_files=None, seed=1)
    shards = {}
    for split, paths in files.items():
        shards[split] = [root / "tokens" / split / shard_name(i) for i in range(len(paths))]
        for path, out in zip(paths, shards[split]):
            stats = pretokenize(path, tokenizer_dir, out, batch_rows=8)
            assert stats["documents"] == pq.ParquetFile(path).metadata.num_rows
    meta = tokens_meta(tokenizer_dir, root / "tokens", shards)
    return root / "tokens", files, load_tokenizer(tokenizer_dir), meta


def documents(shard: np.ndarray, starts: np.ndarray, eos: int) -> list[np.ndarray]:
    ends = np.append(starts[1:], len(shard))
    for end in ends:
        assert shard[end - 1] == eos  # each document ends with end-of-text
    return [shard[s:e - 1] for s, e in zip(starts, ends)]


def test_shards_decode_back_to_the_documents(tokens):
    tokens_dir, files, tokenizer, meta = tokens
    for split, paths in files.items():
        shards = open_split(tokens_dir, split)
        assert len(shards) == len(paths) == meta["splits"][split]["shards"]
        for i, (path, shard) in enumerate(zip(paths, shards)):
            assert shard.dtype == np.uint16
            texts = [t for batch in iter_text_batches([path]) for t in batch]
            docs = documents(shard, read_document_starts(tokens_dir / split / shard_name(i)), meta["eos_token_id"])
            assert [tokenizer.decode(d.tolist()) for d in docs] == texts


def test_meta_counts_every_token_and_document(tokens):
    tokens_dir, files, tokenizer, meta = tokens
    assert read_meta(tokens_dir) == meta
    assert (meta["dtype"], meta["vocab_size"], meta["eos_token_id"]) == ("uint16", 1000, 0)
    for split, paths in files.items():
        assert meta["splits"][split]["tokens"] == sum(len(s) for s in open_split(tokens_dir, split))
        assert meta["splits"][split]["documents"] == sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def test_literal_end_of_text_in_code_is_not_a_separator(tokens):
    tokens_dir, _, _, meta = tokens
    adversarial = open_split(tokens_dir, "validation")[-1]
    assert int((adversarial == meta["eos_token_id"]).sum()) == len(ADVERSARIAL)


def test_null_content_fails_and_leaves_no_shard(tokens, tmp_path):
    tokenizer_dir = tokens[0].parent / "tokenizer"
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n", None]}), path)
    with pytest.raises(ValueError, match="row 1 has no content.*clean stage"):
        pretokenize(path, tokenizer_dir, tmp_path / "out" / "shard-00000.bin")
    assert list((tmp_path / "out").iterdir()) == []


def test_meta_refuses_gaps_in_shard_numbers(tokens, tmp_path):
    tokens_dir = tokens[0]
    with pytest.raises(ValueError, match="in order"):
        tokens_meta(tokens_dir.parent / "tokenizer", tmp_path, {"train": [tokens_dir / "train" / shard_name(1)]})
