"""The run's metrics: one JSON line per record in metrics.jsonl, TensorBoard and (if configured)
Weights & Biases; `perplexity`, shared with the evaluation stage."""

import dataclasses
import json
import math
from pathlib import Path


def perplexity(loss: float) -> float:
    """exp(loss), inf where that overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


class MetricsLog:
    """One JSON line per record in metrics.jsonl, plus TensorBoard and (if configured) W&B."""

    def __init__(self, settings, start_step: int, enabled: bool):
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
