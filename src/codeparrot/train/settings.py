"""The settings of one training run: the `train` config section (its defaults read from the
workflow's schema, the only place they are written) plus the paths the rule passes in, and the
batch arithmetic that turns them into micro-batches per optimizer step."""

import dataclasses
import json
from pathlib import Path

from codeparrot.config import schema_defaults
from codeparrot.raw import write_json

SETTINGS_FILE = "train_settings.json"  # in the checkpoint folder: what `python -m codeparrot.train` reads

_CONFIG = schema_defaults()
_TRAIN = _CONFIG["train"]


@dataclasses.dataclass
class TrainSettings:
    """Everything one training run needs; the `train` config section plus the paths of the rule.
    The keys are described in workflow/schemas/train.schema.yaml."""

    model_dir: str
    data_dir: str
    final_model_dir: str  # from_pretrained folder (model + tokenizer) written at the end
    checkpoint_dir: str
    tensorboard_dir: str
    metrics_path: str
    data: str = _TRAIN["data"]
    seed: int = _CONFIG["seed"]
    seq_length: int = _TRAIN["seq_length"]
    batch_size: int = _TRAIN["batch_size"]
    gradient_accumulation_steps: int = _TRAIN["gradient_accumulation_steps"]
    global_batch_size: int | None = _TRAIN["global_batch_size"]
    max_steps: int = _TRAIN["max_steps"]
    max_minutes: float | None = _TRAIN["max_minutes"]
    learning_rate: float = _TRAIN["learning_rate"]
    lr_scheduler: str = _TRAIN["lr_scheduler"]
    warmup_steps: int = _TRAIN["warmup_steps"]
    weight_decay: float = _TRAIN["weight_decay"]
    adam_beta1: float = _TRAIN["adam_beta1"]
    adam_beta2: float = _TRAIN["adam_beta2"]
    max_grad_norm: float = _TRAIN["max_grad_norm"]
    # "auto" values are resolved for the device by codeparrot.train.speed.resolve_auto.
    mixed_precision: str = _TRAIN["mixed_precision"]
    tf32: bool = _TRAIN["tf32"]
    gradient_checkpointing: bool = _TRAIN["gradient_checkpointing"]
    fsdp: bool = _TRAIN["fsdp"]
    compile: bool | str = _TRAIN["compile"]
    fused_adamw: bool | str = _TRAIN["fused_adamw"]
    chunked_loss: bool | str = _TRAIN["chunked_loss"]
    loss_chunk_tokens: int = _TRAIN["loss_chunk_tokens"]
    auto_micro_batch: bool | str = _TRAIN["auto_micro_batch"]
    attn_implementation: str = _TRAIN["attn_implementation"]
    prefetch_batches: int = _TRAIN["prefetch_batches"]
    pin_memory: bool | str = _TRAIN["pin_memory"]
    save_every: int = _TRAIN["save_every"]
    keep_last: int = _TRAIN["keep_last"]
    eval_every: int = _TRAIN["eval_every"]
    eval_sequences: int = _TRAIN["eval_sequences"]
    log_every: int = _TRAIN["log_every"]
    num_of_sequences: int = _TRAIN["num_of_sequences"]
    chars_per_token: float = _TRAIN["chars_per_token"]
    peak_tflops: float | None = _TRAIN["peak_tflops"]
    run_name: str = _TRAIN["run_name"]
    wandb_project: str | None = _TRAIN["wandb"]["project"]
    wandb_entity: str | None = _TRAIN["wandb"]["entity"]
    wandb_mode: str = _TRAIN["wandb"]["mode"]
    # Push every checkpoint to this Hub repo, branch run_name: train.hub.repo_id when
    # train.hub.push_checkpoints is on, which it is not by default.
    checkpoint_repo_id: str | None = _TRAIN["hub"]["repo_id"] if _TRAIN["hub"]["push_checkpoints"] else None


def write_settings(settings: TrainSettings) -> Path:
    """Write the run's settings next to its checkpoints, for the training processes to read."""
    path = Path(settings.checkpoint_dir) / SETTINGS_FILE
    write_json(path, dataclasses.asdict(settings), sort_keys=True)
    return path


def read_settings(path: str | Path) -> TrainSettings:
    return TrainSettings(**json.loads(Path(path).read_text()))


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
