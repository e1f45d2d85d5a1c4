"""The training loop: AdamW (no weight decay on biases and LayerNorm weights), linear warmup then
the configured decay, gradient accumulation, clipping, mixed precision; metrics every `log_every`
optimizer steps, validation every `eval_every`, a checkpoint every `save_every`."""

import ctypes
import ctypes.util
import dataclasses
import time
from pathlib import Path

import torch
from accelerate.logging import get_logger

from codeparrot.train.checkpoints import input_fingerprint, resume, save_checkpoint
from codeparrot.train.metrics import MetricsLog, perplexity
from codeparrot.train.settings import TrainSettings, with_accumulation
from codeparrot.train.speed import (ChunkedLossLM, compile_in_place, fsdp_plugin, language_model, resolve_auto,
                                    with_probed_micro_batch)
from codeparrot.train.throughput import Throughput, flops_per_token, peak_flops

logger = get_logger(__name__)  # logs on the main process only


def keep_freed_memory_in_process() -> None:
    """Tell glibc not to serve big allocations with mmap (M_MMAP_MAX=0).

    Every training step allocates and frees the same large activation buffers; with mmap each
    one is a fresh page-faulted mapping, kept on the heap they are reused (bench/bench_train.py
    measures the difference). Called before the model is loaded.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).mallopt(-4, 0)  # M_MMAP_MAX = -4 in malloc.h
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            pass


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


def prepare(settings: TrainSettings):
    """Settings resolved for this device and process count, the Accelerator, the prepared model,
    optimizer and scheduler, and the model's number of parameters. The seed is set after the
    micro-batch probe, so that the probe's batches and dropout draws do not shift training's."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed
    from transformers import get_scheduler

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
    accelerator = Accelerator(cpu=not cuda, gradient_accumulation_steps=settings.gradient_accumulation_steps,
                              mixed_precision=settings.mixed_precision,
                              fsdp_plugin=fsdp_plugin(model) if settings.fsdp else None,
                              step_scheduler_with_optimizer=False)  # we step it once per optimizer step
    set_seed(settings.seed)
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
        logger.warning(f"train.fsdp has no effect on {accelerator.num_processes} {accelerator.device.type} "
                       "process(es): Accelerate shards over several GPU processes only (memory here: "
                       "train.gradient_checkpointing)")
    return settings, accelerator, model, optimizer, scheduler, num_params


def open_batches(settings: TrainSettings, accelerator, tokenizer):
    """This process's training batches and its fixed validation subset."""
    from codeparrot.train.data import DeviceBatches, open_source, validation_batches

    def source(split: str, shuffle: bool):
        return open_source(settings.data, settings.data_dir, split, settings.seq_length, settings.seed,
                           accelerator.process_index, accelerator.num_processes, tokenizer, shuffle,
                           settings.num_of_sequences, settings.chars_per_token)

    # Only the memory-mapped windows prefetch: the streamed dataset's state is too big to copy per batch.
    data = DeviceBatches(source("train", shuffle=True), settings.batch_size, accelerator.device,
                         prefetch=settings.prefetch_batches if settings.data == "tokens" else 0,
                         pin=settings.pin_memory)
    eval_batches = validation_batches(source("validation", shuffle=False), settings.eval_sequences,
                                      settings.batch_size, pin=settings.pin_memory)
    return data, eval_batches


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


def out_of_time(accelerator, started: float, max_minutes: float | None) -> bool:
    """Whether any process has run for train.max_minutes (all of them then stop at the same step)."""
    if max_minutes is None:
        return False
    over = torch.tensor(float(time.perf_counter() - started > 60 * max_minutes), device=accelerator.device)
    return accelerator.reduce(over, reduction="sum").item() > 0


def train(settings: TrainSettings) -> None:
    """Train from the newest matching checkpoint (or from scratch) to train.max_steps, then save
    the final model."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from codeparrot.hub import CheckpointPusher

    keep_freed_memory_in_process()
    started = time.perf_counter()
    settings, accelerator, model, optimizer, scheduler, num_params = prepare(settings)
    world, accumulation = accelerator.num_processes, settings.gradient_accumulation_steps
    tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
    data, eval_batches = open_batches(settings, accelerator, tokenizer)
    state = resume(accelerator, settings, data) or {"step": 0, "tokens": 0}
    step, tokens_seen = state["step"], state["tokens"]
    metrics = MetricsLog(settings, step, accelerator.is_main_process)
    if step > 0:  # marks the resumption in the report's training plots
        metrics.log(step, {"resumed_at_tokens": tokens_seen})

    model_config = language_model(accelerator.unwrap_model(model)).config
    tokens_per_step = settings.batch_size * settings.seq_length * accumulation * world
    peak, peak_source = peak_flops(accelerator.device, settings.mixed_precision, settings.peak_tflops)
    speed = Throughput(tokens_per_step, flops_per_token(model_config, settings.seq_length, num_params)
                       * tokens_per_step, peak, world)
    logger.info(f"{num_params:,} parameters; {tokens_per_step:,} tokens per optimizer step on {world} process(es) "
                f"({settings.batch_size} sequences × {accumulation} micro-steps each); "
                f"peak {peak / 1e12:.2f} TFLOP/s per device ({peak_source})")
    inputs = input_fingerprint(settings)
    pusher = CheckpointPusher(settings.checkpoint_repo_id if accelerator.is_main_process else None,
                              settings.run_name, Path(settings.checkpoint_dir) / ".push-staging")
    progress = tqdm(total=settings.max_steps, initial=step, disable=not accelerator.is_main_process,
                    desc="train", unit="step", dynamic_ncols=True)

    model.train()
    last_step = settings.max_steps  # earlier if train.max_minutes runs out
    loss_sum = torch.zeros((), device=accelerator.device)
    speed.restart()
    while step < last_step:
        for _ in range(accumulation):
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
        speed.step()
        progress.update(1)

        report = step % settings.log_every == 0 or step == last_step
        if report:
            mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / (accumulation * speed.steps)
            figures = speed.figures()
            memory = {"max_memory_gb": torch.cuda.max_memory_allocated() / 2**30} if torch.cuda.is_available() else {}
            metrics.log(step, {"loss": mean_loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": tokens_seen,
                               **figures, **memory})
            progress.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{figures['tokens_per_s']:,.0f}",
                                 mfu=f"{figures['mfu']:.1%}")
            loss_sum.zero_()
            if out_of_time(accelerator, started, settings.max_minutes):
                logger.info(f"train.max_minutes={settings.max_minutes} reached at step {step}")
                last_step = step
        if step % settings.eval_every == 0 or step == last_step:
            metrics.log(step, evaluate(accelerator, model, eval_batches))
        if step % settings.save_every == 0 or step == last_step:
            state = {"step": step, "tokens": tokens_seen, "settings": dataclasses.asdict(settings), "inputs": inputs}
            pusher.push(save_checkpoint(accelerator, settings, step, data, state), step)
        if report:
            speed.restart()  # evaluation and saving stay out of the next window
    progress.close()
    pusher.close()
    save_final_model(accelerator, model, tokenizer, Path(settings.final_model_dir))
    metrics.close()
    accelerator.end_training()


def save_final_model(accelerator, model, tokenizer, folder: Path) -> None:
    """save_pretrained to a temporary folder, then rename: the output appears complete or not at all."""
    from codeparrot.atomic import atomic_output

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    state_dict = accelerator.get_state_dict(model)  # gathered from every process under FSDP
    if isinstance(unwrapped, ChunkedLossLM):
        state_dict = {key.removeprefix("lm."): value for key, value in state_dict.items()}
    if accelerator.is_main_process:
        with atomic_output(folder) as tmp:
            language_model(unwrapped).save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()
