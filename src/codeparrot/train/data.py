"""Training batches: full-length token sequences, different on every process, resumable exactly.

Two interchangeable sources, chosen by `train.data` in the config:

- `TokenWindows`: the pretokenized shards (codeparrot.tokens) memory-mapped; the corpus is one
  long token stream cut into `seq_length` windows, visited in a seeded permutation per epoch.
  Its position is one integer, so resuming costs nothing.
- `PackedStream`: the CodeParrot way. The published dataset is streamed with `datasets`, a
  buffer of characters is tokenized, files are joined with the end-of-text token and cut into
  `seq_length` chunks, and the chunks are shuffled inside the buffer (without that, consecutive
  chunks of one file reach the model in order). Its state (stream position, chunks not yet
  served, tokens carried over) goes into every checkpoint, so a resume never replays the stream.

Each process (rank r of w) serves every w-th sequence of the same global order, so the global
batch is the same whatever the number of processes.
"""

import copy
import queue
import threading
from pathlib import Path

import numpy as np
import torch

from codeparrot.config import schema_defaults
from codeparrot.tokens import open_split, read_meta

_TRAIN = schema_defaults("train")


class TokenWindows:
    """`seq_length` windows over the concatenated token shards of one split."""

    def __init__(self, tokens_dir: str | Path, split: str, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.shards = [s for s in open_split(tokens_dir, split) if len(s)]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])  # global start of every shard
        self.seq_length = seq_length
        self.num_windows = int(self.offsets[-1]) // seq_length  # drops < seq_length tokens in all
        if self.num_windows == 0:
            raise ValueError(
                f"split {split!r} in {tokens_dir} has {int(self.offsets[-1])} tokens, fewer than one "
                f"sequence of train.seq_length={seq_length}: pretokenize more data or lower seq_length."
            )
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.position = 0  # sequences served to all processes together
        self._epoch, self._order = -1, None

    def window(self, k: int) -> np.ndarray:
        """Tokens [k*T, (k+1)*T) of the concatenated stream (a window may span two shards)."""
        start, stop = k * self.seq_length, (k + 1) * self.seq_length
        parts = []
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while start < stop:
            begin = start - int(self.offsets[shard])
            take = min(stop - start, len(self.shards[shard]) - begin)
            parts.append(self.shards[shard][begin:begin + take])
            start += take
            shard += 1
        return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])

    def _index(self, position: int) -> int:
        epoch, i = divmod(position, self.num_windows)
        if not self.shuffle:
            return i
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
        return int(self._order[i])

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """This process's `batch_size` sequences of the next global batch, as int64 [B, T]."""
        first = self.position + self.rank * batch_size
        rows = [self.window(self._index(p)) for p in range(first, first + batch_size)]
        self.position += batch_size * self.world_size
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class PackedStream:
    """Constant-length packing of a streamed dataset with a shuffle of the packed chunks."""

    def __init__(self, dataset_dir: str | Path, split: str, tokenizer, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1, num_of_sequences: int = _TRAIN["num_of_sequences"],
                 chars_per_token: float = _TRAIN["chars_per_token"], shuffle: bool = True,
                 content_field: str = "content"):
        self.dataset_dir, self.split = str(dataset_dir), split
        self.tokenizer, self.seq_length = tokenizer, seq_length
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ValueError("the tokenizer has no eos token: packing joins files with it")
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.buffer_chars = int(seq_length * num_of_sequences * chars_per_token)
        self.content_field = content_field
        self.rng = np.random.default_rng([seed, rank])
        self.epoch = 0
        self.pending = np.zeros((0, seq_length), dtype=np.int64)  # packed chunks not served yet
        self.carry = np.zeros(0, dtype=np.int64)  # tokens after the last full chunk
        self._stream_state = None  # the stream's position after the last file read
        self._dataset = None
        self._iterator = None

    def _open(self, stream_state: dict | None = None):
        from datasets import load_dataset
        from datasets.distributed import split_dataset_by_node

        dataset = load_dataset(self.dataset_dir, split=self.split, streaming=True)
        dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        if stream_state is not None:
            dataset.load_state_dict(stream_state)
        self._dataset, self._iterator = dataset, iter(dataset)

    def _read_files(self) -> list[str]:
        """Files worth `buffer_chars` characters; a new epoch starts when the stream ends."""
        if self._iterator is None:
            self._open(self._stream_state)
        texts, chars, restarted = [], 0, False
        while chars < self.buffer_chars:
            try:
                text = next(self._iterator)[self.content_field]
            except StopIteration:
                if restarted or not self.shuffle:
                    break  # an empty stream, or one pass is all an unshuffled (eval) stream gives
                self.epoch += 1
                self._open()
                restarted = True
                continue
            texts.append(text)
            chars += len(text)
        self._stream_state = copy.deepcopy(self._dataset.state_dict())
        return texts

    def _fill(self) -> None:
        texts = self._read_files()
        if not texts:
            raise StopIteration
        ids = self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        joined = [self.carry] + [np.asarray(t + [self.eos], dtype=np.int64) for t in ids]
        tokens = np.concatenate(joined)
        n_chunks = len(tokens) // self.seq_length
        chunks = tokens[: n_chunks * self.seq_length].reshape(n_chunks, self.seq_length)
        self.carry = tokens[n_chunks * self.seq_length:]
        if self.shuffle:
            chunks = chunks[self.rng.permutation(n_chunks)]
        self.pending = np.concatenate([self.pending, chunks])

    def next_sequence(self) -> np.ndarray:
        while len(self.pending) == 0:
            self._fill()
        row, self.pending = self.pending[0], self.pending[1:]
        return row

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.next_sequence() for _ in range(batch_size)]))

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "stream": self._stream_state,
            "pending": torch.from_numpy(self.pending.copy()),
            "carry": torch.from_numpy(self.carry.copy()),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._stream_state = state["stream"]
        self.pending = state["pending"].numpy().astype(np.int64)
        self.carry = state["carry"].numpy().astype(np.int64)
        self.rng.bit_generator.state = state["rng"]
        self._iterator = None  # reopened at the saved position on the next read


class DeviceBatches:
    """The micro-batches of one source, on the training device, in the source's order.

    With `pin`, each batch is copied into page-locked host memory so the copy to the GPU runs
    asynchronously (`non_blocking`), overlapping the previous step's kernels. With `prefetch` > 0
    a background thread reads that many batches ahead (the source is only ever read by that one
    thread, so the order is the source's). `state_dict` is the source's state after the last batch
    handed out, not after the ones read ahead: a checkpoint resumes at the next unserved batch.
    """

    def __init__(self, source, batch_size: int, device: torch.device, prefetch: int = 0, pin: bool = False):
        self.source, self.batch_size, self.device = source, batch_size, device
        self.prefetch, self.pin = prefetch, pin
        self._state = source.state_dict() if prefetch > 0 else None
        self._queue: queue.Queue | None = None

    def _read(self) -> torch.Tensor:
        batch = self.source.next_batch(self.batch_size)
        return batch.pin_memory() if self.pin else batch

    def _read_ahead(self) -> None:
        while True:
            try:
                item = self._read(), self.source.state_dict()
            except BaseException as error:  # raised again in the training thread
                self._queue.put(error)
                return
            self._queue.put(item)

    def next_batch(self) -> torch.Tensor:
        if self.prefetch <= 0:
            batch = self._read()
        else:
            if self._queue is None:
                self._queue = queue.Queue(maxsize=self.prefetch)
                threading.Thread(target=self._read_ahead, name="prefetch-batches", daemon=True).start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            batch, self._state = item
        return batch.to(self.device, non_blocking=self.pin)

    def state_dict(self) -> dict:
        return self._state if self.prefetch > 0 else self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self._queue is not None:
            raise RuntimeError("load_state_dict after batches were read ahead: load the state first")
        self.source.load_state_dict(state)
        self._state = self.source.state_dict() if self.prefetch > 0 else None


def validation_batches(source, num_sequences: int, batch_size: int, pin: bool = False) -> list[torch.Tensor]:
    """The fixed validation subset of this process: the first `num_sequences` sequences, in order
    (`pin`: in page-locked memory, for asynchronous copies to the GPU)."""
    rows = []
    try:
        for _ in range(num_sequences // source.world_size):
            rows.append(source.next_batch(1)[0])
    except StopIteration:
        pass
    if not rows:
        raise ValueError("the validation split gives no full-length sequence: add validation data "
                         "or lower train.seq_length")
    batches = [torch.stack(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    return [b.pin_memory() for b in batches] if pin else batches


def open_source(kind: str, path: str | Path, split: str, seq_length: int, seed: int, rank: int,
                world_size: int, tokenizer=None, shuffle: bool = True,
                num_of_sequences: int = _TRAIN["num_of_sequences"], chars_per_token: float = _TRAIN["chars_per_token"]):
    """The data source named by `train.data`: "tokens" (results/tokens) or "dataset" (results/dataset)."""
    if kind == "tokens":
        meta = read_meta(path)
        if tokenizer is not None and meta["vocab_size"] > len(tokenizer):
            raise ValueError(f"{path} was pretokenized with a vocabulary of {meta['vocab_size']} "
                             f"but the model's tokenizer has {len(tokenizer)}: rerun pretokenize")
        return TokenWindows(path, split, seq_length, seed, rank, world_size, shuffle)
    if kind == "dataset":
        return PackedStream(path, split, tokenizer, seq_length, seed, rank, world_size,
                            num_of_sequences, chars_per_token, shuffle)
    raise ValueError(f"train.data must be 'tokens' or 'dataset', got {kind!r}")
