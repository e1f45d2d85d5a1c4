"""Both data inputs of the train stage: full-length sequences, ≤ 1 % of tokens dropped,
different data per process, and an exact resume from a saved position."""

import numpy as np
import pytest
import torch

from codeparrot.tokens import open_split
from codeparrot.train.data import PackedStream, TokenWindows, open_source, validation_batches
from train_fixtures import corpus_tokens

SEQ = 64


def stream(fx, **kwargs) -> PackedStream:
    # A small packing buffer so that one epoch spans many fills (the carried tokens matter).
    args = dict(seq_length=SEQ, seed=1, num_of_sequences=8, chars_per_token=3.0)
    return PackedStream(fx.dataset, "train", fx.tokenizer, **{**args, **kwargs})


def joined_tokens(fx) -> np.ndarray:
    """The training texts tokenized and joined with end-of-text, in stream order (shard 0 then 1)."""
    texts = fx.splits["train"][0::2] + fx.splits["train"][1::2]
    ids = fx.tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.concatenate([np.asarray(t + [fx.tokenizer.eos_token_id]) for t in ids])


def test_token_windows_cover_the_corpus_with_full_sequences(train_fixture):
    fx = train_fixture
    windows = TokenWindows(fx.tokens, "train", SEQ, seed=1, shuffle=False)
    stream_tokens = np.concatenate([np.asarray(s) for s in open_split(fx.tokens, "train")])
    total = len(stream_tokens)
    assert total == corpus_tokens(fx.tokenizer, fx.splits["train"])
    batches = [windows.next_batch(16) for _ in range(windows.num_windows // 16)]
    assert all(b.shape == (16, SEQ) and b.dtype == torch.int64 for b in batches)
    served = torch.cat(batches).flatten().numpy()
    # Windows in order are the concatenated shards (windows spanning two shards included).
    assert np.array_equal(served, stream_tokens[: len(served)])
    assert windows.num_windows * SEQ >= 0.99 * total


def test_token_windows_shuffle_and_shard_across_processes(train_fixture):
    fx = train_fixture
    single = TokenWindows(fx.tokens, "train", SEQ, seed=3)
    ranks = [TokenWindows(fx.tokens, "train", SEQ, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        global_batch = single.next_batch(8)
        parts = [r.next_batch(4) for r in ranks]
        assert torch.equal(torch.cat(parts), global_batch)  # same global batch, split by rank
    in_order = TokenWindows(fx.tokens, "train", SEQ, seed=3, shuffle=False).next_batch(8)
    assert not torch.equal(TokenWindows(fx.tokens, "train", SEQ, seed=3).next_batch(8), in_order)
    # Every epoch is a different permutation of the same windows.
    first = [single._index(p) for p in range(single.num_windows)]
    second = [single._index(p) for p in range(single.num_windows, 2 * single.num_windows)]
    assert sorted(first) == sorted(second) == list(range(single.num_windows)) and first != second


def test_packed_stream_keeps_all_but_the_last_partial_sequence(train_fixture):
    fx = train_fixture
    packed = stream(fx, shuffle=False)
    rows = []
    with pytest.raises(StopIteration):
        while True:
            rows.append(packed.next_sequence())
    served = np.concatenate(rows)
    expected = joined_tokens(fx)
    assert all(len(r) == SEQ for r in rows)
    assert np.array_equal(served, expected[: len(served)])  # packing loses nothing in between
    assert len(served) >= 0.99 * len(expected) and len(expected) - len(served) < SEQ


def test_packed_stream_shuffles_chunks_inside_the_buffer(train_fixture):
    fx = train_fixture
    in_order = stream(fx, shuffle=False).next_batch(40)
    shuffled = stream(fx).next_batch(40)
    known = {tuple(r) for r in stream(fx, shuffle=False, num_of_sequences=10_000).next_batch(200).tolist()}
    assert all(tuple(r) in known for r in shuffled.tolist())  # the same chunks ...
    assert not torch.equal(shuffled, in_order)  # ... in another order


@pytest.mark.parametrize("kind", ["tokens", "dataset"])
def test_resume_from_saved_position_gives_the_same_batches(train_fixture, kind, tmp_path):
    fx = train_fixture
    path = fx.tokens if kind == "tokens" else fx.dataset

    def source():
        return open_source(kind, path, "train", SEQ, 1, 0, 1, fx.tokenizer, True, 8, 3.0)

    data = source()
    for _ in range(7):
        data.next_batch(4)
    torch.save(data.state_dict(), tmp_path / "state.pt")  # as in a checkpoint
    expected = [data.next_batch(4) for _ in range(12)]

    resumed = source()
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert all(torch.equal(resumed.next_batch(4), e) for e in expected)


def test_validation_subset_is_fixed_and_full_length(train_fixture):
    fx = train_fixture
    for kind, path in [("tokens", fx.tokens), ("dataset", fx.dataset)]:
        def subset(kind=kind, path=path):
            return validation_batches(open_source(kind, path, "validation", SEQ, 1, 0, 1, fx.tokenizer, False),
                                      num_sequences=20, batch_size=8)
        first, again = subset(), subset()
        assert [b.shape for b in first] == [(8, SEQ), (8, SEQ), (4, SEQ)]
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_bad_input_names_the_fix(train_fixture):
    with pytest.raises(ValueError, match="train.seq_length"):
        TokenWindows(train_fixture.tokens, "validation", 10**9, seed=1)
    with pytest.raises(ValueError, match="'tokens' or 'dataset'"):
        open_source("parquet", train_fixture.tokens, "train", SEQ, 1, 0, 1)


def test_literal_end_of_text_in_code_does_not_split_files(train_fixture, tmp_path):
    from train_fixtures import write_hub_dataset

    texts = ['EOS = "<|endoftext|>"\n' * 40, "def f():\n    return '<|endoftext|>'\n" * 40]
    write_hub_dataset(tmp_path, {"train": texts}, shards=1)
    packed = PackedStream(tmp_path, "train", train_fixture.tokenizer, seq_length=16, seed=1, shuffle=False)
    rows = []
    with pytest.raises(StopIteration):
        while True:
            rows.append(packed.next_sequence())
    eos = train_fixture.tokenizer.eos_token_id
    assert int((np.concatenate(rows) == eos).sum()) + int((packed.carry == eos).sum()) == len(texts)
