"""The whole DAG end to end on a shrunk embedded default, then rerun-after-config-change plans."""

import json
import re

import pytest
import yaml

from conftest import ROOT, run_snakemake

TINY = ROOT / "tests/config/tiny.yaml"

DATA = {"clean_bucket", "near_dedup_signatures", "near_dedup_band", "near_dedup_clusters"}
PUBLISH = {"clean_split", "dataset_card"}
TOKENIZER = {"train_tokenizer", "tokenizer_report"}
TOKENS = {"pretokenize", "tokens_meta"}
MODEL = {"init_model"}
TRAIN = {"train"}
EVAL = {"validation_loss", "humaneval_generate", "humaneval_execute"}
REPORT = {"report_pages", "all"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    run_snakemake(["--cores", "2", "--configfile", str(TINY)], workdir=workdir, timeout=1500)
    return workdir


def planned_jobs(workdir, change=None):
    """Rule names that `snakemake -n` plans with `change` (a config overlay) on top of the tiny config."""
    args = ["-n", "--cores", "2", "--configfile", str(TINY)]
    if change:
        overlay = workdir / "change.yaml"
        overlay.write_text(yaml.safe_dump(change))
        args.append(str(overlay))
    out = run_snakemake(args, workdir=workdir).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return set(re.findall(r"^(\w+)\s+\d+\s*$", table, re.M))


@pytest.mark.slow
def test_default_dag_runs_end_to_end(finished_run):
    manifest = json.loads((finished_run / "results/raw/manifest.json").read_text())
    assert manifest["records"] == 300
    card = (finished_run / "results/dataset/README.md").read_text()
    assert "configs:" in card
    assert (finished_run / "results/train/model/config.json").exists()
    passk = json.loads((finished_run / "results/eval/humaneval_pass_at_k.json").read_text())
    assert passk, "pass@k results are written"
    assert planned_jobs(finished_run) == set(), "a finished run plans nothing"


@pytest.mark.slow
def test_report_renders(finished_run):
    run_snakemake(["--cores", "1", "--configfile", str(TINY), "--report", "report.html"], workdir=finished_run)
    html = (finished_run / "report.html").read_text(errors="replace")
    assert len(html) > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, expected",
    [
        ({"clean": {"split": {"validation_fraction": 0.1}}}, PUBLISH | TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"clean": {"near_dedup": {"threshold": 0.9}}}, DATA - {"clean_bucket"} | PUBLISH | TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"tokenizer": {"vocab_size": 2048}}, TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"model": {"context_length": 256}}, MODEL | TRAIN | EVAL | REPORT),
        ({"train": {"learning_rate": 0.002}}, TRAIN | EVAL | REPORT),
        ({"eval": {"humaneval": {"top_p": 0.9}}}, {"humaneval_generate", "humaneval_execute"} | REPORT),
        ({"eval": {"execute": {"timeout_s": 5.0}}}, {"humaneval_execute"} | REPORT),
        ({"eval": {"validation": {"batch_size": 4}}}, {"validation_loss"} | REPORT),
    ],
    ids=["split", "near_dedup", "tokenizer", "model", "train", "humaneval", "execute", "validation"],
)
def test_config_change_reruns_exactly_its_stage_and_downstream(finished_run, change, expected):
    assert planned_jobs(finished_run, change) == expected


@pytest.mark.slow
def test_source_change_reruns_everything_from_the_source(finished_run):
    planned = planned_jobs(finished_run, {"source": {"min_size": 2048}})
    # Jobs after a checkpoint are planned once it has run again; the checkpoint itself must be.
    assert "collect_local" in planned
