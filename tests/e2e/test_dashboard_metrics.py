"""Every metric the Grafana dashboard and the alert rules query is one the code really exports.

A worker process, an ingress and a monitor run against a test-owned Redis and the sandbox; one
onboarding goes through the ingress to the API so the labelled counters have samples; then each
process is scraped and every `saw_*` name used by a panel or a rule must appear in a scrape.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from handlers import examples
from tests.conftest import TEST_API_KEY
from tests.ingress_support import PREFIX, ingress_settings, post_structured, running_ingress
from tests.servers import ThreadedUvicorn, WorkerProcess, free_port, wait_until
from worker.dev import dashboard
from worker.sandbox import SandboxAdmin

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _rule_expressions() -> list[str]:
    exprs: list[str] = []
    for path in sorted(RULES.glob("*.yml")):
        if path.name.endswith(".test.yml") or path.name == "prometheus.yml":
            continue
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        exprs += [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
    return exprs


def exported_names(exposition: str) -> set[str]:
    """Every sample and family name of a Prometheus text exposition."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def _scrape(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@pytest.fixture
def monitor(redis_url: str, sandbox_server: ThreadedUvicorn) -> Iterator[int]:
    """A `subaccount-worker monitor` process; yields its metrics port."""
    port = free_port()
    env = {
        **os.environ,
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_KEY_PREFIX": PREFIX,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_server.url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_MONITOR_PORT": str(port),
        "SUBACCOUNT_WORKER_MONITOR_HOST": "127.0.0.1",
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "monitor"], env=env, start_new_session=True
    )
    yield port
    proc.kill()
    proc.wait(timeout=10)


def test_every_metric_queried_by_the_dashboard_and_the_rules_is_exported(
    redis_url: str,
    sandbox: SandboxAdmin,
    start_worker: Callable[..., WorkerProcess],
    monitor: int,
) -> None:
    """One event end to end, then the union of three scrapes covers every queried name."""
    worker_port = free_port()
    start_worker(
        "--processes", "1", "--threads", "2", "--metrics-port", str(worker_port),
        SUBACCOUNT_WORKER_KEY_PREFIX=PREFIX,
    )  # fmt: skip
    event = examples.onboarded("dash-client")
    with running_ingress(ingress_settings(redis_url)) as ingress:
        assert post_structured(ingress.http, event).status_code == 202
        wait_until(
            lambda: (
                "saw_events_total{" in (_scrape(f"http://127.0.0.1:{worker_port}/metrics") or "")
            ),
            timeout_s=60,
            what="the worker's first outcome",
        )
        ingress_text = ingress.http.get("/metrics").text
    wait_until(
        lambda: (
            "saw_credits_scans_total 1" in (_scrape(f"http://127.0.0.1:{monitor}/metrics") or "")
        ),
        timeout_s=60,
        what="the monitor's first scan",
    )
    exported = (
        exported_names(_scrape(f"http://127.0.0.1:{worker_port}/metrics") or "")
        | exported_names(ingress_text)
        | exported_names(_scrape(f"http://127.0.0.1:{monitor}/metrics") or "")
    )
    queried = dashboard.queried_metrics(
        dashboard.dashboard_expressions(dashboard.build()) + _rule_expressions()
    ) - {"up"}  # `up` is Prometheus's own
    assert queried, "the dashboard and the rules query no metric at all"
    assert sorted(queried - exported) == []


def test_the_committed_dashboard_is_the_generator_output() -> None:
    """deploy/grafana/subaccount-worker.json and the overlay's ConfigMap are `make dashboard`'s
    output, not hand-edited."""
    assert dashboard.DASHBOARD_PATH.read_text() == dashboard.render()
    assert dashboard.CONFIGMAP_PATH.read_text() == dashboard.render_configmap()
