"""Tokenize the published dataset once into packed token shards (codeparrot.tokens).

One parquet file -> one shard, so Snakemake runs the files as parallel jobs; `tokens_meta`
then records dtype, vocab and the size of each split for the training stage.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from codeparrot.tokenizer import encode_batch, iter_text_batches, load_tokenizer, set_threads
from codeparrot.tokens import TokenShardWriter, index_path, shard_name, token_dtype, write_meta

log = logging.getLogger(__name__)


def pretokenize(parquet_path: str | Path, tokenizer_dir: str | Path, out_bin: str | Path,
                batch_rows: int = 1000, threads: int | None = None) -> dict:
    """Encode every document of one parquet file (batched, on `threads` cores) into one shard."""
    set_threads(threads)
    tokenizer = load_tokenizer(tokenizer_dir)
    rows = pq.ParquetFile(parquet_path).metadata.num_rows
    with TokenShardWriter(out_bin, token_dtype(len(tokenizer)), tokenizer.eos_token_id) as writer:
        with tqdm(total=rows, desc=f"pretokenize {Path(parquet_path).name}", unit="doc") as progress:
            for texts in iter_text_batches([parquet_path], batch_rows):
                if None in texts:
                    row = writer.documents + texts.index(None)
                    raise ValueError(f"{parquet_path} row {row} has no content; the published dataset "
                                     "must not contain nulls: rerun the clean stage.")
                for ids in encode_batch(tokenizer, texts):
                    writer.add_document(ids)
                progress.update(len(texts))
    return {"documents": writer.documents, "tokens": writer.tokens}


def tokens_meta(tokenizer_dir: str | Path, tokens_dir: str | Path,
                shards: dict[str, Sequence[str | Path]]) -> dict:
    """meta.json for the shards of each split (their sizes read from the files themselves)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    dtype = token_dtype(len(tokenizer))
    splits = {}
    for split, paths in sorted(shards.items()):
        paths = [Path(p) for p in paths]
        expected = [shard_name(i) for i in range(len(paths))]
        if [p.name for p in paths] != expected:
            raise ValueError(f"split {split}: shards must be {expected[0]}..{expected[-1]} in order, "
                             f"got {[p.name for p in paths]}")
        splits[split] = {
            "shards": len(paths),
            "tokens": sum(p.stat().st_size // dtype.itemsize for p in paths),
            "documents": sum(len(np.load(index_path(p))) for p in paths),
        }
    meta = {"dtype": dtype.name, "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
            "splits": splits}
    write_meta(tokens_dir, meta)
    for split, s in splits.items():
        log.info("%s: %d documents, %d tokens in %d shard(s)", split, s["documents"], s["tokens"], s["shards"])
    return meta
