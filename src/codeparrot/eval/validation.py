"""Mean loss and perplexity of a model over the validation split, deterministically.

The validation tokens (results/tokens/validation) are one stream cut into windows of the model's
context, read in order (no shuffling), so the same model and data always give the same number.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from codeparrot.config import schema_defaults
from codeparrot.raw import write_json
from codeparrot.train.data import TokenWindows
from codeparrot.train.metrics import perplexity

logger = logging.getLogger(__name__)
_VALIDATION = schema_defaults("eval")["validation"]


@torch.no_grad()
def validation_loss(model_dir: str | Path, tokens_dir: str | Path, output: str | Path,
                    seq_length: int | None = _VALIDATION["seq_length"],
                    max_sequences: int | None = _VALIDATION["max_sequences"],
                    batch_size: int = _VALIDATION["batch_size"], split: str = "validation") -> dict:
    """Mean token loss over the first `max_sequences` windows (all when None) and exp(loss)."""
    from transformers import AutoModelForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    context = model.config.n_positions
    seq_length = seq_length or context
    if seq_length > context:
        raise ValueError(f"eval.validation.seq_length={seq_length} exceeds the model's context ({context}): lower it")
    windows = TokenWindows(tokens_dir, split, seq_length, seed=0, shuffle=False)
    count = min(windows.num_windows, max_sequences or windows.num_windows)
    total_loss, start = 0.0, time.perf_counter()
    for first in tqdm(range(0, count, batch_size), desc="validation", unit="batch"):
        batch = windows.next_batch(min(batch_size, count - first)).to(device)
        # Every window is full length, so the mean of per-window means is the mean over tokens.
        total_loss += model(input_ids=batch, labels=batch).loss.double().item() * len(batch)
    loss = total_loss / count
    result = {
        "loss": loss, "perplexity": perplexity(loss), "sequences": count, "seq_length": seq_length,
        "tokens": count * seq_length, "available_sequences": windows.num_windows, "split": split,
        "model": str(model_dir), "device": device.type,
    }
    # json writes an overflowed perplexity as Infinity, which strict JSON readers refuse.
    write_json(output, {**result, "perplexity": "inf" if math.isinf(result["perplexity"]) else result["perplexity"]})
    logger.info("validation loss %.4f, perplexity %.2f over %d sequences of %d tokens (%.0f s)", loss,
                result["perplexity"], count, seq_length, time.perf_counter() - start)
    return result
