import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(args, workdir=None, check=True, timeout=900, env=None):
    """Run the project's Snakefile (in `workdir`, default the repo) and return the CompletedProcess."""
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile")]
    if workdir is not None:
        cmd += ["-d", str(workdir)]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        cmd + list(args), cwd=workdir or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def planned_rules(stdout: str) -> set[str]:
    """Rule names in the job stats that `snakemake -n` printed; empty when nothing is to be done."""
    if "Nothing to be done" in stdout:
        return set()
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return set(re.findall(r"^(\w+)\s+\d+\s*$", table, re.M))


@pytest.fixture
def snakemake():
    return run_snakemake


from train_fixtures import train_fixture  # noqa: E402,F401  (tiny model + corpus for tests/test_train*.py)
