"""Packed token shards: the format between pretokenize and training.

`results/tokens/{split}/shard-{i:05d}.bin` holds raw little-endian token ids, each document's
tokens followed by the end-of-text token; `shard-{i:05d}.idx.npy` holds the int64 start offset
of every document. `results/tokens/meta.json` says the dtype, vocab size, eos id and how many
shards and tokens each split has. Memory-mapped reads cost no RAM however big the corpus.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codeparrot.atomic import atomic_output, commit, temp_path
from codeparrot.raw import read_json, write_json

META_FILE = "meta.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: uint16 halves disk and I/O for vocab ≤ 65536."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def index_path(path_bin: str | Path) -> Path:
    """`shard-00000.bin` -> `shard-00000.idx.npy`."""
    path_bin = Path(path_bin)
    if path_bin.suffix != ".bin":
        raise ValueError(f"Token shard names end in .bin, got {path_bin}")
    return path_bin.with_suffix(".idx.npy")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.bin"


class TokenShardWriter:
    """Appends documents to one shard; both files appear (renamed from temp names) on a clean exit."""

    def __init__(self, path_bin: str | Path, dtype, eos_token_id: int):
        self.path_bin = Path(path_bin)
        self.path_idx = index_path(self.path_bin)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.eos_token_id = eos_token_id
        if not 0 <= eos_token_id <= np.iinfo(self.dtype).max:
            raise ValueError(f"eos_token_id {eos_token_id} does not fit in {self.dtype}")
        self._max_id = np.iinfo(self.dtype).max
        self._tmp_bin = temp_path(self.path_bin)
        self._file = None
        self._starts: list[int] = []
        self.tokens = 0

    def __enter__(self) -> "TokenShardWriter":
        self.path_bin.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp_bin, "wb")
        return self

    def add_document(self, ids: Sequence[int]) -> None:
        array = np.asarray(ids, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() > self._max_id):
            raise ValueError(f"token id out of range for {self.dtype} in document {len(self._starts)}")
        self._starts.append(self.tokens)
        self._file.write(array.astype(self.dtype).tobytes())
        self._file.write(np.array([self.eos_token_id], dtype=self.dtype).tobytes())
        self.tokens += array.size + 1

    @property
    def documents(self) -> int:
        return len(self._starts)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is not None:
            self._tmp_bin.unlink(missing_ok=True)
            return
        with atomic_output(self.path_idx) as tmp_idx, open(tmp_idx, "wb") as f:
            np.save(f, np.asarray(self._starts, dtype="<i8"))  # a file object: np.save adds no .npy to the name
        commit(self._tmp_bin, self.path_bin)


def open_token_shard(path_bin: str | Path, dtype) -> np.memmap:
    """1-D read-only memmap of all tokens of one shard (an empty shard gives an empty array)."""
    dtype = np.dtype(dtype).newbyteorder("<")
    if os.path.getsize(path_bin) == 0:
        return np.zeros(0, dtype=dtype)  # np.memmap refuses empty files
    return np.memmap(path_bin, dtype=dtype, mode="r")


def read_document_starts(path_bin: str | Path) -> np.ndarray:
    return np.load(index_path(path_bin))


def read_meta(tokens_dir: str | Path) -> dict:
    path = Path(tokens_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the pretokenize stage first (snakemake {path}).")
    return read_json(path)


def write_meta(tokens_dir: str | Path, meta: dict) -> None:
    write_json(Path(tokens_dir) / META_FILE, meta, sort_keys=True)


def open_split(tokens_dir: str | Path, split: str) -> list[np.memmap]:
    """All shards of `split`, in shard order, memory-mapped with the dtype recorded in meta.json."""
    meta = read_meta(tokens_dir)
    if split not in meta["splits"]:
        raise KeyError(f"split {split!r} not in {Path(tokens_dir) / META_FILE}; have {sorted(meta['splits'])}")
    n = meta["splits"][split]["shards"]
    return [open_token_shard(Path(tokens_dir) / split / shard_name(i), meta["dtype"]) for i in range(n)]
