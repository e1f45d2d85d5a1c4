"""The train rule as Snakemake runs it: killed with SIGKILL mid-run, rerun, resumed from the
last complete checkpoint (the exact-equality check against an uninterrupted run is in
test_train.py, through the same entry point)."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from codeparrot.train.checkpoints import latest_checkpoint
from conftest import ROOT, SNAKEMAKE


@pytest.mark.slow
def test_train_rule_resumes_after_sigkill(snakemake, train_fixture, tmp_path):
    shutil.copytree(train_fixture.model, tmp_path / "results/model/init")
    shutil.copytree(train_fixture.tokens, tmp_path / "results/tokens")
    overlay = tmp_path / "train.yaml"
    overlay.write_text(yaml.safe_dump({"train": {
        "seq_length": 64, "batch_size": 8, "max_steps": 60, "warmup_steps": 3, "save_every": 10,
        "eval_every": 30, "log_every": 5, "eval_sequences": 16}}))
    args = ["--configfile", str(ROOT / "config/config.yaml"), str(overlay), "--cores", "1", "results/train/model"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    first = subprocess.Popen([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), *args],
                             cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "results/train/checkpoints"
    deadline = time.time() + 180
    while latest_checkpoint(checkpoints) is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)  # Snakemake, the rule script, accelerate and the trainer
    first.wait()
    assert not (tmp_path / "results/train/model").exists(), "the run finished before it could be killed"
    resumed_from = latest_checkpoint(checkpoints)

    snakemake(["--unlock", *args], workdir=tmp_path)
    snakemake(["--rerun-incomplete", *args], workdir=tmp_path, env={"OMP_NUM_THREADS": "1"})

    assert f"Resuming from {resumed_from.relative_to(tmp_path)}" in (tmp_path / "results/logs/train.log").read_text()
    steps = [json.loads(line)["step"] for line in (tmp_path / "results/train/metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(5, 61, 5))  # every logged step once: nothing lost, nothing repeated
    assert (tmp_path / "results/train/model/model.safetensors").is_file()
