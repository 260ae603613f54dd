# One command per chore; CI (.ci/run) calls these same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8025

.PHONY: install test test-unit lint format demo bench bench-client bench-pipeline bench-ingress clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Install the project and its dev tools into .venv (again when pyproject changes)

test: install  ## The test suite: unit, integration (real Redis + sandbox over HTTP) and end-to-end
	$(BIN)/python -m pytest -q

test-unit:
	$(BIN)/python -m pytest -q tests/unit

lint: install  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker handlers

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install  ## Start Redis, the sandbox and a worker; send a client's life story; show the journal
	$(BIN)/subaccount-worker demo

bench: bench-client bench-pipeline  ## All benchmarks (print figures; not tests)

bench-client:
	$(BIN)/python -m bench.client_bench

bench-pipeline:
	$(BIN)/python -m bench.pipeline_bench

bench-ingress:
	$(BIN)/python -m bench.ingress_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
