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

# The demo installs quietly (pip's output goes to a log, shown only if the install fails), then
# tells the story; CI=1 exits after it instead of keeping the console up.
demo:  ## Three clients' story through the real front doors, checked; then the console (CI=1: exit)
	@$(MAKE) --no-print-directory -q $(STAMP) 2>/dev/null || { mkdir -p $(VENV); \
		echo "installing subaccount-worker into $(VENV) (log: $(VENV)/install.log) ..."; \
		$(MAKE) --no-print-directory -s install > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }; }
	@$(BIN)/subaccount-worker demo $(if $(CI),--ci)

bench: bench-client bench-pipeline  ## All benchmarks (print figures; not tests)

bench-client:
	$(BIN)/python -m bench.client_bench

bench-pipeline:
	$(BIN)/python -m bench.pipeline_bench

bench-ingress:
	$(BIN)/python -m bench.ingress_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
