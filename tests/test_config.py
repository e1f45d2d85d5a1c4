"""Config validation: bad values fail before any job, naming the key and what is allowed."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from codeparrot.config import ConfigError, validate_config
from conftest import ROOT, run_snakemake

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_default_config_fills_every_section_default():
    config = validate_config(load(ROOT / "config/config.yaml"), SCHEMA)
    assert config["source"]["shard_bytes"] == 64 << 20
    assert config["source"]["gcs"]["workers"] == 8  # default of a nested, $ref'd section
    for section in ("clean", "publish", "tokenizer", "model", "pretokenize", "train", "eval"):
        assert isinstance(config[section], dict)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid_overlays(path):
    config = load(ROOT / "config/config.yaml")
    _merge(config, load(path))
    validate_config(config, SCHEMA)


def _merge(base: dict, overlay: dict) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def test_missing_required_key_is_named():
    config = load(ROOT / "config/config.yaml")
    del config["source"]["kind"]
    with pytest.raises(ConfigError, match=r"`source`: 'kind' is a required property"):
        validate_config(config, SCHEMA)


def test_every_problem_is_listed_at_once():
    config = load(ROOT / "config/config.yaml")
    config["seed"] = "one"
    config["source"]["kind"] = "bq"
    with pytest.raises(ConfigError) as error:
        validate_config(copy.deepcopy(config), SCHEMA)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "`seed`: 'one' is not of type 'integer'" in message
    assert "allowed values: 'local', 'bigquery', 'gcs', 'hub'" in message


@pytest.mark.parametrize(
    "override, expected",
    [
        (["source={'min_size': 'small'}"], r"config key `source.min_size`: 'small' is not of type 'integer'"),
        (["source={'colour': 'red'}"],
         r"config key `source`: Additional properties are not allowed \('colour' was unexpected\); "
         r"allowed keys: .*kind"),
        (["seed=-1"], r"config key `seed`: -1 is less than the minimum of 0"),
        (["source={'gcs': {'prefix': '../../../../tmp/x'}}"],
         r"config key `source.gcs.prefix`: .* no `.` or `..` component"),
        (["publish={'repo_id': 'not a repo id'}"], r"config key `publish.repo_id`: 'not a repo id' does not match"),
    ],
    ids=["wrong-type", "unknown-key", "out-of-range", "prefix-outside-results", "bad-repo-id"],
)
def test_bad_config_fails_before_any_job(tmp_path, override, expected):
    proc = run_snakemake(["--cores", "1", "--config", *override], workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert re.search(expected, proc.stdout + proc.stderr), proc.stderr[-2000:]
    assert not (tmp_path / "results").exists(), "no job may run on a bad config"


def test_nested_override_strings_are_coerced_to_the_declared_type():
    """`--config` values arrive as strings (YAML's base loader); the schema's type decides."""
    from snakemake.cli import parse_config

    override = parse_config(['train={"max_steps": 5, "learning_rate": 1e-4, "global_batch_size": 256, '
                             '"max_minutes": null, "hub": {"repo_id": null}}',
                             "clean={'near_dedup': {'enabled': 'false'}}"])
    assert override["train"]["max_steps"] == "5"  # what Snakemake hands over
    config = load(ROOT / "config/config.yaml")
    _merge(config, override)
    validate_config(config, SCHEMA)
    assert (config["train"]["max_steps"], config["train"]["learning_rate"]) == (5, 1e-4)
    assert config["train"]["hub"]["repo_id"] is None and config["clean"]["near_dedup"]["enabled"] is False
    # [integer, null] keys: a number and a null alike
    assert (config["train"]["global_batch_size"], config["train"]["max_minutes"]) == (256, None)
    config["train"]["max_steps"] = "five"
    with pytest.raises(ConfigError, match="`train.max_steps`: 'five' is not of type 'integer'"):
        validate_config(config, SCHEMA)


def test_nested_override_plans_the_run(tmp_path):
    """The README's `snakemake -n --config ...` with a nested key: planned with the values given."""
    override = 'train={"max_steps": 5, "runtime_minutes": 7}'
    proc = run_snakemake(["-n", "results/train/metrics.jsonl", "--config", override], workdir=tmp_path)
    train_job = proc.stdout[proc.stdout.index("rule train:"):]
    assert "runtime=7," in train_job.split("\n\n")[0]  # a nested integer override reaches the plan
    assert not (tmp_path / "results").exists()
