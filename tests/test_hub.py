"""Pushes to the Hub and reads back, against the local Hub stand-in (tests/emulators/hub.py) with the
real huggingface_hub and datasets clients pointed at it through HF_ENDPOINT.

The clients read HF_ENDPOINT when first imported, so everything that talks to the stand-in runs in
a fresh process (a Snakemake job, or `python -c`).
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from codeparrot.raw import read_raw_records
from codeparrot.train.checkpoints import latest_checkpoint
from conftest import ROOT
from emulators.services import HUB_TOKENS, hub_repo_files, hub_stand_in
from test_train import metrics as train_metrics
from test_train import settings as train_settings
from test_train import train_command, write_settings

WRITE, READ_ONLY, BOB = "hf_standin_alice_write", "hf_standin_alice_read", "hf_standin_bob_write"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with hub_stand_in(tmp_path_factory.mktemp("hub")) as (url, root):
        yield url, root


def hub_env(url: str, home, token: str | None = WRITE) -> dict:
    """The environment of a process that talks to the stand-in (its own HF_HOME: no stored login)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}")
    if token:
        env["HF_TOKEN"] = token
    return env


def python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)


def push(folder, repo_id, receipt, env, revision=None, attempts=1) -> subprocess.CompletedProcess:
    return python(f"""
        from codeparrot.hub import push_folder
        push_folder({str(folder)!r}, {repo_id!r}, "model", {str(receipt)!r}, revision={revision!r},
                    attempts={attempts}, backoff=0.1)
    """, env)


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_stand_in/stats") as r:
        return json.load(r)


def set_faults(url: str, faults: dict) -> None:
    request = urllib.request.Request(f"{url}/_stand_in/faults", data=json.dumps(faults).encode(), method="POST")
    urllib.request.urlopen(request).close()


def commits(root, repo_type: str, repo_id: str) -> int:
    return len(json.loads((root / f"{repo_type}s" / repo_id / "repo.json").read_text())["commits"])


def model_folder(path, seed: int):
    """config.json, a binary weights file and an 11 MB file (over the Hub's 10 MB LFS threshold)."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"seed": seed}))
    (path / "model.safetensors").write_bytes(rng.randbytes(200_000))
    (path / "big.dat").write_bytes(rng.randbytes(11 << 20))
    return path


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for token in HUB_TOKENS:
            assert token not in text


def test_push_folder_lfs_noop_rerun_and_receipt(hub, tmp_path):
    url, root = hub
    folder = model_folder(tmp_path / "model", seed=1)
    env = hub_env(url, tmp_path / "home")
    first = push(folder, "alice/lfs-model", tmp_path / "r1.json", env)
    assert first.returncode == 0, first.stderr
    receipt = json.loads((tmp_path / "r1.json").read_text())
    stored = hub_repo_files(root, "model", "alice/lfs-model")
    assert stored == {p.name: p.read_bytes() for p in folder.iterdir()}
    repo = json.loads((root / "models/alice/lfs-model/repo.json").read_text())
    assert receipt["commit"] == repo["refs"]["main"] and receipt["files"] == sorted(stored)
    files = repo["commits"][receipt["commit"]]["files"]
    assert files["big.dat"]["lfs"] and files["model.safetensors"]["lfs"] and not files["config.json"]["lfs"]
    before, puts = commits(root, "model", "alice/lfs-model"), stats(url)["lfs_puts"]

    again = push(folder, "alice/lfs-model", tmp_path / "r2.json", env)  # nothing changed: nothing is pushed
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "r2.json").read_text())["commit"] == receipt["commit"]
    assert commits(root, "model", "alice/lfs-model") == before and stats(url)["lfs_puts"] == puts
    assert_no_token(first.stdout, first.stderr, again.stderr, (tmp_path / "r1.json").read_text(),
                    (root.parent / "hub.log").read_text())


def test_network_drop_fails_in_one_line_and_the_rerun_resends_only_the_rest(hub, tmp_path):
    url, root = hub
    folder = model_folder(tmp_path / "model", seed=2)
    big = hashlib.sha256((folder / "big.dat").read_bytes()).hexdigest()
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    env = hub_env(url, tmp_path / "home")
    set_faults(url, {"drop_lfs_uploads": {big: 100}})  # every try of big.dat loses the connection
    try:
        failed = push(folder, "alice/flaky", tmp_path / "r.json", env)
    finally:
        set_faults(url, {"drop_lfs_uploads": {}})
    assert failed.returncode != 0 and not (tmp_path / "r.json").exists()
    assert "HubPushError: Pushing to model alice/flaky failed after 1 attempts at big.dat: " in last_line(failed)
    assert stats(url)["lfs_puts"].get(weights) == 1 and big not in stats(url)["lfs_puts"]

    resumed = push(folder, "alice/flaky", tmp_path / "r.json", env)
    assert resumed.returncode == 0, resumed.stderr
    assert stats(url)["lfs_puts"][weights] == 1 and stats(url)["lfs_puts"][big] == 1  # what arrived is not re-sent
    assert hub_repo_files(root, "model", "alice/flaky") == {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("token, repo_id, message", [
    (None, "alice/x", "needs a Hugging Face token with write access: set HF_TOKEN"),
    ("hf_standin_not_a_token", "alice/x", "The Hugging Face token was refused (401)"),
    (READ_ONLY, "alice/x", "The Hugging Face token of alice is read-only"),
    (WRITE, "bob/x", "bob/x is in the namespace bob, which the token of alice cannot write to"),
])
def test_push_errors_are_clear_and_never_show_the_token(hub, tmp_path, token, repo_id, message):
    url, root = hub
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("a")
    proc = push(tmp_path / "f", repo_id, tmp_path / "r.json", hub_env(url, tmp_path / "home", token))
    assert proc.returncode != 0 and message in last_line(proc)
    assert not (root / "models" / repo_id).exists()
    assert_no_token(proc.stdout, proc.stderr)


def test_an_endpoint_without_xet_is_named(hub, tmp_path):
    """huggingface_hub with hf_xet installed uploads through Xet without asking; the stand-in refuses."""
    url, _ = hub
    env = hub_env(url, tmp_path / "home")
    del env["HF_HUB_DISABLE_XET"]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "w.safetensors").write_bytes(random.Random(3).randbytes(1000))
    proc = push(tmp_path / "f", "alice/xet", tmp_path / "r.json", env)
    assert "refuses Xet uploads to alice/xet (not Xet-enabled): set HF_HUB_DISABLE_XET=1" in last_line(proc)


def test_stand_in_answers_like_the_hub(hub, tmp_path):
    """401 without a token, 403 with a read-only one (raw client calls, no check of ours in between)."""
    url, _ = hub
    proc = python("""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
        for token in (False, "hf_standin_alice_read"):
            try:
                HfApi(token=token).create_repo("alice/raw")
            except HfHubHTTPError as e:
                print(e.response.status_code)
    """, hub_env(url, tmp_path / "home", token=None))
    assert proc.stdout.split() == ["401", "403"], proc.stderr


def test_bad_push_config_fails_before_any_job(snakemake, tmp_path):
    overlay = tmp_path / "c.yaml"
    overlay.write_text(yaml.safe_dump({"publish": {"repo_id": "codeparrot-clean"}, "train": {"run_name": "../main"}}))
    proc = snakemake(["--configfile", str(ROOT / "config/config.yaml"), str(overlay), "-n"], workdir=tmp_path,
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config key `publish.repo_id`" in out and "config key `train.run_name`" in out


def read_rows(folder, split: str) -> list[dict]:
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


@pytest.mark.slow
def test_push_rules_and_round_trip_through_the_hub_source(hub, snakemake, train_fixture, tmp_path):
    """publish -> push_dataset -> `source.kind: hub` on the pushed repo -> clean stage; model pushes by rule."""
    url, root = hub
    env = hub_env(url, tmp_path / "home")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    overlay = a / "push.yaml"
    overlay.write_text(yaml.safe_dump({
        "source": {"kind": "local", "local": {"roots": [], "max_files": 300}}, "clean": {"num_buckets": 2},
        "publish": {"repo_id": "alice/codeparrot-clean"}, "model": {"repo_id": "parrots/codeparrot-init"},
        "train": {"run_name": "tiny-run", "hub": {"repo_id": "alice/codeparrot-tiny"}}}))
    config = ["--configfile", str(ROOT / "config/config.yaml"), str(overlay), "--cores", "2"]
    snakemake([*config, "results/publish/dataset.json"], workdir=a, env=env)
    published = a / "results/dataset"
    receipt = json.loads((a / "results/publish/dataset.json").read_text())
    stored = hub_repo_files(root, "dataset", "alice/codeparrot-clean")
    assert stored == {str(p.relative_to(published)): p.read_bytes() for p in published.rglob("*") if p.is_file()}
    card = yaml.safe_load(stored["README.md"].decode().split("---\n")[1])
    assert card["license"] == "other" and card["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "validation", "path": "data/validation-*.parquet"}]
    examples = {s["name"]: s["num_examples"] for s in card["dataset_info"]["splits"]}
    assert examples == {s: len(read_rows(published, s)) for s in ("train", "validation")}
    assert "## Cleaning statistics" in stored["README.md"].decode()

    # A forced rerun with nothing changed makes no commit; the receipt names the same commit.
    commits_before = commits(root, "dataset", "alice/codeparrot-clean")
    snakemake([*config, "results/publish/dataset.json", "--forcerun", "push_dataset"], workdir=a, env=env)
    assert json.loads((a / "results/publish/dataset.json").read_text())["commit"] == receipt["commit"]
    assert commits(root, "dataset", "alice/codeparrot-clean") == commits_before

    # The initial model (main) and the trained model (branch tiny-run), by their rules.
    shutil.copytree(train_fixture.model, a / "results/model/init")
    shutil.copytree(train_fixture.model, a / "results/train/model")
    snakemake([*config, "--allowed-rules", "push_model", "push_train_model", "--",
               "results/model/init_pushed.json", "results/train/hub_push.json"], workdir=a, env=env)
    model_files = {p.name: p.read_bytes() for p in train_fixture.model.iterdir() if p.is_file()}
    assert hub_repo_files(root, "model", "parrots/codeparrot-init") == model_files
    assert hub_repo_files(root, "model", "alice/codeparrot-tiny", "tiny-run") == model_files
    trained = json.loads((a / "results/train/hub_push.json").read_text())
    assert trained["revision"] == "tiny-run"
    assert (json.loads((root / "models/alice/codeparrot-tiny/repo.json").read_text())["refs"]["tiny-run"]
            == trained["commit"])

    # datasets streams the pushed repo back through HF_ENDPOINT: the published rows, in order.
    streamed = python("""
        import json, sys
        from datasets import load_dataset
        for split in ("train", "validation"):
            json.dump(list(load_dataset("alice/codeparrot-clean", split=split, streaming=True)), sys.stdout)
            print()
    """, env)
    assert streamed.returncode == 0, streamed.stderr
    train_rows, validation_rows = (json.loads(line) for line in streamed.stdout.splitlines())
    assert train_rows == read_rows(published, "train") and validation_rows == read_rows(published, "validation")

    # The hub source on the pushed repo, and the clean stage from there.
    overlay_b = b / "hub.yaml"
    overlay_b.write_text(yaml.safe_dump({"source": {"kind": "hub", "hub": {"path": "alice/codeparrot-clean"}},
                                         "clean": {"num_buckets": 2}}))
    snakemake(["--configfile", str(ROOT / "config/config.yaml"), str(overlay_b), "--cores", "2",
               "results/dataset/README.md"], workdir=b, env=env)
    raw = [r for shard in sorted((b / "results/raw/shards").glob("file-*")) for r in read_raw_records(shard)]
    assert [(r["repo_name"], r["path"], r["content"]) for r in raw] == [
        (r["repo_name"], r["path"], r["content"]) for r in read_rows(published, "train")]
    again = read_rows(b / "results/dataset", "train") + read_rows(b / "results/dataset", "validation")
    assert {r["content"] for r in again} == {r["content"] for r in raw}  # already clean: nothing more removed

    logs = [p.read_text() for p in (a / "results/logs").glob("push_*.log")]
    assert_no_token(*logs, json.dumps(receipt), stored["README.md"].decode(), (root.parent / "hub.log").read_text(),
                    *(p.read_text() for p in (b / "results/logs").glob("*.log")))


def test_checkpoints_pushed_during_training_and_a_pulled_one_resumes(hub, train_fixture, tmp_path):
    url, root = hub
    env = {**hub_env(url, tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    common = dict(max_steps=20, save_every=5, eval_every=10, run_name="ckpt-run")
    first = train_settings(train_fixture, tmp_path / "first", checkpoint_repo_id="alice/ckpt-model", **common)
    trained = subprocess.run(train_command(write_settings(first)), env=env, check=True, capture_output=True,
                             text=True, timeout=300)

    repo = json.loads((root / "models/alice/ckpt-model/repo.json").read_text())
    by_title, commit = {}, repo["commits"][repo["refs"]["ckpt-run"]]
    while commit["parent"]:
        by_title[commit["title"]], commit = commit["id"], repo["commits"][commit["parent"]]
    assert sorted(by_title) == [f"Checkpoint at step {s}" for s in (10, 15, 20, 5)]  # one commit each, on the branch
    assert "main" in repo["refs"] and repo["refs"]["main"] not in by_title.values()
    last = latest_checkpoint(tmp_path / "first/checkpoints")
    assert hub_repo_files(root, "model", "alice/ckpt-model", "ckpt-run") == {
        f"last-checkpoint/{p.name}": p.read_bytes() for p in last.iterdir()}

    # Another machine: pull the checkpoint of step 10 (its commit) and train on from it.
    second = train_settings(train_fixture, tmp_path / "second", **common)
    pulled = python(f"""
        from codeparrot.hub import pull_checkpoint
        print(pull_checkpoint("alice/ckpt-model", "ckpt-run", {second['checkpoint_dir']!r},
                              revision={by_title['Checkpoint at step 10']!r}))
    """, env)
    assert pulled.returncode == 0, pulled.stderr
    resumed = subprocess.run(train_command(write_settings(second)), env=env, capture_output=True, text=True,
                             timeout=300, check=True)
    assert f"Resuming from {pulled.stdout.strip()} (optimizer step 10" in resumed.stdout + resumed.stderr
    assert_no_token(trained.stdout, trained.stderr, resumed.stdout, resumed.stderr)
    expected, got = train_metrics(tmp_path / "first"), train_metrics(tmp_path / "second")
    assert [r["step"] for r in got if "resumed_at_tokens" in r] == [10]  # the resumption, marked once
    got = [r for r in got if "resumed_at_tokens" not in r]
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for e, g in zip(expected, got):
        for key in ("loss", "eval_loss"):
            if key in e:
                assert g[key] == pytest.approx(e[key], abs=1e-5), (e["step"], key)
