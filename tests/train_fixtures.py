"""Small real inputs for the training tests and bench/bench_train.py.

A byte-level BPE tokenizer trained on Python files of the standard library, a GPT-2 of the
requested shape, and the same files as (a) pretokenized shards and (b) a Hub-layout parquet
dataset, so both data inputs of the train stage see the same corpus.
"""

import dataclasses
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def stdlib_python_files(count: int, min_chars: int = 2000) -> list[str]:
    """`count` real Python files (sorted by path, so the same on every run)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) >= min_chars:
            texts.append(text)
        if len(texts) == count:
            break
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    from transformers import GPT2Tokenizer

    # In transformers 5 GPT2Tokenizer() is an empty byte-level BPE: trainable without a download.
    return GPT2Tokenizer().train_new_from_iterator(iter(texts), vocab_size=vocab_size)


def build_model_dir(folder: Path, texts: list[str], vocab_size: int, n_layer: int, n_embd: int,
                    n_head: int, n_positions: int, dropout: float = 0.0, seed: int = 0):
    """A from_pretrained folder with a fresh GPT-2 and a tokenizer trained on `texts`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer(texts, vocab_size)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_token_shards(folder: Path, splits: dict[str, list[str]], tokenizer, shards: int = 2) -> None:
    from codeparrot.tokens import TokenShardWriter, shard_name, token_dtype, write_meta

    dtype = token_dtype(len(tokenizer))
    meta = {"dtype": dtype.str, "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id, "splits": {}}
    for split, texts in splits.items():
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        tokens = 0
        for i in range(shards):
            with TokenShardWriter(folder / split / shard_name(i), dtype, tokenizer.eos_token_id) as writer:
                for doc in ids[i::shards]:
                    writer.add_document(doc)
            tokens += writer.tokens
        meta["splits"][split] = {"shards": shards, "tokens": tokens}
    write_meta(folder, meta)


def write_hub_dataset(folder: Path, splits: dict[str, list[str]], shards: int = 2) -> None:
    """The published layout: data/{split}-0000i-of-0000n.parquet with a `content` column."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, texts in splits.items():
        for i in range(shards):
            table = pa.table({"content": texts[i::shards]})
            pq.write_table(table, folder / "data" / f"{split}-{i:05d}-of-{shards:05d}.parquet")


def corpus_tokens(tokenizer, texts: list[str]) -> int:
    """Tokens of `texts` joined with end-of-text, as both data inputs count them."""
    return int(np.sum([len(t) + 1 for t in tokenizer(texts, add_special_tokens=False)["input_ids"]]))


@dataclasses.dataclass
class TrainFixture:
    model: Path  # from_pretrained folder: tiny GPT-2 (dropout 0.1) + tokenizer
    tokens: Path  # pretokenized shards
    dataset: Path  # Hub-layout parquet
    tokenizer: object
    splits: dict


@pytest.fixture(scope="session")
def train_fixture(tmp_path_factory) -> TrainFixture:
    """Tiny GPT-2 (2 layers, width 64, context 128, vocab 512) and 30 stdlib files in both layouts."""
    root = tmp_path_factory.mktemp("train")
    texts = stdlib_python_files(30)
    splits = {"train": texts[:26], "validation": texts[26:]}
    tokenizer = build_model_dir(root / "model", splits["train"], vocab_size=512, n_layer=2, n_embd=64,
                                n_head=4, n_positions=128, dropout=0.1)
    write_token_shards(root / "tokens", splits, tokenizer)
    write_hub_dataset(root / "dataset", splits)
    return TrainFixture(root / "model", root / "tokens", root / "dataset", tokenizer, splits)
