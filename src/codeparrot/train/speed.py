"""What makes codeparrot.train fast on a GPU, each piece a `train` config key ("auto" = on for CUDA).

- `resolve_auto`: turns the "auto" values into what the device gets (bf16 + TF32, torch.compile,
  fused AdamW, the chunked loss and the micro-batch probe on CUDA; fp32 and the plain loop on CPU).
- `ChunkedLossLM` / `chunked_cross_entropy`: the language-model loss computed chunk by chunk of
  tokens under activation checkpointing, so the fp32 logits of the whole batch (batch × seq ×
  vocab) never exist; the backward pass recomputes one chunk's logits at a time.
- `largest_fitting` / `probe_micro_batch` / `cached_micro_batch` / `with_probed_micro_batch`: the
  largest micro-batch that fits the device, found once per run and device by trying forward +
  backward passes, kept next to the checkpoints.
- `fsdp_plugin`: Accelerate's FSDP (full shard) plugin for models whose weights, gradients and
  optimizer state do not fit one device.
"""

import dataclasses
import gc
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from codeparrot.raw import write_json
from codeparrot.train.settings import TrainSettings, sequences_per_process_step, with_accumulation

logger = logging.getLogger(__name__)

MICRO_BATCH_FILE = "micro_batch.json"  # in the checkpoint folder: probe results per device and shape
# Share of the device's memory the probe lets a micro-step use: the rest is for the allocator's
# fragmentation and what the probe does not see (communication buffers of several processes).
PROBE_MEMORY_FRACTION = 0.9


def resolve_auto(settings: TrainSettings, cuda: bool) -> TrainSettings:
    """`settings` with every "auto" replaced by the value for this device (CUDA or CPU)."""
    def pick(value, on_cuda, on_cpu):
        return (on_cuda if cuda else on_cpu) if value == "auto" else value

    return dataclasses.replace(
        settings,
        mixed_precision=pick(settings.mixed_precision, "bf16", "no"),  # bf16 is emulated, slow, on CPUs
        compile=pick(settings.compile, True, False),  # no gain on CPU, only the compile time
        fused_adamw=pick(settings.fused_adamw, True, False),  # fused=True needs an accelerator
        chunked_loss=pick(settings.chunked_loss, True, False),  # recomputing the logits costs CPU time
        auto_micro_batch=pick(settings.auto_micro_batch, True, False),
        pin_memory=pick(settings.pin_memory, True, False),  # pinning needs CUDA
    )


# ---------------------------------------------------------------------------------------------
# Loss


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight)  # in bf16 under autocast
    return F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                          chunk_tokens: int) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden` [B, T, d] against `labels` [B, T] (shifted here, as
    transformers does), with the output layer `weight` [V, d], `chunk_tokens` rows at a time."""
    hidden = hidden[:, :-1].reshape(-1, hidden.size(-1))
    labels = labels[:, 1:].reshape(-1)
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for start in range(0, len(labels), chunk_tokens):
        stop = start + chunk_tokens
        total = total + checkpoint(_chunk_loss_sum, hidden[start:stop], weight, labels[start:stop],
                                   use_reentrant=False)
    return total / (labels != -100).sum()


class ChunkedLossLM(torch.nn.Module):
    """A GPT-2 LM head model whose forward returns the loss of `chunked_cross_entropy`.

    Wrapping (rather than calling the model's parts from the loop) keeps the forward pass inside
    the module that DDP/FSDP and torch.compile see. `.lm` is the Hugging Face model.
    """

    def __init__(self, lm, chunk_tokens: int):
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    @property
    def config(self):
        return self.lm.config

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor):
        from transformers.modeling_outputs import CausalLMOutput

        hidden = self.lm.transformer(input_ids=input_ids).last_hidden_state
        return CausalLMOutput(loss=chunked_cross_entropy(hidden, self.lm.lm_head.weight, labels, self.chunk_tokens))


def language_model(module: torch.nn.Module):
    """The Hugging Face model inside a `ChunkedLossLM` (or the module itself)."""
    return module.lm if isinstance(module, ChunkedLossLM) else module


def block_class_names(model) -> list[str]:
    """The transformer block classes (the units FSDP shards and torch.compile compiles one by one)."""
    return list(language_model(model)._no_split_modules)


def compile_in_place(model: torch.nn.Module, per_block: bool) -> None:
    """torch.compile without a wrapper (state-dict keys unchanged); `per_block` for FSDP, which wraps
    every block in its own unit."""
    if not per_block:
        model.compile()
        return
    names = set(block_class_names(model))
    for module in model.modules():
        if type(module).__name__ in names:
            module.compile()


# ---------------------------------------------------------------------------------------------
# FSDP


def fsdp_plugin(model):
    """Accelerate's FSDP2 plugin: parameters, gradients and optimizer state sharded over all
    processes (full shard), one unit per transformer block; sharded checkpoints (every process
    writes its part, so saving a 1.5B model does not gather it on one device)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=True,  # FULL_SHARD
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=block_class_names(model),
        state_dict_type="SHARDED_STATE_DICT",
        activation_checkpointing=False,  # train.gradient_checkpointing does it in the model
        cpu_ram_efficient_loading=False,
    )


# ---------------------------------------------------------------------------------------------
# Micro-batch


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest of the ascending `candidates` for which `fits` holds, by bisection (`fits` is
    monotone: what fits at b fits below b); None if not even the first one fits."""
    best, low, high = None, 0, len(candidates) - 1
    while low <= high:
        mid = (low + high) // 2
        if fits(candidates[mid]):
            best, low = candidates[mid], mid + 1
        else:
            high = mid - 1
    return best


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))  # the CPU allocator


def probe_micro_batch(model, device: torch.device, seq_length: int, sequences_per_step: int,
                      mixed_precision: str, reserve_bytes: int = 0) -> int:
    """The largest micro-batch dividing `sequences_per_step` whose forward and backward pass runs
    on `device` without running out of memory (on CUDA: within PROBE_MEMORY_FRACTION of the device
    less `reserve_bytes`, the optimizer state not allocated yet). Leaves no gradients behind."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    vocab = model.config.vocab_size
    model.train()  # dropout keeps its masks for the backward pass: training's memory, not evaluation's
    budget = None
    if device.type == "cuda":
        budget = PROBE_MEMORY_FRACTION * torch.cuda.get_device_properties(device).total_memory - reserve_bytes

    def fits(batch_size: int) -> bool:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        ok = True
        try:
            batch = torch.randint(vocab, (batch_size, seq_length), device=device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            del batch, loss
            if budget is not None:
                ok = torch.cuda.max_memory_allocated(device) <= budget
        except (RuntimeError, torch.OutOfMemoryError) as error:
            if not _out_of_memory(error):
                raise
            ok = False  # freed below, once the traceback no longer holds the tensors
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        logger.info("micro-batch probe: %d sequences of %d tokens %s", batch_size, seq_length,
                    "fit" if ok else "do not fit")
        return ok

    found = largest_fitting(divisors(sequences_per_step), fits)
    if found is None:
        raise RuntimeError(f"not even one sequence of {seq_length} tokens fits on {device} for a training "
                           "step: lower train.seq_length, or set train.gradient_checkpointing / train.fsdp")
    return found


def probe_key(model, device: torch.device, world: int, settings: TrainSettings) -> str:
    """What the micro-batch that fits depends on: device, model shape and the memory settings."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    fields = {"device": name, "world": world, "model": language_model(model).config.to_json_string(),
              **{k: getattr(settings, k) for k in ("seq_length", "mixed_precision", "gradient_checkpointing",
                                                   "chunked_loss", "loss_chunk_tokens", "fsdp")}}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cached_micro_batch(checkpoint_dir: str | Path, key: str, sequences_per_step: int,
                       probe: Callable[[], int], state) -> int:
    """The micro-batch of this run: read from MICRO_BATCH_FILE, or probed on every process at once
    (each on its own device) and the smallest result kept, so that all processes step alike."""
    path = Path(checkpoint_dir) / MICRO_BATCH_FILE
    cache = json.loads(path.read_text()) if path.exists() else {}
    state.wait_for_everyone()  # every process has read it before the main one may rewrite it
    found = cache.get(key)
    if found is None or sequences_per_step % found:
        found = probe()
        if state.num_processes > 1:
            value = torch.tensor(found, device=state.device)
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
            found = int(value.item())
        if state.is_main_process:
            write_json(path, {**cache, key: found}, sort_keys=True)
        logger.info("micro-batch probe: %d sequences per micro-step (kept in %s)", found, path)
    state.wait_for_everyone()
    return found


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
