"""Training throughput on the tiny preset (2 layers, width 128, 4 heads, vocab 8192, seq 256, batch 16).

Measured in one run, each in its own process so the allocator setting applies from the start:
  1. a bare PyTorch loop (forward, backward, clip, AdamW step) on the same model and data,
     with glibc's default allocator and with M_MMAP_MAX=0 (what codeparrot.train sets);
  2. our loop (`python -m codeparrot.train`, Accelerate and every feature on);
  3. the data loaders alone (memory-mapped token windows; streamed dataset with packing).
Goals: our loop within 5 % of the bare loop; loaders ≥ 20x what training consumes.

    .venv/bin/python bench/bench_train.py [--steps 60] [--keep DIR] [--minutes 5]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fixture builders (train_fixtures.py)

SEQ, BATCH, WARMUP = 256, 16, 10


def build_inputs(folder: Path) -> None:
    """Tokenizer (vocab 8192) + tiny GPT-2 + token shards + Hub-layout dataset from stdlib files."""
    from train_fixtures import build_model_dir, stdlib_python_files, write_hub_dataset, write_token_shards

    if (folder / "tokens" / "meta.json").exists():
        return
    texts = stdlib_python_files(160)
    splits = {"train": texts[:150], "validation": texts[150:]}
    tokenizer = build_model_dir(folder / "model", splits["train"], vocab_size=8192, n_layer=2, n_embd=128,
                                n_head=4, n_positions=SEQ, dropout=0.1)
    write_token_shards(folder / "tokens", splits, tokenizer)
    write_hub_dataset(folder / "dataset", splits)


def bare_loop(folder: Path, steps: int, keep_memory: bool) -> float:
    """tokens/s of the plainest loop over the same windows as codeparrot.train (runs in a child)."""
    if keep_memory:
        import codeparrot.train  # noqa: F401  (sets M_MMAP_MAX=0 on import, before torch allocates)
    import torch
    from transformers import AutoModelForCausalLM

    from codeparrot.train_data import TokenWindows

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(folder / "model", attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    data = TokenWindows(folder / "tokens", "train", SEQ, seed=1)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            start = time.perf_counter()
        batch = data.next_batch(BATCH)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return steps * BATCH * SEQ / (time.perf_counter() - start)


def our_loop(folder: Path, steps: int, minutes: float | None = None) -> tuple[float, list[dict]]:
    """Median tokens/s of codeparrot.train's logged windows (the first, with warm-up, left out)."""
    run = folder / ("run-minutes" if minutes else "run")
    settings = dict(
        model_dir=str(folder / "model"), data_dir=str(folder / "tokens"), final_model_dir=str(run / "model"),
        checkpoint_dir=str(run / "checkpoints"), tensorboard_dir=str(run / "tensorboard"),
        metrics_path=str(run / "metrics.jsonl"), seq_length=SEQ, batch_size=BATCH,
        max_steps=WARMUP + steps if not minutes else 100_000, max_minutes=minutes, log_every=WARMUP,
        eval_every=WARMUP + steps if not minutes else 200, save_every=10**9, eval_sequences=64,
        learning_rate=1e-3, warmup_steps=WARMUP,
    )
    shutil.rmtree(run, ignore_errors=True)  # a fresh run, not a resume of the previous one
    run.mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps(settings))
    subprocess.run([sys.executable, "-m", "codeparrot.train", "--settings", str(run / "settings.json")],
                   check=True, capture_output=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
    return statistics.median(rates), records


def loader_rates(folder: Path, seconds: float = 8.0) -> dict:
    """Tokens/s of both data inputs with no model attached."""
    from transformers import AutoTokenizer

    from codeparrot.train_data import open_source

    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    rates = {}
    for kind in ("tokens", "dataset"):
        data = open_source(kind, folder / kind, "train", SEQ, 1, 0, 1, tokenizer, True, 1024, 3.6)
        data.next_batch(BATCH)  # opening the stream is not throughput
        served, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            served += data.next_batch(BATCH).numel()
        rates[kind] = served / (time.perf_counter() - start)
    return rates


def child(args) -> None:
    print(json.dumps({"tokens_per_s": bare_loop(Path(args.folder), args.steps, args.keep_memory)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per loop")
    parser.add_argument("--keep", help="folder for the inputs (reused if present); default a temp dir")
    parser.add_argument("--minutes", type=float, help="also train this long and print the validation loss")
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        return child(args)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-train-"))
    build_inputs(folder)
    print(f"tiny preset: seq {SEQ}, batch {BATCH}, {args.steps} timed steps; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; load average {os.getloadavg()[0]:.1f}")

    def bare(keep_memory: bool) -> float:
        cmd = [sys.executable, __file__, "--bare-child", "--folder", str(folder), "--steps", str(args.steps)]
        out = subprocess.run(cmd + (["--keep-memory"] if keep_memory else []), check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]

    # Interleaved so that a change in machine load hits every variant alike.
    bare_default, bare_kept, ours = [], [], []
    for _ in range(2):
        bare_default.append(bare(keep_memory=False))
        bare_kept.append(bare(keep_memory=True))
        ours.append(our_loop(folder, args.steps)[0])
    b0, b1, o = max(bare_default), max(bare_kept), max(ours)
    print(f"bare loop, glibc default allocator : {b0:9,.0f} tokens/s")
    print(f"bare loop, M_MMAP_MAX=0            : {b1:9,.0f} tokens/s  ({b1 / b0:.2f}x)")
    print(f"codeparrot.train (Accelerate)      : {o:9,.0f} tokens/s  (overhead vs bare M_MMAP_MAX=0: "
          f"{(1 - o / b1):+.1%}; goal ≤ 5 %)")
    for kind, rate in loader_rates(folder).items():
        print(f"loader {kind:8s} (no model)         : {rate:9,.0f} tokens/s  ({rate / o:,.0f}x training; goal ≥ 20x)")

    if args.minutes:
        _, records = our_loop(folder, 0, minutes=args.minutes)
        last = [r for r in records if "eval_loss" in r][-1]
        print(f"{args.minutes:g}-minute run: {last['step']} steps, {last['step'] * BATCH * SEQ:,} tokens, "
              f"validation loss {last['eval_loss']:.3f} (perplexity {last['perplexity']:.1f})")


if __name__ == "__main__":
    main()
