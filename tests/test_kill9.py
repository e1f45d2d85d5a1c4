"""kill -9 at random (seeded) points of the partition, bucket and train jobs: every output is
complete or absent right after the kill, and a rerun gives the same artifacts as a run never
interrupted (byte for byte for the data, weights within float tolerance for the model)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from bad_input_corpus import write_corpus
from safetensors.torch import load_file

from codeparrot.clean.filters import resolve_filters
from codeparrot.clean.local import clean_settings

CHILD = "import json, sys\nfrom {module} import {function} as f\nf(**json.loads(sys.argv[1]))"
LOOPS = 3


def run_job(module: str, function: str, kwargs: dict, kill_after: float | None = None) -> float:
    """Run one job as its own process (as Snakemake does); SIGKILL it after `kill_after` seconds.
    Returns its wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(module=module, function=function), json.dumps(kwargs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return time.perf_counter() - start
    assert proc.returncode == 0 or kill_after is not None, proc.stderr.read().decode()[-3000:]
    return time.perf_counter() - start


def snapshot(folder: Path) -> dict[str, bytes]:
    """The outputs in `folder` (temporary names of a killed writer are hidden files, left out)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def partition_job(raw: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    return {"raw_path": str(raw), "out_path": str(out / "p.arrow"), "quarantine_path": str(out / "q.jsonl.gz"),
            "stats_path": str(out / "partition.json"), "num_buckets": 2, "max_line_bytes": 65536,
            "on_corrupt_shard": "quarantine"}


def bucket_job(partitions: list[str], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    s = clean_settings()
    return {"partition_paths": partitions, "bucket": 0, "out_path": str(out / "filtered.parquet"),
            "removed_path": str(out / "removed.parquet"), "stats_path": str(out / "bucket.json"), "seed": 1,
            "filters": resolve_filters(s["preset"], s["filters"]), "license": s["license"]}


def test_kill9_of_partition_and_bucket_jobs_then_rerun_is_identical(tmp_path):
    rng = random.Random(12)
    expected = write_corpus(tmp_path / "raw", max_line_bytes=65536, num_shards=1, files=120)
    raw = tmp_path / "raw" / f"{next(iter(expected))}.json.gz"
    jobs = {
        "partition": ("codeparrot.clean.partition", "partition_shard", lambda out: partition_job(raw, out)),
        "bucket": ("codeparrot.clean.bucket", "clean_bucket",
                   lambda out: bucket_job([str(tmp_path / "reference-partition/p.arrow")], out)),
    }
    for name, (module, function, kwargs) in jobs.items():
        reference = tmp_path / f"reference-{name}"
        seconds = run_job(module, function, kwargs(reference))
        want = snapshot(reference)
        for loop in range(LOOPS):
            out = tmp_path / f"{name}-{loop}"
            run_job(module, function, kwargs(out), kill_after=rng.uniform(0, seconds))
            partial = [path for path, data in snapshot(out).items() if want[path] != data]
            assert not partial, f"{name}: a partial output after kill -9: {partial}"
            run_job(module, function, kwargs(out))
            assert snapshot(out) == want, f"{name}, loop {loop}"


def test_kill9_of_the_train_job_then_rerun_matches(train_fixture, tmp_path, monkeypatch):
    from test_train import settings, train_command, write_settings

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rng = random.Random(13)
    fx = train_fixture
    values = dict(max_steps=20, save_every=4, eval_every=10, log_every=2)
    reference = tmp_path / "reference"
    start = time.perf_counter()
    command = train_command(write_settings(settings(fx, reference, **values)))
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    seconds = time.perf_counter() - start
    want = load_file(reference / "model" / "model.safetensors")
    for loop in range(2):
        run = tmp_path / f"run-{loop}"
        command = train_command(write_settings(settings(fx, run, **values)))
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.0) * seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        got = load_file(run / "model" / "model.safetensors")
        assert all(torch.allclose(got[k], want[k], atol=1e-6, rtol=0) for k in want), f"loop {loop}"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert sum("resumed_at_tokens" in r for r in records) <= 1  # the rerun marks its resumption, if any
        steps = [r["step"] for r in records if "resumed_at_tokens" not in r]
        assert steps == [json.loads(line)["step"] for line in (reference / "metrics.jsonl").read_text().splitlines()]
