"""The code tokenizer: exact round trip, seeded and byte-identical training, its report."""

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from codeparrot.tokenizer import (
    EOS_TOKEN,
    encode_batch,
    iter_text_batches,
    load_tokenizer,
    sample_text_batches,
    tokenizer_report,
    train_tokenizer,
)
from tokenizer_fixtures import ADVERSARIAL, small_dataset

VOCAB = 2048


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def tokenizer_dir(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    stats = train_tokenizer(dataset[0]["train"], out, vocab_size=VOCAB, n_files=100, seed=1, batch_rows=32)
    assert stats["documents"] == 100 and stats["vocab_size"] == VOCAB
    return out


def test_loads_with_auto_tokenizer_and_eos_is_the_special_token(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert len(tokenizer) == VOCAB
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.unk_token == EOS_TOKEN
    assert tokenizer.convert_tokens_to_ids(EOS_TOKEN) == tokenizer.eos_token_id == 0
    assert tokenizer.backend_tokenizer.normalizer is None  # bytes in, bytes out


def test_round_trip_on_real_code(tokenizer_dir, dataset):
    tokenizer = load_tokenizer(tokenizer_dir)
    texts = [t for batch in iter_text_batches(dataset[0]["validation"]) for t in batch]
    assert len(texts) == 20
    for text, ids in zip(texts, encode_batch(tokenizer, texts)):
        assert tokenizer.decode(ids) == text
        assert tokenizer(text)["input_ids"] == ids  # the saved tokenizer behaves the same by default


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_round_trip_on_adversarial_strings(tokenizer_dir, text):
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert encode_batch(tokenizer, [text])[0] == ids
    assert tokenizer.eos_token_id not in ids  # a literal <|endoftext|> in code stays text


def flat(batches) -> list[str]:
    return [t for b in batches for t in b]


def test_sample_is_seeded_and_independent_of_batch_size(dataset):
    files = dataset[0]["train"]
    a = flat(sample_text_batches(files, 40, seed=1, batch_rows=7))
    assert a == flat(sample_text_batches(files[::-1], 40, seed=1, batch_rows=1000))
    assert len(a) == 40 and len(set(a)) == 40
    assert set(a) <= set(dataset[1][:130])
    assert a != flat(sample_text_batches(files, 40, seed=2))
    assert len(flat(sample_text_batches(files, None, seed=1))) == 130


def test_missing_content_column_says_what_to_do(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["x = 1"]}), tmp_path / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="no `content` column.*clean stage"):
        train_tokenizer([tmp_path / "train-00000-of-00001.parquet"], tmp_path / "tok", 300, None, 1)


TRAIN_IN_SUBPROCESS = """
import os, sys
from codeparrot.tokenizer import train_tokenizer
train_tokenizer(sys.argv[1:-1], sys.argv[-1], vocab_size=2048, n_files=100, seed=1, batch_rows=50,
                threads=int(os.environ["T"]))
"""


def test_same_seed_gives_byte_identical_files_across_processes(dataset, tokenizer_dir, tmp_path):
    """Fresh processes (other hash seeds, thread counts, batch sizes) write the same bytes."""
    for threads, hash_seed in ((1, "0"), (2, "12345")):
        out = tmp_path / f"t{threads}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "T": str(threads)}
        subprocess.run([sys.executable, "-c", TRAIN_IN_SUBPROCESS, *map(str, dataset[0]["train"]), str(out)],
                       check=True, env=env, capture_output=True, timeout=120)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            assert (out / name).read_bytes() == (tokenizer_dir / name).read_bytes(), name


def test_report_compares_with_english_baseline(tokenizer_dir, dataset, tmp_path):
    report = tokenizer_report(
        tokenizer_dir, dataset[0]["validation"], tmp_path / "tokenizer.json", tmp_path / "tokenizer.md",
        max_files=None, seed=1, baseline_roots=[sysconfig.get_paths()["purelib"]], baseline_max_bytes=2_000_000,
    )
    assert json.loads((tmp_path / "tokenizer.json").read_text()) == report
    ours, base = report["code_tokenizer"], report["baseline_tokenizer"]
    assert ours["documents"] == base["documents"] == 20
    assert ours["chars_per_token"] > base["chars_per_token"] > 1
    assert report["efficiency_ratio"] == pytest.approx(ours["chars_per_token"] / base["chars_per_token"])
    kw = report["keyword_coverage"]
    assert kw["keywords"] == 35 and kw["single_token_after_space"] >= 20
    assert {"def", "class", "import", "return"}.isdisjoint(kw["split"])
    assert len(report["first_merges"]) == len(report["last_merges"]) == 10
    assert report["merges"] == VOCAB - 257
    assert "| code (ours) |" in (tmp_path / "tokenizer.md").read_text()


def test_baseline_text_is_prose_without_code_examples():
    from codeparrot.tokenizer import prose_text

    doc = ("This package is a library for the parsing of files. It is fast and it is small. " * 10
           + "\n\n```python\nimport x\n```\n\n    indented = code()\n>>> doctest()\n")
    text = prose_text(doc)
    assert text is not None and "import" not in text and "indented" not in text and "doctest" not in text
    assert prose_text("def f(x):\n    return {'a': [1, 2, 3]}\n" * 30) is None
