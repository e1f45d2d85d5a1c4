"""Training throughput: by default the tiny preset on the CPU (2 layers, width 128, 4 heads, vocab
8192, seq 256, batch 16).

Measured in one run, each in its own process so the allocator setting applies from the start:
  1. a bare PyTorch loop (forward, backward, clip, AdamW step) on the same model and data,
     with glibc's default allocator (CPU only) and with M_MMAP_MAX=0 (what codeparrot.train sets);
  2. our loop (`python -m codeparrot.train`, Accelerate and every feature on), and, with
     `--baseline-src`, the same loop from another checkout (e.g. main's code);
  3. the data loaders alone (memory-mapped token windows; streamed dataset with packing).
Goals: our loop within 5 % of the bare loop; loaders ≥ 20x what training consumes.
On a GPU both loops run there with the same optimisations (the train config's "auto" values:
bf16 autocast + TF32, torch.compile, fused AdamW, chunked loss, pinned asynchronous copies) and
MFU is against the device's data-sheet dense peak; bench/gpu_check.sh runs the issue's figures:

    .venv/bin/python bench/bench_train.py [--steps 60] [--keep DIR] [--minutes 5] [--baseline-src /work/main/src]
    python bench/bench_train.py --preset codeparrot-small --seq 1024 --batch 32 --vocab 32768
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


def bare_loop(folder: Path, steps: int, keep_memory: bool, seq: int, batch_size: int, mixed_precision: str,
              speed: dict) -> dict:
    """tokens/s, MFU and peak memory of the plainest loop over the same windows as codeparrot.train,
    with the same GPU optimisations (`speed`: compile, chunked_loss, gradient_checkpointing)."""
    import torch
    from transformers import AutoModelForCausalLM

    from codeparrot.train.data import TokenWindows
    from codeparrot.train.loop import keep_freed_memory_in_process
    from codeparrot.train.speed import ChunkedLossLM
    from codeparrot.train.throughput import flops_per_token, peak_flops

    if keep_memory:
        keep_freed_memory_in_process()  # as codeparrot.train does, before the model is loaded

    torch.manual_seed(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = AutoModelForCausalLM.from_pretrained(folder / "model", attn_implementation="sdpa").to(device)
    config, num_params = model.config, sum(p.numel() for p in model.parameters())
    if speed["gradient_checkpointing"]:
        model.activation_checkpointing_enable()
    if speed["chunked_loss"]:
        model = ChunkedLossLM(model, 8192)
    if speed["compile"]:
        model.compile()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=cuda or None)
    data = TokenWindows(folder / "tokens", "train", seq, seed=1)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            if cuda:
                torch.cuda.synchronize()  # the warm-up steps finish before the clock starts
            start = time.perf_counter()
        batch = data.next_batch(batch_size)
        batch = batch.pin_memory().to(device, non_blocking=True) if cuda else batch
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    rate = steps * batch_size * seq / (time.perf_counter() - start)
    peak, _ = peak_flops(device, mixed_precision, None)
    return {"tokens_per_s": rate, "mfu": rate * flops_per_token(config, seq, num_params) / peak,
            "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def our_loop(folder: Path, steps: int, seq: int, batch_size: int, mixed_precision: str,
             minutes: float | None = None, speed: dict | None = None, src: str | None = None,
             stop_after_timing: bool = False) -> tuple[float, list[dict]]:
    """Median tokens/s of codeparrot.train's logged windows (the first, with warm-up, left out).

    `speed`: train settings on top (None: the code's defaults; main's code knows fewer keys);
    `src`: run the codeparrot package of that folder; `stop_after_timing`: kill the run once the
    timed windows are logged (skips the final evaluation and saving, minutes for a 1.5B model).
    """
    run = folder / ("run-minutes" if minutes else "run")
    settings = dict(
        model_dir=str(folder / "model"), data_dir=str(folder / "tokens"), final_model_dir=str(run / "model"),
        checkpoint_dir=str(run / "checkpoints"), tensorboard_dir=str(run / "tensorboard"),
        metrics_path=str(run / "metrics.jsonl"), seq_length=seq, batch_size=batch_size, mixed_precision=mixed_precision,
        max_steps=WARMUP + steps if not minutes else 100_000, max_minutes=minutes, log_every=WARMUP,
        eval_every=WARMUP + steps if not minutes else 200, save_every=10**9, eval_sequences=64,
        learning_rate=1e-3, warmup_steps=WARMUP, **(speed or {}),
    )
    shutil.rmtree(run, ignore_errors=True)  # a fresh run, not a resume of the previous one
    run.mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps(settings))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "codeparrot.train", "--settings", str(run / "settings.json")]
    metrics = run / "metrics.jsonl"

    def records() -> list[dict]:
        return [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []

    with (open(run / "train.log", "w") as log,
          subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT) as proc):
        while proc.poll() is None:
            if stop_after_timing and len([r for r in records() if "tokens_per_s" in r]) * WARMUP >= WARMUP + steps:
                proc.kill()
                break
            time.sleep(1)
        if proc.wait() not in (0, -9):
            raise RuntimeError(f"codeparrot.train failed: {(run / 'train.log').read_text()[-3000:]}")
    rates = [r["tokens_per_s"] for r in records() if "tokens_per_s" in r][1:]
    return statistics.median(rates), records()


def loader_rates(folder: Path, kinds: list[str], seq: int, batch_size: int, seconds: float = 8.0) -> dict:
    """Tokens/s of the data inputs with no model attached."""
    from transformers import AutoTokenizer

    from codeparrot.train.data import open_source

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
    print(json.dumps(bare_loop(Path(args.folder), args.steps, args.keep_memory, args.seq, args.batch,
                               args.mixed_precision, speed_settings(args))))


def speed_settings(args) -> dict:
    """The GPU optimisations both loops get, as train settings ("auto" resolved for this device)."""
    import torch

    cuda = torch.cuda.is_available()
    return {"compile": cuda if args.compile == "auto" else args.compile == "true",
            "chunked_loss": cuda if args.loss == "auto" else args.loss == "chunked",
            "gradient_checkpointing": args.gradient_checkpointing,
            "auto_micro_batch": args.global_batch is not None}  # else both loops step args.batch sequences


def published_schedule(rate: float, gpus: int = 16, steps: int = 150_000, sequences: int = 192, seq: int = 1024) -> str:
    """The published codeparrot-small schedule's time on `gpus` devices at `rate` tokens/s each."""
    hours = steps * sequences * seq / (rate * gpus) / 3600
    return (f"published codeparrot-small schedule ({steps:,} steps × {sequences} × {seq:,} tokens) on {gpus} such "
            f"devices at this rate, scaling linearly: {hours:.1f} h")


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
                        help="default: bf16 on a GPU, no on the CPU (where bf16 is emulated, slowly)")
    parser.add_argument("--overrides", type=json.loads, default={},
                        help="model config overrides (JSON), as model.overrides")
    parser.add_argument("--loaders", nargs="*", default=["tokens", "dataset"], help="data inputs to time alone")
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                        help="torch.compile (auto: on a GPU)")
    parser.add_argument("--loss", choices=["auto", "chunked", "plain"], default="auto",
                        help="chunked = the loss without whole-batch logits (auto: on a GPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (the 1.5B model)")
    parser.add_argument("--global-batch", type=int,
                        help="our loop only: sequences per step, micro-batch found by the train.auto_micro_batch probe")
    parser.add_argument("--rounds", type=int, help="interleaved repetitions, best kept (default 2 on CPU, 1 on a GPU)")
    parser.add_argument("--loops", nargs="*", default=["bare", "ours"], help="which training loops to time")
    parser.add_argument("--baseline-src",
                        help="also time codeparrot.train from this source folder (e.g. /work/main/src)")
    parser.add_argument("--stop-after-timing", action="store_true",
                        help="kill our loop once timed (no final evaluation and saving: minutes for a 1.5B model)")
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
    with_overrides = " with " + json.dumps(args.overrides) if args.overrides else ""
    print(f"{args.preset} preset{with_overrides}: seq {args.seq}, batch {args.batch}, "
          f"mixed precision {args.mixed_precision}, "
          f"{args.steps} timed steps; {device_name()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average {os.getloadavg()[0]:.1f}")

    def bare(keep_memory: bool) -> dict:
        cmd = [sys.executable, __file__, "--bare-child", "--folder", str(folder), "--steps", str(args.steps),
               "--seq", str(args.seq), "--batch", str(args.batch), "--mixed-precision", args.mixed_precision,
               "--compile", args.compile, "--loss", args.loss]
        cmd += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
        out = subprocess.run(cmd + (["--keep-memory"] if keep_memory else []), check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    import torch

    cuda = torch.cuda.is_available()
    rounds = args.rounds or (1 if cuda else 2)
    speed = speed_settings(args)
    print(f"both loops: {', '.join(f'{k}={v}' for k, v in speed.items())}"
          + ("; bf16+TF32, fused AdamW, pinned copies" if cuda else ""))
    # Interleaved so that a change in machine load hits every variant alike.
    results: dict[str, list] = {}
    for _ in range(rounds):
        if "bare" in args.loops:
            for keep_memory in ([False, True] if not cuda else [True]):  # glibc's allocator matters on CPU only
                results.setdefault(f"bare{int(keep_memory)}", []).append(bare(keep_memory))
        if "ours" in args.loops:
            ours_speed = {**speed, "global_batch_size": args.global_batch}
            results.setdefault("ours", []).append(our_loop(folder, args.steps, *shape, speed=ours_speed,
                                                           stop_after_timing=args.stop_after_timing))
        if args.baseline_src:
            results.setdefault("baseline", []).append(our_loop(folder, args.steps, *shape, src=args.baseline_src))

    def mfu(records: list[dict]) -> str:
        values = [r["mfu"] for r in records if r.get("mfu") is not None][1:]
        memory = [r["max_memory_gb"] for r in records if r.get("max_memory_gb") is not None]
        return (f"; MFU {statistics.median(values):.1%}" if values else "") + (
            f"; peak memory {max(memory):.1f} GiB" if memory else "")

    bare_best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in results.items() if k.startswith("bare")}
    if "bare0" in bare_best:
        print(f"bare loop, glibc default allocator : {bare_best['bare0']['tokens_per_s']:9,.0f} tokens/s")
    if "bare1" in bare_best:
        b1 = bare_best["bare1"]
        gain = f"  ({b1['tokens_per_s'] / bare_best['bare0']['tokens_per_s']:.2f}x)" if "bare0" in bare_best else ""
        memory = f"; peak memory {b1['max_memory_gb']:.1f} GiB" if b1["max_memory_gb"] else ""
        name = "bare loop, M_MMAP_MAX=0" if not cuda else "bare loop"
        print(f"{name:35s}: {b1['tokens_per_s']:9,.0f} tokens/s{gain}; "
              f"MFU {b1['mfu']:.1%}{memory}")
    o = None
    if "ours" in results:
        o, records = max(results["ours"], key=lambda r: r[0])
        versus = (f" (vs bare: {o / bare_best['bare1']['tokens_per_s'] - 1:+.1%}; goal ≥ -5 %)"
                  if "bare1" in bare_best else "")
        print(f"codeparrot.train (Accelerate)      : {o:9,.0f} tokens/s{versus}{mfu(records)}")
        if args.global_batch:
            print(f"  micro-batch probe: {micro_batch_line(folder)}")
    if "baseline" in results:
        base, records = max(results["baseline"], key=lambda r: r[0])
        print(f"codeparrot.train of {args.baseline_src} : {base:9,.0f} tokens/s"
              + (f" (this checkout: {o / base - 1:+.1%})" if o else "") + mfu(records))
    rate = o or (bare_best["bare1"]["tokens_per_s"] if "bare1" in bare_best else None)
    if cuda and args.preset == "codeparrot-small" and args.seq == 1024 and rate:
        print(published_schedule(rate))
    if o:
        for kind, loader_rate in loader_rates(folder, args.loaders, args.seq, args.batch).items():
            print(f"loader {kind:8s} (no model)         : {loader_rate:9,.0f} tokens/s  "
                  f"({loader_rate / o:,.0f}x training; goal ≥ 20x)")

    if args.minutes:
        _, records = our_loop(folder, 0, *shape, minutes=args.minutes)
        last = [r for r in records if "eval_loss" in r][-1]
        print(f"{args.minutes:g}-minute run: {last['step']} steps, {last['step'] * args.batch * args.seq:,} tokens, "
              f"validation loss {last['eval_loss']:.3f} (perplexity {last['perplexity']:.1f})")


def micro_batch_line(folder: Path) -> str:
    log = (folder / "run" / "train.log").read_text()
    return next((line.strip() for line in log.splitlines() if "micro-steps each" in line), "no line in train.log")


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
