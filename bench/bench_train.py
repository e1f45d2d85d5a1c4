"""Training throughput: by default the tiny preset on the CPU (2 layers, width 128, 4 heads, vocab 8192, seq 256, batch 16).

Measured in one run, each in its own process so the allocator setting applies from the start:
  1. a bare PyTorch loop (forward, backward, clip, AdamW step) on the same model and data,
     with glibc's default allocator and with M_MMAP_MAX=0 (what codeparrot.train sets);
  2. our loop (`python -m codeparrot.train`, Accelerate and every feature on);
  3. the data loaders alone (memory-mapped token windows; streamed dataset with packing).
Goals: our loop within 5 % of the bare loop; loaders ≥ 20x what training consumes.
On a GPU both loops run there, in the same precision (`--mixed-precision`, bf16 by default):

    .venv/bin/python bench/bench_train.py [--steps 60] [--keep DIR] [--minutes 5]
    python bench/bench_train.py --preset codeparrot-small --seq 1024 --batch 12 --vocab 32768
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

WARMUP = 10


def build_inputs(folder: Path, preset: str, seq: int, vocab: int, overrides: dict) -> None:
    """Tokenizer + GPT-2 of the preset + token shards + Hub-layout dataset from stdlib files. The
    model's vocabulary is `vocab` even where the small corpus gives the tokenizer fewer tokens:
    it sets the speed."""
    from train_fixtures import stdlib_python_files, train_tokenizer, write_hub_dataset, write_token_shards

    from codeparrot.model import build_config, build_model

    if (folder / "tokens" / "meta.json").exists():
        return
    texts = stdlib_python_files(160)
    splits = {"train": texts[:150], "validation": texts[150:]}
    tokenizer = train_tokenizer(splits["train"], vocab)
    config = build_config(preset, max(len(tokenizer), vocab), seq, tokenizer.eos_token_id, overrides=overrides)
    build_model(config, seed=0).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    write_token_shards(folder / "tokens", splits, tokenizer)
    write_hub_dataset(folder / "dataset", splits)


def bare_loop(folder: Path, steps: int, keep_memory: bool, seq: int, batch_size: int, mixed_precision: str) -> float:
    """tokens/s of the plainest loop over the same windows as codeparrot.train (runs in a child)."""
    if keep_memory:
        import codeparrot.train  # noqa: F401  (sets M_MMAP_MAX=0 on import, before torch allocates)
    import torch
    from transformers import AutoModelForCausalLM

    from codeparrot.train_data import TokenWindows

    torch.manual_seed(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(folder / "model", attn_implementation="sdpa").to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    data = TokenWindows(folder / "tokens", "train", seq, seed=1)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            if device.type == "cuda":
                torch.cuda.synchronize()  # the warm-up steps finish before the clock starts
            start = time.perf_counter()
        batch = data.next_batch(batch_size).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return steps * batch_size * seq / (time.perf_counter() - start)


def our_loop(folder: Path, steps: int, seq: int, batch_size: int, mixed_precision: str,
             minutes: float | None = None) -> tuple[float, list[dict]]:
    """Median tokens/s of codeparrot.train's logged windows (the first, with warm-up, left out)."""
    run = folder / ("run-minutes" if minutes else "run")
    settings = dict(
        model_dir=str(folder / "model"), data_dir=str(folder / "tokens"), final_model_dir=str(run / "model"),
        checkpoint_dir=str(run / "checkpoints"), tensorboard_dir=str(run / "tensorboard"),
        metrics_path=str(run / "metrics.jsonl"), seq_length=seq, batch_size=batch_size, mixed_precision=mixed_precision,
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


def loader_rates(folder: Path, kinds: list[str], seq: int, batch_size: int, seconds: float = 8.0) -> dict:
    """Tokens/s of the data inputs with no model attached."""
    from transformers import AutoTokenizer

    from codeparrot.train_data import open_source

    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    rates = {}
    for kind in kinds:
        data = open_source(kind, folder / kind, "train", seq, 1, 0, 1, tokenizer, True, 1024, 3.6)
        data.next_batch(batch_size)  # opening the stream is not throughput
        served, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            served += data.next_batch(batch_size).numel()
        rates[kind] = served / (time.perf_counter() - start)
    return rates


def child(args) -> None:
    rate = bare_loop(Path(args.folder), args.steps, args.keep_memory, args.seq, args.batch, args.mixed_precision)
    print(json.dumps({"tokens_per_s": rate}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per loop")
    parser.add_argument("--keep", help="folder for the inputs (reused if present); default a temp dir")
    parser.add_argument("--minutes", type=float, help="also train this long and print the validation loss")
    parser.add_argument("--preset", default="tiny", help="model preset (codeparrot.model.PRESETS)")
    parser.add_argument("--seq", type=int, default=256, help="sequence length")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--vocab", type=int, default=8192, help="model vocabulary")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                        help="default: bf16 on a GPU, no on the CPU (bf16 is ~24x slower there)")
    parser.add_argument("--overrides", type=json.loads, default={}, help='model config overrides (JSON), as model.overrides')
    parser.add_argument("--loaders", nargs="*", default=["tokens", "dataset"], help="data inputs to time alone")
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mixed_precision is None:
        import torch

        args.mixed_precision = "bf16" if torch.cuda.is_available() else "no"
    if args.bare_child:
        return child(args)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-train-"))
    build_inputs(folder, args.preset, args.seq, args.vocab, args.overrides)
    shape = (args.seq, args.batch, args.mixed_precision)
    print(f"{args.preset} preset{' with ' + json.dumps(args.overrides) if args.overrides else ''}: seq {args.seq}, batch {args.batch}, mixed precision {args.mixed_precision}, "
          f"{args.steps} timed steps; {device_name()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average {os.getloadavg()[0]:.1f}")

    def bare(keep_memory: bool) -> float:
        cmd = [sys.executable, __file__, "--bare-child", "--folder", str(folder), "--steps", str(args.steps),
               "--seq", str(args.seq), "--batch", str(args.batch), "--mixed-precision", args.mixed_precision]
        out = subprocess.run(cmd + (["--keep-memory"] if keep_memory else []), check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]

    # Interleaved so that a change in machine load hits every variant alike.
    bare_default, bare_kept, ours = [], [], []
    for _ in range(2):
        bare_default.append(bare(keep_memory=False))
        bare_kept.append(bare(keep_memory=True))
        rate, records = our_loop(folder, args.steps, *shape)
        ours.append(rate)
    b0, b1, o = max(bare_default), max(bare_kept), max(ours)
    mfu = [r["mfu"] for r in records if r.get("mfu") is not None]
    print(f"bare loop, glibc default allocator : {b0:9,.0f} tokens/s")
    print(f"bare loop, M_MMAP_MAX=0            : {b1:9,.0f} tokens/s  ({b1 / b0:.2f}x)")
    print(f"codeparrot.train (Accelerate)      : {o:9,.0f} tokens/s  (overhead vs bare M_MMAP_MAX=0: "
          f"{(1 - o / b1):+.1%}; goal ≤ 5 %)" + (f"; MFU {statistics.median(mfu):.1%}" if mfu else ""))
    for kind, rate in loader_rates(folder, args.loaders, args.seq, args.batch).items():
        print(f"loader {kind:8s} (no model)         : {rate:9,.0f} tokens/s  ({rate / o:,.0f}x training; goal ≥ 20x)")

    if args.minutes:
        _, records = our_loop(folder, 0, *shape, minutes=args.minutes)
        last = [r for r in records if "eval_loss" in r][-1]
        print(f"{args.minutes:g}-minute run: {last['step']} steps, {last['step'] * args.batch * args.seq:,} tokens, "
              f"validation loss {last['eval_loss']:.3f} (perplexity {last['perplexity']:.1f})")


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
