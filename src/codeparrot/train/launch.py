"""What the train stage's rules call: `launch_training` (rule train) starts the loop under
`accelerate launch`; `push_train_model` (rule push_train_model) uploads the trained model."""

import os

from codeparrot.train.settings import TrainSettings, write_settings


def launch_training(settings: dict, num_processes: int = 1, num_machines: int = 1, log_path: str | None = None,
                    threads: int | None = None) -> None:
    """Write the run's settings next to its checkpoints and run `python -m codeparrot.train` under
    accelerate launch.

    `threads` (the job's CPU cores, e.g. Snakemake's) are shared out as OpenMP threads per process.
    """
    import torch

    from codeparrot.launch import run_accelerate
    from codeparrot.train.speed import resolve_auto

    settings = TrainSettings(**settings)  # fails here, naming the key, on an unknown setting
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads // num_processes))
    path = write_settings(settings)
    mixed_precision = resolve_auto(settings, torch.cuda.is_available()).mixed_precision
    run_accelerate("codeparrot.train", ["--settings", str(path)], num_processes,
                   mixed_precision, num_machines, log_path)


def push_train_model(model_dir: str, repo_id: str | None, branch: str, receipt_path: str) -> None:
    """Upload the trained model to `repo_id` on branch `branch` and write the push receipt (JSON)."""
    from codeparrot.hub import push_folder

    if not repo_id:
        raise ValueError("train.hub.repo_id is not set: set it to user/name in the config to push the model")
    push_folder(model_dir, repo_id, "model", receipt_path, revision=branch)
