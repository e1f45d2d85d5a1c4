"""Tokenizer training MB/s and pretokenize MB/s per core, each against a baseline in the same run.

    .venv/bin/python bench/bench_tokenizer.py [--mb 20] [--vocab 8192] [--threads 1 2]

Corpus: real Python files of this environment (site-packages, sorted, first --mb megabytes).
- training: `train_bpe` fed batches of 1000 documents (what the rule does) vs the same trainer
  fed one document at a time (the usual `yield text` iterator);
- pretokenize: `pretokenize` (Rust `encode_batch` on a thread pool, packed shard) with
  1..N threads vs one-by-one `tokenizer(text)` calls of transformers on one core.
Rayon sizes its pool once per process, so each thread count runs in a fresh subprocess (timed
inside it, after the imports). On a shared machine compare figures of the same run only.
"""

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def python_corpus(megabytes: float) -> list[str]:
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        size += len(text.encode())
        if size >= megabytes * 1e6:
            break
    return texts


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / 1e6


def bench_training(texts: list[str], vocab: int, repeats: int = 2) -> None:
    """Best of `repeats` alternating runs (the machine is shared: take the least disturbed one)."""
    from codeparrot.tokenizer import train_bpe

    mb = megabytes(texts)
    feeds = {"batches of 1000 (rule)": lambda: [texts[i:i + 1000] for i in range(0, len(texts), 1000)],
             "one document at a time": lambda: iter(texts)}
    train_bpe([texts[:10]], 300)  # imports and thread pool start outside the timings
    best = {name: float("inf") for name in feeds}
    for _ in range(repeats):
        for name, feed in feeds.items():
            start = time.perf_counter()
            train_bpe(feed(), vocab)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"train vocab={vocab} {name:<24} {seconds:6.2f} s  {mb / seconds:6.2f} MB/s")


def bench_pretokenize_child(parquet: str, tokenizer_dir: str, threads: int, baseline: bool) -> dict:
    """Runs inside a fresh process (RAYON_NUM_THREADS is read once)."""
    from codeparrot.pretokenize import pretokenize
    from codeparrot.tokenizer import iter_text_batches, load_tokenizer

    if baseline:
        tokenizer = load_tokenizer(tokenizer_dir)
        texts = [t for batch in iter_text_batches([parquet]) for t in batch]
        start = time.perf_counter()
        for text in texts:
            tokenizer(text)["input_ids"]
        return {"seconds": time.perf_counter() - start}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        pretokenize(parquet, tokenizer_dir, Path(out) / "shard-00000.bin", threads=threads)
        return {"seconds": time.perf_counter() - start}


def run_child(*args: str, threads: int) -> float:
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", *args, str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def bench_pretokenize(texts: list[str], vocab: int, thread_counts: list[int]) -> None:
    from codeparrot.tokenizer import train_bpe

    mb = megabytes(texts)
    with tempfile.TemporaryDirectory() as tmp:
        parquet = str(Path(tmp) / "train-00000-of-00001.parquet")
        pq.write_table(pa.table({"content": texts}), parquet)
        tokenizer_dir = str(Path(tmp) / "tokenizer")
        train_bpe([texts[:2000]], vocab).save_pretrained(tokenizer_dir)
        seconds = run_child(parquet, tokenizer_dir, "baseline", threads=1)
        print(f"pretokenize baseline: one-by-one tokenizer(text), 1 core  {seconds:6.2f} s  "
              f"{mb / seconds:6.2f} MB/s per core")
        for threads in thread_counts:
            seconds = run_child(parquet, tokenizer_dir, "ours", threads=threads)
            print(f"pretokenize (encode_batch + shard), {threads} core(s)  {seconds:6.2f} s  "
                  f"{mb / seconds:6.2f} MB/s = {mb / seconds / threads:6.2f} MB/s per core")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        parquet, tokenizer_dir, mode, threads = sys.argv[2:]
        print(json.dumps(bench_pretokenize_child(parquet, tokenizer_dir, int(threads), mode == "baseline")))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20, help="corpus size in MB of Python source")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    texts = python_corpus(args.mb)
    print(f"corpus: {len(texts)} Python files, {megabytes(texts):.1f} MB; {os.cpu_count()} CPUs")
    bench_training(texts, args.vocab)
    bench_pretokenize(texts, args.vocab, args.threads)


if __name__ == "__main__":
    main()
