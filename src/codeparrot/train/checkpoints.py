"""Atomic checkpoints and exact resume.

A checkpoint `step-XXXXXXXX/` holds model, optimizer, scheduler, RNG states, every process's data
position and the metrics so far; it is written under a temporary name and renamed, and its state
file, written last, marks it complete. A rerun resumes from the newest complete checkpoint whose
settings and inputs match (else sets the old ones aside), falling back to an older one if the
newest does not load.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate.logging import get_logger

from codeparrot.atomic import commit
from codeparrot.train.settings import TrainSettings

logger = get_logger(__name__)  # logs on the main process only

STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks it complete
METRICS_FILE = "metrics.jsonl"
# Settings a resumed run may change: where and how often it reports, not what it computes (the
# inputs' contents are compared by fingerprint, so their folders may move).
RESUMABLE_CHANGES = {"model_dir", "data_dir", "final_model_dir", "checkpoint_dir", "tensorboard_dir", "metrics_path",
                     "max_minutes", "save_every", "keep_last", "eval_every", "log_every", "peak_tflops",
                     "wandb_project", "wandb_entity", "wandb_mode", "checkpoint_repo_id", "prefetch_batches",
                     "pin_memory"}


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


def resume(accelerator, settings: TrainSettings, data) -> dict | None:
    """Load the newest checkpoint these settings can continue into the prepared objects and `data`;
    its state (step, tokens), or None to train from scratch."""
    root = Path(settings.checkpoint_dir)
    checkpoint, state = latest_checkpoint(root), None
    if checkpoint is not None and (conflicts := resume_conflicts(settings, checkpoint)):
        set_aside_checkpoints(accelerator, settings, conflicts)
        checkpoint = None
    if checkpoint is not None:
        checkpoint, state = restore_checkpoint(accelerator, settings, checkpoint, data)
        logger.info(f"Resuming from {checkpoint} (optimizer step {state['step']}, {state['tokens']:,} tokens)")
    if accelerator.is_main_process and root.exists():
        for tmp in root.glob(".tmp-*"):  # from a run killed while saving
            shutil.rmtree(tmp, ignore_errors=True)
    return state


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
    logger.info(f"Training from scratch: the checkpoints in {root} came from other settings ({reason}); "
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
        logger.warning(f"Checkpoint {path} does not load ({type(error).__name__}: {str(error)[:200]}); "
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
