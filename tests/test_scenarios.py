"""The scenarios of .test/ (one per source kind) and the SLURM profile: each plans the whole DAG
(`snakemake -n`) and passes `snakemake --lint`. Dry runs only: the sources themselves run for
real in tests/test_source_*.py and tests/test_slurm.py."""

import pytest
import yaml

from conftest import ROOT, planned_rules, run_snakemake

SCENARIOS = sorted((ROOT / ".test").glob("*/config.yaml"))
# The rules that only this source kind runs; every kind then runs the same stages.
SOURCE_RULES = {
    "local": {"collect_local"},
    "gcs": {"gcs_download"},
    "bigquery": {"bigquery_export", "gcs_download"},
    "hub": {"collect_hub"},
}
DOWNSTREAM = {"clean_bucket", "clean_split", "train_tokenizer", "pretokenize", "train", "humaneval_execute", "all"}


# Run from the repository root as a user does (profiles/slurm names config/codeparrot.yaml relative
# to it), with `-d` keeping what Snakemake writes out of the checkout.
def dry_run(args, workdir):
    """Rule names that `snakemake -n` plans with `args`."""
    return planned_rules(run_snakemake(["-n", "-d", str(workdir), *args]).stdout)


def assert_lint_clean(args, workdir):
    proc = run_snakemake(["--lint", "-d", str(workdir), *args], check=False)
    assert proc.returncode == 0, f"snakemake --lint {' '.join(args)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_every_source_kind_has_a_scenario():
    kinds = {yaml.safe_load(path.read_text())["source"]["kind"] for path in SCENARIOS}
    assert kinds == set(SOURCE_RULES)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.parent.name)
def test_scenario_plans_the_whole_dag_and_lints_clean(scenario, tmp_path):
    args = ["--configfile", str(scenario)]
    kind = yaml.safe_load(scenario.read_text())["source"]["kind"]
    planned = dry_run(args, tmp_path)
    assert SOURCE_RULES[kind] | DOWNSTREAM <= planned
    other_sources = set().union(*SOURCE_RULES.values()) - SOURCE_RULES[kind]
    assert not planned & other_sources, f"{scenario}: rules of another source kind planned"
    assert_lint_clean(args, tmp_path)


def test_slurm_profile_plans_the_full_reproduction_and_lints_clean(tmp_path):
    """`snakemake --profile profiles/slurm` as the README runs it (config/codeparrot.yaml, BigQuery)."""
    args = ["--profile", str(ROOT / "profiles/slurm")]
    planned = dry_run(args, tmp_path)
    assert SOURCE_RULES["bigquery"] | DOWNSTREAM <= planned
    assert_lint_clean(args, tmp_path)
