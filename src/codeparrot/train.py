"""Pretraining a GPT-2 on code with Accelerate: `python -m codeparrot.train --settings train.json`.

Run under `accelerate launch` by `launch_training` (one process per GPU, or one CPU process).
The loop: AdamW (no weight decay on biases and LayerNorm weights), linear warmup then cosine,
gradient accumulation, clipping, mixed precision; every `save_every` optimizer steps an atomic
checkpoint holding model, optimizer, scheduler, RNG states, data position and the metrics so
far; a rerun resumes from the latest complete checkpoint without replaying the data.
"""

import ctypes
import ctypes.util


def _keep_freed_memory_in_process() -> None:
    """Tell glibc not to serve big allocations with mmap (M_MMAP_MAX=0).

    Every training step allocates and frees the same large activation buffers; with mmap each
    one is a fresh page-faulted mapping. Keeping them on the heap is ~1.4x faster on CPU
    (bench/bench_train.py measures it). Must run before torch allocates anything.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).mallopt(-4, 0)  # M_MMAP_MAX = -4 in malloc.h
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            pass


_keep_freed_memory_in_process()

import argparse  # noqa: E402  (after the allocator tweak on purpose)
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from codeparrot.train_speed import (ChunkedLossLM, cached_micro_batch, compile_in_place, fsdp_plugin,  # noqa: E402
                                    language_model, probe_key, probe_micro_batch, resolve_auto)

SETTINGS_FILE = "train_settings.json"
STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks it complete
METRICS_FILE = "metrics.jsonl"
# Settings a resumed run may change: where and how often it reports, not what it computes (the
# inputs' contents are compared by fingerprint, so their folders may move).
RESUMABLE_CHANGES = {"model_dir", "data_dir", "final_model_dir", "checkpoint_dir", "tensorboard_dir", "metrics_path", "max_minutes",
                     "save_every", "keep_last", "eval_every", "log_every", "peak_tflops", "wandb_project",
                     "wandb_entity", "wandb_mode", "checkpoint_repo_id", "prefetch_batches", "pin_memory"}


@dataclasses.dataclass
class TrainSettings:
    """Everything one training run needs; the `train` config section plus the paths of the rule."""

    model_dir: str
    data_dir: str
    final_model_dir: str  # from_pretrained folder (model + tokenizer) written at the end
    checkpoint_dir: str
    tensorboard_dir: str
    metrics_path: str
    data: str = "tokens"  # "tokens" (pretokenized shards) or "dataset" (stream the Hub layout)
    seed: int = 1
    seq_length: int = 256
    batch_size: int = 16  # sequences per process per micro-step
    gradient_accumulation_steps: int = 1
    global_batch_size: int | None = None  # sequences per optimizer step; sets the accumulation
    max_steps: int = 100  # optimizer steps
    max_minutes: float | None = None  # stop early (and save) after this long
    learning_rate: float = 5e-4
    lr_scheduler: str = "cosine"
    warmup_steps: int = 10
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    # "auto" values are resolved for the device by codeparrot.train_speed.resolve_auto.
    mixed_precision: str = "auto"
    tf32: bool = True
    gradient_checkpointing: bool = False
    fsdp: bool = False
    compile: bool | str = "auto"
    fused_adamw: bool | str = "auto"
    chunked_loss: bool | str = "auto"
    loss_chunk_tokens: int = 8192
    auto_micro_batch: bool | str = "auto"  # batch_size then comes from a probe of the device
    attn_implementation: str = "sdpa"
    prefetch_batches: int = 2
    pin_memory: bool | str = "auto"
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 50
    eval_sequences: int = 64
    log_every: int = 10
    num_of_sequences: int = 1024  # packing buffer, in sequences ("dataset" input)
    chars_per_token: float = 3.6
    peak_tflops: float | None = None  # per device; None = look up the GPU or measure a matmul
    run_name: str = "codeparrot"
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_mode: str = "offline"
    checkpoint_repo_id: str | None = None  # push every checkpoint to this Hub repo, branch run_name


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on everything but biases and LayerNorm weights."""
    no_decay = set()
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (rest if name.endswith("bias") or id(p) in no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def flops_per_token(config, seq_length: int, num_params: int) -> float:
    """Training FLOPs per token (forward + backward), as in PaLM appendix B: 6N + 12·L·d·T.

    N counts every parameter that takes part in a matmul (the tied embedding does, as the LM
    head; the position embedding is a lookup only). Recomputation by gradient checkpointing is
    not counted, as usual for MFU.
    """
    n = num_params - config.n_positions * config.n_embd
    return 6.0 * n + 12.0 * config.n_layer * config.n_embd * seq_length


# Dense peak TFLOPs per GPU (vendor data sheets, SXM parts); matched on the device name.
GPU_PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "no": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "no": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "no": 19.5},
    "L4": {"bf16": 121.0, "fp16": 121.0, "no": 30.3},
    "A10": {"bf16": 125.0, "fp16": 125.0, "no": 31.2},
}


def peak_flops(device: torch.device, mixed_precision: str, configured_tflops: float | None) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the figure comes from."""
    if configured_tflops:
        return configured_tflops * 1e12, "config"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAK_TFLOPS.items():
            if key in name:
                return peaks[mixed_precision] * 1e12, f"data sheet ({name})"
    if device.type == "cpu" and (cpu := cpu_peak_flops()) is not None:
        return cpu
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)
    return measure_matmul_flops(device, dtype), f"measured matmul ({device.type}, {dtype})"


def cpu_peak_flops() -> tuple[float, str] | None:
    """fp32 peak of the cores torch uses: threads × clock × 32 FLOPs per cycle (two 256-bit FMA units).

    Right for AVX2/AVX-512 cores of AMD Zen 2-4 and most Intel parts; Intel server cores with two
    512-bit FMA units reach twice that (set train.peak_tflops there). None without /proc/cpuinfo.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    if not mhz or not {"avx2", "fma"} <= set(flags):
        return None
    threads = torch.get_num_threads()
    return threads * max(mhz) * 1e6 * 32, f"{threads} CPU thread(s) × {max(mhz):.0f} MHz × 32 FLOP/cycle"


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of a square matmul: the practical peak where no data sheet is known (CPUs)."""
    generator = torch.Generator(device).manual_seed(0)  # leaves the global RNG (dropout) untouched
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    a @ b  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return 2 * n**3 * calls / (time.perf_counter() - start)


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """The complete checkpoints (those whose state file exists), oldest first."""
    root = Path(checkpoint_dir)
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists()) if root.exists() else []


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    complete = complete_checkpoints(checkpoint_dir)
    return complete[-1] if complete else None


def save_checkpoint(accelerator, settings: TrainSettings, step: int, data, state: dict) -> Path:
    """Write checkpoint `step` under a temporary name and rename it: never seen half-written."""
    from codeparrot.atomic import commit

    root = Path(settings.checkpoint_dir)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, scheduler, RNG of every process
    torch.save(data.state_dict(), tmp / f"data_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if Path(settings.metrics_path).exists():
            shutil.copy2(settings.metrics_path, tmp / METRICS_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        commit(tmp, final)  # fsynced, then renamed over a stale copy from a run that was cut short
        old = complete_checkpoints(root)
        for path in old[: max(0, len(old) - settings.keep_last)]:
            shutil.rmtree(path)
    accelerator.wait_for_everyone()
    return final


def input_fingerprint(settings: TrainSettings) -> str:
    """Hash of the files that describe the inputs (model config, tokenizer, data summary).

    Rebuilt inputs keep their paths, so the paths alone cannot tell a checkpoint is stale.
    """
    import hashlib

    digest = hashlib.sha256()
    for folder, name in [(settings.model_dir, "config.json"), (settings.model_dir, "tokenizer.json"),
                         (settings.data_dir, "meta.json"), (settings.data_dir, "README.md")]:
        path = Path(folder) / name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b"-"))
    return digest.hexdigest()


def resume_conflicts(settings: TrainSettings, path: Path) -> str:
    """Why checkpoint `path` cannot be continued with these settings and inputs ("" if it can)."""
    state = json.loads((path / STATE_FILE).read_text())
    saved = {**state.get("settings", {}), "inputs": state.get("inputs")}
    current = {**dataclasses.asdict(settings), "inputs": input_fingerprint(settings)}
    changed = sorted(k for k in current.keys() - RESUMABLE_CHANGES if saved.get(k) != current[k])
    return ", ".join(f"{k}: {str(saved.get(k))[:16]} -> {str(current[k])[:16]}" for k in changed)


def set_aside_checkpoints(accelerator, settings: TrainSettings, reason: str) -> None:
    """Move the checkpoints of a run with other settings out of the way (kept, not deleted)."""
    root = Path(settings.checkpoint_dir)
    aside = root / time.strftime("superseded-%Y%m%dT%H%M%S", time.gmtime())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        aside.mkdir()
        for path in root.glob("step-*"):
            os.replace(path, aside / path.name)
    accelerator.wait_for_everyone()
    accelerator.print(f"Training from scratch: the checkpoints in {root} came from other settings ({reason}); "
                      f"moved to {aside} (delete it if you do not need them).")


def restore_checkpoint(accelerator, settings: TrainSettings, path: Path, data) -> tuple[Path, dict]:
    """Load checkpoint `path`, or (power loss, node crash) the newest older complete one that loads.

    Returns the checkpoint loaded and its state."""
    older = [p for p in complete_checkpoints(settings.checkpoint_dir) if p.name < path.name]
    try:
        return path, _load_checkpoint(accelerator, settings, path, data)
    except Exception as error:
        if not older:
            raise RuntimeError(f"checkpoint {path} does not load ({error}) and there is no older one: "
                               f"delete {settings.checkpoint_dir} to train from scratch") from error
        accelerator.print(f"Checkpoint {path} does not load ({type(error).__name__}: {str(error)[:200]}); "
                          f"falling back to the previous complete checkpoint {older[-1]}.")
        return restore_checkpoint(accelerator, settings, older[-1], data)


def _load_checkpoint(accelerator, settings: TrainSettings, path: Path, data) -> dict:
    accelerator.load_state(str(path))
    data.load_state_dict(torch.load(path / f"data_state_{accelerator.process_index}.pt", weights_only=False))
    if accelerator.is_main_process:
        # Metrics logged after this checkpoint by the interrupted run are dropped with it.
        if (path / METRICS_FILE).exists():
            shutil.copy2(path / METRICS_FILE, settings.metrics_path)
        else:
            Path(settings.metrics_path).unlink(missing_ok=True)
    return json.loads((path / STATE_FILE).read_text())


# ---------------------------------------------------------------------------------------------
# Logging


class MetricsLog:
    """One JSON line per record in metrics.jsonl, plus TensorBoard and (if configured) W&B."""

    def __init__(self, settings: TrainSettings, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = Path(settings.metrics_path)
        self.writer = self.wandb_run = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step == 0:  # a fresh run: nothing from an earlier one belongs in its metrics
            self.path.unlink(missing_ok=True)
        # purge_step hides events written after the checkpoint we resume from (or by an earlier run).
        self.writer = SummaryWriter(settings.tensorboard_dir, purge_step=start_step + 1)
        if settings.wandb_project:
            import wandb

            self.wandb_run = wandb.init(
                project=settings.wandb_project, entity=settings.wandb_entity, name=settings.run_name,
                id=settings.run_name, resume="allow", mode=settings.wandb_mode,
                dir=str(self.path.parent), config=dataclasses.asdict(settings),
            )

    def log(self, step: int, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **record}) + "\n")
        for key, value in record.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(record, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


# ---------------------------------------------------------------------------------------------
# Training


def load_model(settings: TrainSettings):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(settings.model_dir, attn_implementation=settings.attn_implementation)
    if settings.seq_length > model.config.n_positions:
        raise ValueError(f"train.seq_length={settings.seq_length} exceeds the model's context "
                         f"(n_positions={model.config.n_positions}): lower train.seq_length")
    if settings.gradient_checkpointing:
        model.activation_checkpointing_enable()
    model.config.use_cache = False  # no generation while training; saves memory
    return ChunkedLossLM(model, settings.loss_chunk_tokens) if settings.chunked_loss else model


@torch.no_grad()
def evaluate(accelerator, model, batches: list[torch.Tensor]) -> dict:
    """Mean loss over the fixed validation subset of all processes and its perplexity."""
    model.eval()
    total = torch.zeros(2, device=accelerator.device)  # sum of losses, number of sequences
    for batch in batches:
        batch = batch.to(accelerator.device, non_blocking=True)
        loss = model(input_ids=batch, labels=batch).loss
        total += torch.stack([loss.float() * len(batch), torch.tensor(len(batch), device=accelerator.device)])
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    loss = (total[0] / total[1]).item()
    return {"eval_loss": loss, "perplexity": perplexity(loss)}


def sequences_per_process_step(settings: TrainSettings, world: int, micro_batch: int) -> int:
    """Sequences one process consumes per optimizer step: global_batch_size / processes if set (it
    must split into micro-batches of `micro_batch` on every process), else batch_size ×
    gradient_accumulation_steps."""
    if settings.global_batch_size is None:
        return settings.batch_size * settings.gradient_accumulation_steps
    if settings.global_batch_size % (micro_batch * world):
        raise ValueError(
            f"train.global_batch_size={settings.global_batch_size} is not a multiple of the micro-batch × "
            f"processes = {micro_batch} × {world}: change train.batch_size or the job's GPU count")
    return settings.global_batch_size // world


def with_accumulation(settings: TrainSettings, world: int, micro_batch: int | None = None) -> TrainSettings:
    """Derive the accumulation steps from the sequences per step, so that neither the number of GPUs
    a cluster profile gives the job nor the micro-batch that fits them (`micro_batch`, a divisor of
    the process's sequences per step; default train.batch_size) changes the optimisation."""
    micro_batch = micro_batch or settings.batch_size
    per_process = sequences_per_process_step(settings, world, micro_batch)
    return dataclasses.replace(settings, batch_size=micro_batch, gradient_accumulation_steps=per_process // micro_batch)


def with_probed_micro_batch(settings: TrainSettings, model, state) -> TrainSettings:
    """`with_accumulation` at the largest micro-batch that fits this device (probed once, cached)."""
    world = state.num_processes
    per_process = sequences_per_process_step(settings, world, 1)
    param_bytes = 4 * sum(p.numel() for p in model.parameters())
    # Not allocated during the probe: AdamW's two fp32 moments (sharded under FSDP) and DDP's buckets.
    reserve = 2 * param_bytes // world if settings.fsdp else 2 * param_bytes + (param_bytes if world > 1 else 0)
    model.to(state.device)
    micro = cached_micro_batch(
        settings.checkpoint_dir, probe_key(model, state.device, world, settings), per_process,
        lambda: probe_micro_batch(model, state.device, settings.seq_length, per_process,
                                  settings.mixed_precision, reserve), state)
    return with_accumulation(settings, world, micro)


def train(settings: TrainSettings) -> None:
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, get_scheduler

    from codeparrot.hub import CheckpointPusher
    from codeparrot.train_data import DeviceBatches, open_source, validation_batches

    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    settings = resolve_auto(settings, cuda)
    if cuda and settings.tf32:  # fp32 matmuls outside autocast (optimizer, loss) on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    process = PartialState(cpu=not cuda)  # several CPU processes talk over gloo
    model = load_model(settings)
    if settings.auto_micro_batch:
        settings = with_probed_micro_batch(settings, model, process)
    else:
        settings = with_accumulation(settings, process.num_processes)
    accelerator = Accelerator(cpu=not cuda,
                              gradient_accumulation_steps=settings.gradient_accumulation_steps,
                              mixed_precision=settings.mixed_precision,
                              fsdp_plugin=fsdp_plugin(model) if settings.fsdp else None,
                              step_scheduler_with_optimizer=False)  # we step it once per optimizer step
    set_seed(settings.seed)  # after the probe: its batches and dropout draws do not shift training's
    rank, world = accelerator.process_index, accelerator.num_processes

    tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.learning_rate,
                                  betas=(settings.adam_beta1, settings.adam_beta2), fused=settings.fused_adamw or None)
    scheduler = get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=settings.warmup_steps,
                              num_training_steps=settings.max_steps)
    if settings.compile:
        compile_in_place(model, per_block=settings.fsdp)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if settings.fsdp and accelerator.distributed_type != DistributedType.FSDP:
        accelerator.print(f"train.fsdp has no effect on {world} {accelerator.device.type} process(es): Accelerate "
                          "shards over several GPU processes only (memory here: train.gradient_checkpointing)")

    def source(split: str, shuffle: bool):
        return open_source(settings.data, settings.data_dir, split, settings.seq_length, settings.seed,
                           rank, world, tokenizer, shuffle, settings.num_of_sequences, settings.chars_per_token)

    # Only the memory-mapped windows prefetch: the streamed dataset's state is too big to copy per batch.
    data = DeviceBatches(source("train", shuffle=True), settings.batch_size, accelerator.device,
                         prefetch=settings.prefetch_batches if settings.data == "tokens" else 0,
                         pin=settings.pin_memory)
    eval_batches = validation_batches(source("validation", shuffle=False), settings.eval_sequences,
                                      settings.batch_size, pin=settings.pin_memory)

    step, tokens_seen = 0, 0
    checkpoint = latest_checkpoint(settings.checkpoint_dir)
    if checkpoint is not None and (conflicts := resume_conflicts(settings, checkpoint)):
        set_aside_checkpoints(accelerator, settings, conflicts)
        checkpoint = None
    if checkpoint is not None:
        checkpoint, state = restore_checkpoint(accelerator, settings, checkpoint, data)
        step, tokens_seen = state["step"], state["tokens"]
        accelerator.print(f"Resuming from {checkpoint} (optimizer step {step}, {tokens_seen:,} tokens)")
    if accelerator.is_main_process and Path(settings.checkpoint_dir).exists():
        for tmp in Path(settings.checkpoint_dir).glob(".tmp-*"):  # from a run killed while saving
            shutil.rmtree(tmp, ignore_errors=True)

    metrics = MetricsLog(settings, step, accelerator.is_main_process)
    if checkpoint is not None:  # marks the resumption in the report's training plots
        metrics.log(step, {"resumed_at_tokens": tokens_seen})
    model_config = language_model(accelerator.unwrap_model(model)).config
    tokens_per_step = settings.batch_size * settings.seq_length * settings.gradient_accumulation_steps * world
    step_flops = flops_per_token(model_config, settings.seq_length, num_params) * tokens_per_step
    peak, peak_source = peak_flops(accelerator.device, settings.mixed_precision, settings.peak_tflops)
    accelerator.print(f"{num_params:,} parameters; {tokens_per_step:,} tokens per optimizer step on {world} "
                      f"process(es) ({settings.batch_size} sequences × {settings.gradient_accumulation_steps} "
                      f"micro-steps each); peak {peak / 1e12:.2f} TFLOP/s per device ({peak_source})")

    inputs = input_fingerprint(settings)

    def state() -> dict:
        return {"step": step, "tokens": tokens_seen, "settings": dataclasses.asdict(settings), "inputs": inputs}

    pusher = CheckpointPusher(settings.checkpoint_repo_id if accelerator.is_main_process else None,
                              settings.run_name, Path(settings.checkpoint_dir) / ".push-staging")
    model.train()
    last_step = settings.max_steps  # earlier if train.max_minutes runs out
    progress = tqdm(total=settings.max_steps, initial=step, disable=not accelerator.is_main_process,
                    desc="train", unit="step", dynamic_ncols=True)
    loss_sum = torch.zeros((), device=accelerator.device)
    window_start, window_steps = time.perf_counter(), 0
    while step < last_step:
        for _ in range(settings.gradient_accumulation_steps):
            batch = data.next_batch()
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
        lr = scheduler.get_last_lr()[0]  # the rate this step used
        if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: the step did not happen
            scheduler.step()
        step += 1
        tokens_seen += tokens_per_step
        window_steps += 1
        progress.update(1)

        if step % settings.log_every == 0 or step == last_step:
            mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / (
                settings.gradient_accumulation_steps * window_steps)
            elapsed = time.perf_counter() - window_start
            tokens_per_s = tokens_per_step * window_steps / elapsed
            achieved = step_flops * window_steps / elapsed
            metrics.log(step, {
                "loss": mean_loss, "lr": lr, "grad_norm": float(grad_norm),
                "tokens": tokens_seen, "tokens_per_s": tokens_per_s, "tflops": achieved / 1e12,
                "mfu": achieved / (peak * world),
                **({"max_memory_gb": torch.cuda.max_memory_allocated() / 2**30} if cuda else {}),
            })
            progress.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", mfu=f"{achieved / (peak * world):.1%}")
            loss_sum.zero_()
            window_steps = 0
            if settings.max_minutes is not None:
                over = torch.tensor(float(time.perf_counter() - started > 60 * settings.max_minutes),
                                    device=accelerator.device)
                if accelerator.reduce(over, reduction="sum").item() > 0:  # every process stops together
                    accelerator.print(f"train.max_minutes={settings.max_minutes} reached at step {step}")
                    last_step = step
        if step % settings.eval_every == 0 or step == last_step:
            metrics.log(step, evaluate(accelerator, model, eval_batches))
        if step % settings.save_every == 0 or step == last_step:
            pusher.push(save_checkpoint(accelerator, settings, step, data, state()), step)
        window_start = time.perf_counter() if window_steps == 0 else window_start
    progress.close()
    pusher.close()
    save_final_model(accelerator, model, tokenizer, Path(settings.final_model_dir))
    metrics.close()
    accelerator.end_training()


def save_final_model(accelerator, model, tokenizer, folder: Path) -> None:
    """save_pretrained to a temporary folder, then rename: the output appears complete or not at all."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    state_dict = accelerator.get_state_dict(model)  # gathered from every process under FSDP
    if isinstance(unwrapped, ChunkedLossLM):
        state_dict = {key.removeprefix("lm."): value for key, value in state_dict.items()}
    if accelerator.is_main_process:
        from codeparrot.atomic import atomic_output

        with atomic_output(folder) as tmp:
            language_model(unwrapped).save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------
# Entry points


def launch_training(settings: dict, num_processes: int = 1, num_machines: int = 1, log_path: str | None = None,
                    threads: int | None = None) -> None:
    """Write the run's settings next to its checkpoints and run this module under accelerate launch.

    `threads` (the job's CPU cores, e.g. Snakemake's) are shared out as OpenMP threads per process.
    """
    from codeparrot.launch import run_accelerate

    settings = TrainSettings(**settings)  # fails here, naming the key, on an unknown setting
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads // num_processes))
    Path(settings.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    path = Path(settings.checkpoint_dir) / SETTINGS_FILE
    path.write_text(json.dumps(dataclasses.asdict(settings), indent=2, sort_keys=True) + "\n")
    mixed_precision = resolve_auto(settings, torch.cuda.is_available()).mixed_precision
    run_accelerate("codeparrot.train", ["--settings", str(path)], num_processes,
                   mixed_precision, num_machines, log_path)


def push_train_model(model_dir: str, repo_id: str | None, branch: str, receipt_path: str) -> None:
    """Upload the trained model to `repo_id` on branch `branch` and write the push receipt (JSON)."""
    from codeparrot.hub import push_folder

    if not repo_id:
        raise ValueError("train.hub.repo_id is not set: set it to user/name in the config to push the model")
    push_folder(model_dir, repo_id, "model", receipt_path, revision=branch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help=f"JSON file of TrainSettings ({SETTINGS_FILE})")
    args = parser.parse_args(argv)
    train(TrainSettings(**json.loads(Path(args.settings).read_text())))


if __name__ == "__main__":
    main()
