"""The clean stage as Snakemake runs it: raw shards -> published dataset folder, card and statistics."""

import json

import pytest
import yaml

from conftest import ROOT


def write_config(tmp_path, **publish):
    cfg = {"source": {"kind": "local", "local": {"roots": [], "max_files": 300}},
           "clean": {"num_buckets": 2}, "publish": {"repo_id": None, **publish}}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["--configfile", str(ROOT / "config/config.yaml"), str(path)]


@pytest.mark.slow
def test_clean_stage_publishes_dataset(snakemake, tmp_path):
    config = write_config(tmp_path)
    snakemake([*config, "--cores", "2", "results/dataset/README.md"], workdir=tmp_path)
    data = sorted(p.name for p in (tmp_path / "results/dataset/data").iterdir())
    assert data == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet",
                    "validation-00000-of-00002.parquet", "validation-00001-of-00002.parquet"]
    summary = json.loads((tmp_path / "results/stats/clean/clean.json").read_text())
    assert summary["records_in"] == 300
    assert summary["records_in"] == (summary["kept"] + sum(summary["removed_by_reason"].values())
                                     + summary["quarantined"])
    for stage in ("read", "exact_dedup_and_filters", "near_dedup", "split"):
        assert (tmp_path / f"results/stats/clean/{stage}.json").is_file()
    assert (tmp_path / "results/clean/near_dedup/clusters.parquet").is_file()
    assert list((tmp_path / "results/quarantine").glob("file-*.jsonl.gz"))
    # Nothing to do on a second run: outputs are complete and params unchanged.
    proc = snakemake([*config, "-n", "results/dataset/README.md"], workdir=tmp_path)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_push_rule_only_when_repo_id_is_set(snakemake, tmp_path):
    without = snakemake([*write_config(tmp_path), "-n"], workdir=tmp_path)
    assert "push_dataset" not in without.stdout
    with_repo = snakemake([*write_config(tmp_path, repo_id="someone/codeparrot-clean"), "-n"], workdir=tmp_path)
    assert "results/publish/dataset.json" in with_repo.stdout + with_repo.stderr


def test_bad_clean_config_fails_before_any_job(snakemake, tmp_path):
    config = write_config(tmp_path)
    proc = snakemake([*config, "-n", "--config", "clean={'preset': 'bigcode'}"], workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert "clean.preset" in proc.stdout + proc.stderr and "codeparrot-v2" in proc.stdout + proc.stderr


def test_missing_tokenizer_path_fails_before_any_job(snakemake, tmp_path):
    config = write_config(tmp_path)
    extra = tmp_path / "tok.yaml"
    extra.write_text(yaml.safe_dump(
        {"clean": {"filters": {"char_token_ratio": {"tokenizer": str(tmp_path / "nope")}}}}))
    proc = snakemake([*config, str(extra), "-n"], workdir=tmp_path, check=False)
    assert proc.returncode != 0 and "clean.filters.char_token_ratio.tokenizer" in proc.stdout + proc.stderr
