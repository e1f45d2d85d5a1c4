"""Byte-level BPE tokenizer trained from scratch on the published train split, and its report.

Like GPT-2: 256-byte base alphabet, no normalizer, `<|endoftext|>` as bos/eos/unk. Built offline
from an empty `GPT2Tokenizer()` (transformers 5), so no `gpt2` download. The tokenizer is saved
with `split_special_tokens=True`: a literal `<|endoftext|>` inside source code stays text, so
encode + decode reproduces any file exactly. Code that wants the end-of-text token uses its id.
"""

import hashlib
import json
import keyword
import logging
import os
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from codeparrot.atomic import atomic_write_text, save_pretrained

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
TEXT_COLUMN = "content"


# --- reading the published dataset ------------------------------------------------------------

def parquet_rows(paths: Sequence[str | Path]) -> list[int]:
    """Row count of each parquet file, from the footer (no data read)."""
    return [pq.ParquetFile(p).metadata.num_rows for p in paths]


def iter_text_batches(paths: Sequence[str | Path], batch_rows: int = 1000) -> Iterator[list[str]]:
    """The `content` column of the files, in order, `batch_rows` at a time (never a whole file in memory)."""
    for path in paths:
        parquet = pq.ParquetFile(path)
        if TEXT_COLUMN not in parquet.schema_arrow.names:
            raise ValueError(f"{path} has no `{TEXT_COLUMN}` column (columns: {parquet.schema_arrow.names}); "
                             "pass the published dataset written by the clean stage.")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[TEXT_COLUMN]):
            yield batch.column(0).to_pylist()


def sample_text_batches(paths: Sequence[str | Path], n_files: int | None, seed: int,
                        batch_rows: int = 1000) -> Iterator[list[str]]:
    """A seeded uniform sample of `n_files` documents (all when None), streamed in dataset order.

    The sample is drawn over global row numbers (counts come from the parquet footers), so it
    depends only on the seed and the files' content and order, not on batch sizes or threads.
    """
    paths = sorted(map(str, paths))
    total = sum(parquet_rows(paths))
    if n_files is None or n_files >= total:
        yield from iter_text_batches(paths, batch_rows)
        return
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=n_files, replace=False))
    offset = 0
    for batch in iter_text_batches(paths, batch_rows):
        lo, hi = np.searchsorted(chosen, [offset, offset + len(batch)])
        if hi > lo:
            yield [batch[i - offset] for i in chosen[lo:hi]]
        offset += len(batch)


def count_documents(paths: Sequence[str | Path], n_files: int | None) -> int:
    total = sum(parquet_rows(paths))
    return total if n_files is None else min(total, n_files)


# --- training ---------------------------------------------------------------------------------

def set_threads(threads: int | None) -> None:
    """Tokenizers runs on a rayon pool; its size is read from the environment on first use."""
    if threads:
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"


def train_bpe(text_batches: Iterable[list[str]], vocab_size: int, length: int | None = None,
              min_frequency: int = 0):
    """Train a byte-level BPE with `<|endoftext|>` as its only special token (id 0)."""
    from transformers import GPT2Tokenizer

    if vocab_size < 257:
        raise ValueError(f"tokenizer.vocab_size={vocab_size} is below the 256-byte alphabet + {EOS_TOKEN}; use ≥ 257.")
    empty = GPT2Tokenizer(bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
                          split_special_tokens=True)
    return empty.train_new_from_iterator(text_batches, vocab_size=vocab_size, length=length,
                                         min_frequency=min_frequency, show_progress=False)


def train_tokenizer(train_files: Sequence[str | Path], out_dir: str | Path, vocab_size: int,
                    n_files: int | None, seed: int, batch_rows: int = 1000, min_frequency: int = 0,
                    threads: int | None = None) -> dict:
    """Train the code tokenizer on a seeded sample of the train split and `save_pretrained` it."""
    set_threads(threads)
    if not train_files:
        raise ValueError("No train parquet files given: run the clean stage first (results/dataset/data/).")
    n_docs = count_documents(train_files, n_files)
    stats = {"documents": 0, "characters": 0}

    def counted(batches, progress):
        for batch in batches:
            stats["documents"] += len(batch)
            stats["characters"] += sum(map(len, batch))
            progress.update(len(batch))
            yield batch

    # Reading and counting pre-tokens happen while the sample streams; the merges follow.
    with tqdm(total=n_docs, desc="tokenizer sample", unit="doc") as progress:
        sample = counted(sample_text_batches(train_files, n_files, seed, batch_rows), progress)
        tokenizer = train_bpe(sample, vocab_size, length=n_docs, min_frequency=min_frequency)
    save_pretrained(out_dir, tokenizer)
    log.info("Trained a %d-token byte-level BPE on %d files (%.1f M characters) -> %s",
             len(tokenizer), stats["documents"], stats["characters"] / 1e6, out_dir)
    return {"vocab_size": len(tokenizer), **stats}


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, special-looking strings kept as text, no special tokens added."""
    backend = tokenizer.backend_tokenizer
    backend.encode_special_tokens = True
    return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


# --- the baseline: same algorithm and vocab, trained on English prose ------------------------

PROSE_SUFFIXES = {".md", ".rst", ".txt"}
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
# Indented blocks and doctest lines are code examples in Markdown/reST: not natural language.
_CODE_LINE = re.compile(r"^(?: {4,}|\t|>>>|\.\.\.).*\n?", re.M)


def default_prose_roots() -> list[str]:
    """English documentation found on any machine with this environment: package docs and READMEs."""
    roots = [sysconfig.get_paths()["purelib"], "/usr/share/doc"]
    return [r for r in roots if os.path.isdir(r)]


def _is_prose_file(path: Path) -> bool:
    return (path.suffix.lower() in PROSE_SUFFIXES or path.name == "METADATA"
            or path.name.upper().startswith("README"))


def prose_text(text: str) -> str | None:
    """The text without its code examples, if what is left reads like prose (mostly letters and spaces)."""
    text = _CODE_LINE.sub("", _FENCE.sub("", text))
    if len(text) < 500:
        return None
    letters = sum(c.isalpha() or c.isspace() for c in text)
    words = text.split()
    common = sum(w.lower() in ("the", "a", "of", "to", "and", "is", "in") for w in words)
    if letters / len(text) < 0.85 or common / max(len(words), 1) < 0.05:
        return None
    return text


def collect_prose(roots: Sequence[str | Path], max_bytes: int) -> list[str]:
    """English documents under `roots` (sorted, deduplicated by content) up to `max_bytes` of text."""
    paths = sorted(p for root in roots for p in Path(root).rglob("*")
                   if _is_prose_file(p) and p.is_file() and not p.is_symlink())
    seen, texts, size = set(), [], 0
    for path in paths:
        try:
            text = prose_text(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable files are simply not prose
        if text is None:
            continue
        digest = hashlib.md5(text.encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        texts.append(text)
        size += len(text.encode())
        if size >= max_bytes:
            break
    return texts


# --- the report -------------------------------------------------------------------------------

def chars_per_token(tokenizer, text_batches: Iterable[list[str]]) -> dict:
    chars = tokens = docs = 0
    for batch in text_batches:
        docs += len(batch)
        chars += sum(map(len, batch))
        tokens += sum(map(len, encode_batch(tokenizer, batch)))
    return {"documents": docs, "characters": chars, "tokens": tokens,
            "chars_per_token": chars / tokens if tokens else float("nan")}


def keyword_coverage(tokenizer) -> dict:
    """Which Python keywords are one token, alone and after a space (as they mostly appear)."""
    alone = {k: len(encode_batch(tokenizer, [k])[0]) == 1 for k in keyword.kwlist}
    spaced = {k: len(encode_batch(tokenizer, [" " + k])[0]) == 1 for k in keyword.kwlist}
    return {"keywords": len(keyword.kwlist),
            "single_token": sum(alone.values()), "single_token_after_space": sum(spaced.values()),
            "split": sorted(k for k, ok in alone.items() if not ok),
            "split_after_space": sorted(k for k, ok in spaced.items() if not ok)}


def merges_and_longest(tokenizer, n: int = 10) -> dict:
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    # The byte-level decoder turns a token's symbols (Ġ, Ċ, ...) back into the text it stands for.
    readable = tokenizer.backend_tokenizer.decoder.decode
    merges = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    vocab = {t: i for t, i in model["vocab"].items() if t != EOS_TOKEN}
    text = {t: readable([t]) for t in vocab}
    longest = sorted(vocab, key=lambda t: (-len(text[t]), vocab[t]))[:n]
    return {"merges": len(merges),
            "first_merges": [[readable([a]), readable([b])] for a, b in merges[:n]],
            "last_merges": [[readable([a]), readable([b])] for a, b in merges[-n:]],
            "longest_tokens": [text[t] for t in longest]}


def merges_markdown(pairs: list) -> str:
    return ", ".join(f"`{a!r}+{b!r}`" for a, b in pairs)


def report_markdown(report: dict) -> str:
    ours, base = report["code_tokenizer"], report["baseline_tokenizer"]
    kw = report["keyword_coverage"]
    return "\n".join([
        "# Tokenizer",
        "",
        f"Byte-level BPE, vocabulary {report['vocab_size']}, on {ours['documents']} validation files.",
        "",
        "| tokenizer | trained on | chars/token (validation) |",
        "|---|---|---|",
        f"| code (ours) | train split sample | {ours['chars_per_token']:.2f} |",
        f"| baseline | {base['training_documents']} English docs on this machine | {base['chars_per_token']:.2f} |",
        "",
        f"The code tokenizer is **{report['efficiency_ratio']:.2f}×** more efficient on Python code.",
        "",
        f"Python keywords that are one token: {kw['single_token']}/{kw['keywords']} "
        f"(after a space: {kw['single_token_after_space']}/{kw['keywords']}); "
        f"split: {', '.join(kw['split']) or 'none'}.",
        "",
        f"First merges: {merges_markdown(report['first_merges'])}",
        "",
        f"Last merges: {merges_markdown(report['last_merges'])}",
        "",
        "Longest tokens: " + ", ".join(f"`{t!r}`" for t in report["longest_tokens"]),
        "",
    ])


def tokenizer_report(tokenizer_dir: str | Path, validation_files: Sequence[str | Path],
                     out_json: str | Path, out_md: str | Path, max_files: int | None, seed: int,
                     baseline_roots: Sequence[str] = (), baseline_max_bytes: int = 20_000_000,
                     threads: int | None = None) -> dict:
    """Chars/token on validation vs an English-trained baseline, keyword coverage, merges."""
    set_threads(threads)
    tokenizer = load_tokenizer(tokenizer_dir)
    prose = collect_prose(baseline_roots or default_prose_roots(), baseline_max_bytes)
    if not prose:
        raise RuntimeError(f"No English text found under {list(baseline_roots) or default_prose_roots()}; "
                           "set tokenizer.report.baseline_roots to folders with .md/.rst/.txt docs.")
    baseline = train_bpe([prose[i:i + 1000] for i in range(0, len(prose), 1000)], len(tokenizer))

    def validation():
        return tqdm(sample_text_batches(validation_files, max_files, seed), desc="tokenizer report", unit="batch")

    ours = chars_per_token(tokenizer, validation())
    base = chars_per_token(baseline, validation())
    report = {
        "vocab_size": len(tokenizer),
        "code_tokenizer": ours,
        "baseline_tokenizer": {**base, "training_documents": len(prose),
                               "training_bytes": sum(len(t.encode()) for t in prose)},
        "efficiency_ratio": ours["chars_per_token"] / base["chars_per_token"],
        "keyword_coverage": keyword_coverage(tokenizer),
        **merges_and_longest(tokenizer),
    }
    atomic_write_text(out_json, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown = report_markdown(report)
    atomic_write_text(out_md, markdown)
    log.info("%s", markdown)
    return report
