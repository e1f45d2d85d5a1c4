# Stage: train (see docs/architecture.md). Pretraining with Accelerate: the codeparrot.train package.
# results/train/checkpoints/ and results/train/tensorboard/ are not declared outputs on purpose:
# Snakemake deletes declared outputs before a rerun, and the checkpoints are what a rerun
# after a crash or a kill resumes from.

import dataclasses

from codeparrot.train.settings import TrainSettings

TRAIN = config["train"]

# Where the tokens come from: the pretokenized shards (their meta.json is written last) or the
# published dataset, streamed (its card is written after every parquet file).
TRAIN_DATA = {"tokens": "results/tokens/meta.json", "dataset": f"{DATASET}/README.md"}[TRAIN["data"]]


# codeparrot.train.settings.TrainSettings of this run: every value the loop uses, passed as params.
TRAIN_SETTINGS = {
    **{field.name: TRAIN[field.name] for field in dataclasses.fields(TrainSettings) if field.name in TRAIN},
    "seed": config["seed"],
    "wandb_project": TRAIN["wandb"]["project"],
    "wandb_entity": TRAIN["wandb"]["entity"],
    "wandb_mode": TRAIN["wandb"]["mode"],
    "checkpoint_dir": "results/train/checkpoints",
    "tensorboard_dir": "results/train/tensorboard",
    "checkpoint_repo_id": TRAIN["hub"]["repo_id"] if TRAIN["hub"]["push_checkpoints"] else None,
}


rule train:
    input:
        model=INIT_MODEL_FILES,
        data=TRAIN_DATA,
    output:
        model=directory("results/train/model"),
        metrics="results/train/metrics.jsonl",
    params:
        settings=TRAIN_SETTINGS,
    log:
        "results/logs/train.log",
    threads: max(1, TRAIN["gpus"]) * 4
    resources:
        gpu=TRAIN["gpus"],
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime_minutes"],
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"


rule push_train_model:
    """Optional: the trained model on the Hub, on a branch named after the run."""
    input:
        model="results/train/model",
    output:
        receipt="results/train/hub_push.json",
    params:
        repo_id=TRAIN["hub"]["repo_id"],
        branch=TRAIN["run_name"],
    log:
        "results/logs/push_train_model.log",
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/push_train_model.py"
