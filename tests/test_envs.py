"""The conda envs (for `--sdm conda`) pin exactly what requirements.lock pins."""

import re

import pytest
import yaml

from conftest import ROOT

LOCK = dict(
    line.strip().lower().split("==")
    for line in (ROOT / "requirements.lock").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_mirror_the_lock(env):
    spec = yaml.safe_load(env.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    pins = [p for p in pip if "==" in p]
    assert pins, "an env must pin its packages"
    for pin in pins:
        name, version = pin.lower().split("==")
        assert LOCK.get(name) == version, f"{env.name}: {pin} differs from requirements.lock ({LOCK.get(name)})"
    assert "-e .." in pip, "the env must install the codeparrot package"


def test_every_rule_names_a_conda_env():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.M)
        envs = re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', text)
        if rules and smk.name != "common.smk":
            non_aggregate = [r for r in rules if r != "all"]
            assert len(envs) >= len(non_aggregate), f"{smk.name}: every rule needs a conda: env ({rules})"
