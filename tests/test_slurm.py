"""The SLURM path against a real single-node cluster (tests/slurm/start_cluster.sh, no mocks).

Every workflow run goes through snakemake-executor-plugin-slurm with a profile derived from
profiles/slurm: the shipped account and partition names, shrunk to the test node (2 CPUs, one
fake GPU). Every call has a timeout, so a stuck cluster fails the test instead of hanging.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SLURM_TESTS = ROOT / "tests/slurm"
PROFILE = ROOT / "profiles/slurm/config.yaml"
STATE = Path(os.environ.get("CODEPARROT_SLURM_STATE", "/run/codeparrot-slurm"))
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))
GPU_RULES = ("train", "validation_loss", "humaneval_generate")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running cluster: the one already up, or one started here and stopped afterwards."""
    before = set(_lines(STATE / "started"))
    proc = subprocess.run([SLURM_TESTS / "start_cluster.sh"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"could not start the test SLURM cluster:\n{proc.stderr[-4000:]}")
    ours = [line for line in _lines(STATE / "started") if line not in before]
    yield
    if ours:
        started = tmp_path_factory.mktemp("slurm") / "started"
        started.write_text("\n".join(ours) + "\n")
        subprocess.run([SLURM_TESTS / "stop_cluster.sh", started], timeout=120, check=False)


def shipped_profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def derive_test_profile(folder: Path, configfile: Path, shrink: bool = True, **settings) -> Path:
    """profiles/slurm with fast status checks and, if `shrink`, resources that fit the test node;
    `settings` replace top-level keys last."""
    profile = shipped_profile()
    profile.update({
        "configfile": str(configfile),
        "jobs": 4,
        "retries": 0,
        "latency-wait": 5,
        "max-threads": 2,
        # A job here takes 10-20 s (mostly Snakemake starting inside it); the plugin polls after
        # this many seconds, then 10 s later each time nothing finished.
        "slurm-init-seconds-before-status-checks": 20,
        "slurm-keep-successful-logs": True,
    })
    if shrink:
        profile["default-resources"].update(mem_mb=1000, runtime=15)
        for resources in profile["set-resources"].values():
            for multi_node in ("mpi", "tasks_per_node"):
                resources.pop(multi_node, None)
            resources.update(nodes=1, gpu=1, cpus_per_gpu=2, mem_mb=3000, runtime=15)
    profile.update(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def run_on_slurm(snakefile: Path, workdir: Path, profile: Path, *args: str, timeout: int = 240):
    """Run snakemake on the cluster; on timeout cancel this run's jobs and fail."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
           "--profile", str(profile), "--verbose", *args]
    try:
        return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30).stdout
        ours = [line.split()[0] for line in queue.splitlines() if line.split()[1] == str(workdir)]
        if ours:
            subprocess.run(["scancel", *ours], timeout=30, check=False)
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        pytest.fail(f"snakemake on SLURM hung for {timeout}s; cancelled jobs {ours}\n{stderr[-4000:]}")


def output(proc) -> str:
    return proc.stdout + proc.stderr


def jobs_in_log(log: str) -> dict[str, str]:
    """Rule name per Snakemake job id, for every job of the run except local rules (`all`)."""
    return {jobid: rule for rule, jobid in
            re.findall(r"(?<!local)(?:rule|checkpoint) (\w+):\n(?:[^\n]*\n){0,12}?\s+jobid: (\d+)", log)}


def submitted_jobs(log: str) -> dict[str, list[str]]:
    """SLURM job ids per rule, from the plugin's 'Job N has been submitted with SLURM jobid M' lines."""
    rule_of = jobs_in_log(log)
    jobs: dict[str, list[str]] = {}
    for jobid, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log):
        jobs.setdefault(rule_of[jobid], []).append(slurm_id)
    return jobs


def sacct(job_id: str, fields: str = "State") -> str:
    proc = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", fields],
                          capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.strip()


def sbatch_call(log: str, rule: str) -> str:
    calls = [line.strip() for line in log.splitlines()
             if line.strip().startswith("sbatch ") and f"--comment rule_{rule}" in line]
    assert calls, f"no sbatch call for rule {rule} in the log"
    return calls[0]


@pytest.fixture
def shrunk_profile(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    return derive_test_profile(tmp_path / "profile", config)


def tiny_overlay(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def assert_all_completed(jobs: dict[str, list[str]]) -> None:
    states = {i: sacct(i) for ids in jobs.values() for i in ids}
    assert set(states.values()) == {"COMPLETED"}, states


@pytest.mark.slow
def test_source_and_clean_stages_run_as_slurm_jobs(slurm_cluster, tmp_path):
    """The real workflow on the embedded default, shrunk: every job submitted by sbatch and finished."""
    # Near dedup adds four stages of jobs; the clean stage's own tests cover it.
    overlay = tiny_overlay(tmp_path, source={"local": {"max_files": 150}},
                           clean={"num_buckets": 2, "near_dedup": {"enabled": False}})
    profile = derive_test_profile(tmp_path / "profile", overlay)
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = run_on_slurm(ROOT / "Snakefile", workdir, profile, "results/dataset/README.md", timeout=420)
    log = output(proc)
    assert proc.returncode == 0, log[-6000:]

    jobs = submitted_jobs(log)
    assert {"collect_local", "clean_split", "dataset_card"} <= set(jobs), jobs
    assert_all_completed(jobs)
    # Every job of the DAG (the ones the checkpoint added included) went through sbatch.
    assert sum(map(len, jobs.values())) == len(jobs_in_log(log))
    assert all("-p cpu" in sbatch_call(log, rule) and "--gpus" not in sbatch_call(log, rule) for rule in jobs)
    assert len(list((workdir / "results/dataset/data").glob("*.parquet"))) == 4


def train_workdir(tmp_path: Path, train_fixture) -> Path:
    """A workdir holding the train rule's inputs, so only `train` runs."""
    workdir = tmp_path / "work"
    shutil.copytree(train_fixture.model, workdir / "results/model/init")
    shutil.copytree(train_fixture.tokens, workdir / "results/tokens")
    return workdir


TINY_TRAIN = {"seq_length": 64, "batch_size": 8, "max_steps": 6, "warmup_steps": 2, "save_every": 3,
              "eval_every": 3, "log_every": 1, "eval_sequences": 8}


@pytest.mark.slow
def test_train_rule_is_submitted_with_gpus_and_runs_on_the_fake_gpu(slurm_cluster, tmp_path, train_fixture):
    workdir = train_workdir(tmp_path, train_fixture)
    profile = derive_test_profile(tmp_path / "profile", tiny_overlay(tmp_path, train=TINY_TRAIN))
    proc = run_on_slurm(ROOT / "Snakefile", workdir, profile, "results/train/model", timeout=300)
    log = output(proc)
    assert proc.returncode == 0, log[-6000:]

    jobs = submitted_jobs(log)
    assert list(jobs) == ["train"] and len(jobs["train"]) == 1
    assert_all_completed(jobs)
    call = sbatch_call(log, "train")
    for flag in ("--gpus=1", "--cpus-per-gpu=2", "-p gpu", "-A codeparrot", "--mem 3000", "-t 15"):
        assert flag in call, call
    assert sacct(jobs["train"][0], "AllocTRES").count("gres/gpu=1") == 1
    assert (workdir / "results/train/model/model.safetensors").is_file()
    steps = [json.loads(line) for line in (workdir / "results/train/metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in steps) == TINY_TRAIN["max_steps"]


@pytest.mark.slow
def test_shipped_train_request_is_refused_by_a_cluster_without_such_nodes(slurm_cluster, tmp_path, train_fixture):
    """The unshrunk profile asks for 2 nodes x 8 GPUs; sbatch refuses and the plugin says why."""
    workdir = train_workdir(tmp_path, train_fixture)
    profile = derive_test_profile(tmp_path / "profile", tiny_overlay(tmp_path, train=TINY_TRAIN), shrink=False)
    proc = run_on_slurm(ROOT / "Snakefile", workdir, profile, "results/train/model", timeout=120)
    log = output(proc)
    assert proc.returncode != 0
    assert "SLURM sbatch failed. The error message was 'sbatch: error:" in log
    call = sbatch_call(log, "train")
    for flag in ("--nodes=2", "--gpus=16", "--ntasks-per-node=8", "--cpus-per-gpu=8", "--mem 480000",
                 "-t 2880", "-p gpu", "-A codeparrot"):
        assert flag in call, call


@pytest.mark.slow
def test_multi_node_launch_starts_one_accelerate_per_node_through_srun(slurm_cluster, tmp_path, shrunk_profile):
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = run_on_slurm(SLURM_TESTS / "Snakefile", workdir, shrunk_profile, "ranks/done")
    log = output(proc)
    assert proc.returncode == 0, log[-4000:] + (workdir / "logs/launch_per_node.log").read_text()

    slurm_id = submitted_jobs(log)["launch_per_node"][0]
    assert "--ntasks-per-node=2" in sbatch_call(log, "launch_per_node")
    nodes = [json.loads(p.read_text()) for p in (workdir / "ranks").glob("probe.node*.json")]
    assert len(nodes) == 1  # one launcher per node of the job (this cluster has one)
    (node,) = nodes
    assert node["SLURM_NODEID"] == "0" and node["SLURM_JOB_ID"] == slurm_id
    assert node["SLURM_STEP_ID"] == "0"  # started by srun in the job's first step, not by the batch script
    launcher = node["launcher"]
    rendezvous = {flag: launcher[launcher.index(flag) + 1]
                  for flag in ("--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port")}
    assert rendezvous == {"--num_machines": "1", "--machine_rank": "0", "--main_process_ip": socket.gethostname(),
                          "--main_process_port": str(20000 + int(slurm_id) % 20000)}


@pytest.mark.slow
def test_failing_job_is_retried_with_more_time_and_memory_then_reported_failed(slurm_cluster, tmp_path):
    """With the shipped CPU defaults (attempt 2's 16000 MB still fits this node): each attempt asks for more."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    profile = derive_test_profile(tmp_path / "profile", config, retries=1,
                                  **{"default-resources": shipped_profile()["default-resources"]})
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = run_on_slurm(SLURM_TESTS / "Snakefile", workdir, profile, "never.txt", timeout=240)
    log = output(proc)
    assert proc.returncode != 0
    attempts = submitted_jobs(log)["fails"]
    assert len(attempts) == 2
    for slurm_id in attempts:
        assert f"SLURM-job '{slurm_id}' failed, SLURM status is: 'FAILED'" in log
    records = [sacct(i, "State,ExitCode,TimelimitRaw,ReqMem").split("|") for i in attempts]
    assert [r[0] for r in records] == ["FAILED", "FAILED"] and "0:0" not in {r[1] for r in records}
    assert [(r[2], r[3]) for r in records] == [("240", "8000M"), ("480", "16000M")]  # 240 * attempt, 8000 * attempt
    assert "failing on purpose" in (workdir / "logs/fails.log").read_text()


@pytest.mark.slow
def test_option_the_plugin_manages_is_refused_in_slurm_extra(slurm_cluster, tmp_path, shrunk_profile):
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = run_on_slurm(SLURM_TESTS / "Snakefile", workdir, shrunk_profile, "bad.txt", timeout=120)
    assert proc.returncode != 0
    assert "The --memory option is not allowed in the 'slurm_extra' parameter" in output(proc)


def test_srun_per_node_starts_one_launcher_per_node_with_ranks_from_slurm(monkeypatch):
    from codeparrot.launch import accelerate_command, srun_per_node

    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    cmd = accelerate_command("codeparrot.train", ["--settings", "a b.json"], num_processes=16, num_machines=2)
    srun = srun_per_node(cmd, num_machines=2)
    assert srun[:7] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash", "-c"]
    script = srun[7]
    launcher, entry = script.split(" -m codeparrot.train ")
    assert "--num_processes 16 --num_machines 2" in launcher  # the total; Accelerate splits it per node
    assert '--machine_rank "$SLURM_NODEID"' in launcher
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in launcher
    assert entry == "--settings 'a b.json'"  # arguments stay quoted through bash -c


def test_srun_per_node_refuses_outside_a_job_and_inside_a_one_node_step(monkeypatch):
    from codeparrot.launch import srun_per_node

    cmd = ["python", "-m", "accelerate.commands.launch", "-m", "codeparrot.train"]
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="needs a SLURM job.*profiles/slurm"):
        srun_per_node(cmd, num_machines=2)
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    with pytest.raises(RuntimeError, match="mpi: srun"):
        srun_per_node(cmd, num_machines=2)


def dry_run_resources(configfile: Path, workdir: Path, *targets: str) -> dict[str, dict[str, str]]:
    """Resources per rule as `snakemake -n --profile profiles/slurm` prints them."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILE.parent), "--configfile",
         str(configfile), "-d", str(workdir), *targets],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, output(proc)[-4000:]
    found = {}
    job = r"(?:rule|checkpoint) (\w+):\n(?:[^\n]*\n)*?\s+resources: ([^\n]*)"
    for rule, resources in re.findall(job, proc.stdout + proc.stderr):
        found[rule] = dict(item.split("=", 1) for item in resources.split(", "))
    return found


@pytest.mark.parametrize("configfile", SHIPPED, ids=lambda p: p.name)
def test_dry_run_of_shipped_config_puts_every_job_on_slurm(configfile, tmp_path):
    found = dry_run_resources(configfile, tmp_path)
    jobs = {rule: r for rule, r in found.items() if rule != "all"}
    assert jobs
    for rule, resources in jobs.items():
        assert resources["slurm_account"] == "codeparrot", rule
        for size in ("runtime", "mem_mb"):  # <TBD>: computed from input sizes once the checkpoint ran
            assert resources[size] == "<TBD>" or int(resources[size]) > 0, (rule, size)
        expected = "gpu" if rule in GPU_RULES else "cpu"
        assert resources["slurm_partition"] == expected, rule
    assert set(GPU_RULES) <= set(jobs)
    train = jobs["train"]
    assert (train["nodes"], train["gpu"], train["tasks_per_node"], train["mpi"]) == ("2", "16", "8", "srun")
    assert (train["cpus_per_gpu"], train["runtime"], train["mem_mb"]) == ("8", "2880", "480000")
    assert jobs["humaneval_generate"]["gpu"] == "1" and jobs["validation_loss"]["gpu"] == "1"
    for rule in ("validation_loss", "humaneval_generate"):
        assert "nodes" not in jobs[rule] and "mpi" not in jobs[rule]  # one node, under the plugin's srun
