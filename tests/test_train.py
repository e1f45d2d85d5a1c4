"""The training loop on CPU: loss falls, exact resume after SIGKILL, gradient accumulation,
optimizer groups, metrics and the final model."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codeparrot.config import schema_defaults
from codeparrot.launch import accelerate_command, run_accelerate
from codeparrot.train.checkpoints import STATE_FILE, input_fingerprint, latest_checkpoint, resume_conflicts
from codeparrot.train.launch import launch_training, push_train_model
from codeparrot.train.loop import param_groups
from codeparrot.train.metrics import perplexity
from codeparrot.train.settings import SETTINGS_FILE, TrainSettings, with_accumulation


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # Two OpenMP threads on cores that other jobs also use run far slower than one.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def settings(fx, run: Path, **overrides) -> dict:
    base = dict(
        model_dir=str(fx.model), data_dir=str(fx.tokens), final_model_dir=str(run / "model"),
        checkpoint_dir=str(run / "checkpoints"), tensorboard_dir=str(run / "tensorboard"),
        metrics_path=str(run / "metrics.jsonl"), seq_length=64, batch_size=8, max_steps=20,
        learning_rate=3e-3, warmup_steps=3, log_every=2, eval_every=10, save_every=10,
        eval_sequences=16, num_of_sequences=8, chars_per_token=3.0,
    )
    return {**base, **overrides}


def write_settings(values: dict) -> Path:
    path = Path(values["checkpoint_dir"]) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return path


def train_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "codeparrot.train", "--settings", str(path)]


def run_training(values: dict) -> None:
    subprocess.run(train_command(write_settings(values)), check=True, capture_output=True, timeout=300)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


@pytest.mark.parametrize("data", ["tokens", "dataset"])
def test_loss_falls_and_outputs_are_complete(train_fixture, tmp_path, data):
    fx = train_fixture
    run = tmp_path / "run"
    values = settings(fx, run, data=data, data_dir=str(fx.tokens if data == "tokens" else fx.dataset), max_steps=30)
    if data == "dataset":  # W&B in offline mode: no network, files under the run folder
        values.update(wandb_project="codeparrot-test", run_name="smoke")
    launch_training(values, num_processes=1, log_path=str(tmp_path / "train.log"))  # through accelerate launch

    records = metrics(run)
    train_losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    assert train_losses[-1] < train_losses[0] - 0.5
    assert [r["step"] for r in evals] == [10, 20, 30] and evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    last = [r for r in records if "loss" in r][-1]
    assert last["tokens"] == 30 * 8 * 64 and last["tokens_per_s"] > 0 and 0 < last["mfu"] < 1
    assert 0 < last["lr"] < 3e-3 and last["grad_norm"] > 0

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert AutoTokenizer.from_pretrained(run / "model").eos_token == "<|endoftext|>"
    assert model.config.n_layer == 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert kept == ["step-00000020", "step-00000030"]  # keep_last=2
    assert "Resuming" not in (tmp_path / "train.log").read_text()
    if data == "dataset":
        assert list((run / "wandb").glob("offline-run-*-smoke"))
    else:  # a changed config trains from scratch and keeps the old checkpoints aside
        launch_training({**values, "learning_rate": 1e-3, "max_steps": 2}, log_path=str(tmp_path / "again.log"))
        assert "Training from scratch" in (tmp_path / "again.log").read_text()
        assert [r["step"] for r in metrics(run) if "loss" in r] == [2]
        assert sorted(p.name for p in (run / "checkpoints").glob("superseded-*/step-*")) == kept


def test_sigkill_then_rerun_matches_an_uninterrupted_run(train_fixture, tmp_path):
    fx = train_fixture
    reference = tmp_path / "reference"
    run_training(settings(fx, reference, max_steps=60, save_every=10, eval_every=20))

    killed = tmp_path / "killed"
    path = write_settings(settings(fx, killed, max_steps=60, save_every=10, eval_every=20))
    proc = subprocess.Popen(train_command(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while latest_checkpoint(killed / "checkpoints") is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before it could be killed"
    resumed_from = latest_checkpoint(killed / "checkpoints").name
    assert resumed_from < "step-00000060"

    rerun = subprocess.run(train_command(path), capture_output=True, text=True, timeout=300, check=True)
    assert f"Resuming from {killed / 'checkpoints' / resumed_from}" in rerun.stdout + rerun.stderr

    expected, got = metrics(reference), metrics(killed)
    assert [r["step"] for r in got if "resumed_at_tokens" in r] == [int(resumed_from.split("-")[1])]  # marked once
    got = [r for r in got if "resumed_at_tokens" not in r]
    assert [r["step"] for r in got] == [r["step"] for r in expected]  # no step lost or repeated
    for e, g in zip(expected, got):
        for key in ("loss", "eval_loss", "lr", "tokens"):
            if key in e:
                assert g[key] == pytest.approx(e[key], abs=1e-5), (e["step"], key)
    w_ref, w_got = weights(reference), weights(killed)
    assert all(torch.allclose(w_got[k], w_ref[k], atol=1e-6, rtol=0) for k in w_ref)


def test_gradient_accumulation_4x2_and_two_processes_equal_1x8(train_fixture, tmp_path):
    fx = train_fixture
    no_dropout = tmp_path / "model"
    shutil.copytree(fx.model, no_dropout)
    config = json.loads((no_dropout / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # dropout draws differ per micro-batch
    (no_dropout / "config.json").write_text(json.dumps(config))

    common = dict(model_dir=str(no_dropout), max_steps=4, log_every=1)
    run_training(settings(fx, tmp_path / "accumulated", batch_size=2, gradient_accumulation_steps=4, **common))
    run_training(settings(fx, tmp_path / "large", batch_size=8, gradient_accumulation_steps=1, **common))

    # Two processes (gloo on CPU) × 2 sequences × 2 micro-steps (derived from the global batch of 8):
    # each rank its own half of the batch.
    launch_training(settings(fx, tmp_path / "distributed", batch_size=2, global_batch_size=8, **common),
                    num_processes=2, log_path=str(tmp_path / "distributed.log"))

    def losses(run):
        return [r["loss"] for r in metrics(tmp_path / run) if "loss" in r]

    w_big = weights(tmp_path / "large")
    for run in ("accumulated", "distributed"):
        assert losses(run) == pytest.approx(losses("large"), abs=1e-5), run
        w = weights(tmp_path / run)
        assert all(torch.allclose(w[k], w_big[k], atol=1e-4, rtol=0) for k in w_big), run


def test_global_batch_sets_accumulation_for_any_process_count(train_fixture, tmp_path):
    base = TrainSettings(**settings(train_fixture, tmp_path, batch_size=2, global_batch_size=32))
    assert [with_accumulation(base, world).gradient_accumulation_steps for world in (1, 2, 16)] == [16, 8, 1]
    with pytest.raises(ValueError, match=r"train.global_batch_size=32 is not a multiple of .* 2 × 3"):
        with_accumulation(base, 3)


def test_settings_defaults_are_the_schemas():
    """TrainSettings without arguments = the `train` section the workflow fills in from the schema."""
    config = schema_defaults()
    train = config["train"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSettings) if f.default is not dataclasses.MISSING}
    expected = {**{k: v for k, v in train.items() if k in defaults}, "seed": config["seed"],
                **{f"wandb_{k}": v for k, v in train["wandb"].items()}, "checkpoint_repo_id": None}
    assert defaults == expected


def test_no_weight_decay_on_biases_and_layernorm(train_fixture):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(train_fixture.model)
    decay, rest = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    no_decay = sorted(names[id(p)] for p in rest["params"])
    assert all(n.endswith(".bias") or ".ln_" in n for n in no_decay)
    assert "transformer.ln_f.weight" in no_decay and "transformer.h.0.attn.c_attn.bias" in no_decay
    assert "transformer.h.0.attn.c_attn.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_checkpoint_of_other_settings_is_not_resumed(train_fixture, tmp_path):
    old = TrainSettings(**settings(train_fixture, tmp_path))
    checkpoint = tmp_path / "checkpoints" / "step-00000010"
    checkpoint.mkdir(parents=True)
    (checkpoint / STATE_FILE).write_text(json.dumps(
        {"step": 10, "tokens": 0, "settings": dataclasses.asdict(old), "inputs": input_fingerprint(old)}))
    assert resume_conflicts(dataclasses.replace(old, log_every=7, eval_every=3, max_minutes=1.0), checkpoint) == ""
    assert resume_conflicts(dataclasses.replace(old, learning_rate=1e-3), checkpoint) == "learning_rate: 0.003 -> 0.001"
    rebuilt = tmp_path / "model"  # same settings, but the model was re-initialised with another shape
    shutil.copytree(train_fixture.model, rebuilt)
    config = json.loads((rebuilt / "config.json").read_text())
    (rebuilt / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    assert resume_conflicts(dataclasses.replace(old, model_dir=str(rebuilt)), checkpoint).startswith("inputs: ")


def test_hub_push_without_repo_says_which_key_to_set(tmp_path):
    with pytest.raises(ValueError, match="train.hub.repo_id"):
        push_train_model(str(tmp_path), None, "codeparrot-tiny", str(tmp_path / "receipt.json"))


def test_evaluation_imports_no_training_code():
    """The evaluation stage shares perplexity and the token windows, not the loop (nor its allocator tweak)."""
    code = ("import json, sys, codeparrot.eval.validation; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('codeparrot.train'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(loaded) == ["codeparrot.train", "codeparrot.train.data", "codeparrot.train.metrics"]


def test_perplexity_overflow_is_inf():
    assert perplexity(0.0) == 1.0
    assert perplexity(1e4) == float("inf")


def test_launcher_runs_on_cpu_and_reports_failures(tmp_path):
    cmd = accelerate_command("codeparrot.train", ["--settings", "x.json"], num_processes=1)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"] and cmd[-4:] == [
        "-m", "codeparrot.train", "--settings", "x.json"]
    if not torch.cuda.is_available():
        assert "--cpu" in cmd
    log = tmp_path / "fail.log"
    with pytest.raises(RuntimeError, match=r"exit code .*settings.json.*No such file|No such file"):
        run_accelerate("codeparrot.train", ["--settings", str(tmp_path / "settings.json")], 1, log_path=str(log))
    assert "FileNotFoundError" in log.read_text()


def test_newest_checkpoint_that_does_not_load_falls_back_to_the_previous(train_fixture, tmp_path):
    """Power loss after the rename but before the data reached the disk: the newest checkpoint is
    complete by name but does not load; the rerun says so and resumes from the one before."""
    fx = train_fixture
    reference = tmp_path / "reference"
    run_training(settings(fx, reference, max_steps=20))
    run = tmp_path / "run"
    path = write_settings(settings(fx, run, max_steps=20))
    run_training(json.loads(path.read_text()))
    newest = latest_checkpoint(run / "checkpoints")
    assert newest.name == "step-00000020"
    weights_file = next(newest.glob("*.safetensors"))
    weights_file.write_bytes(weights_file.read_bytes()[:100])  # torn write
    shutil.rmtree(run / "model")
    rerun = subprocess.run(train_command(path), capture_output=True, text=True, timeout=300, check=True)
    out = rerun.stdout + rerun.stderr
    assert f"Checkpoint {newest} does not load" in out
    assert f"Resuming from {run / 'checkpoints' / 'step-00000010'}" in out
    w_ref, w_got = weights(reference), weights(run)
    assert all(torch.allclose(w_got[k], w_ref[k], atol=1e-6, rtol=0) for k in w_ref)
