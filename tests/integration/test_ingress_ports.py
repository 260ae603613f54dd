"""The real `subaccount-worker ingress` with a metrics port (as deploy/ runs it): the public port
serves no /metrics and no /openapi.json; the metrics port counts what the public port answered;
a metrics port already taken is one line and exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.servers import RedisServer, free_port, wait_until

TOKEN = "ports-test-token-0123456789abcdef"


def _env(redis_url: str, metrics_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_KEY_PREFIX": "ports",
        "SUBACCOUNT_WORKER_INGRESS_TOKENS": TOKEN,
        "SUBACCOUNT_WORKER_INGRESS_METRICS_PORT": str(metrics_port),
    }


def _argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worker.cli",
        "ingress",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextmanager
def _ingress(redis_url: str, port: int, metrics_port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(_argv(port), env=_env(redis_url, metrics_port))
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_metrics_are_served_apart_from_the_public_routes(redis_server: RedisServer) -> None:
    port, metrics_port = free_port(), free_port()
    public, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    with _ingress(redis_server.url, port, metrics_port):
        wait_until(lambda: _status(f"{public}/healthz") == 200, timeout_s=30, what="the ingress")
        assert _status(f"{public}/metrics") == 404
        assert _status(f"{public}/openapi.json") == 404
        refused = httpx.post(f"{public}/events", json={}, headers={"Authorization": "Bearer no"})
        assert refused.status_code == 401
        text = httpx.get(f"{metrics}/metrics", timeout=5).text
    assert 'saw_ingress_requests_total{route="/events",status="401"} 1.0' in text
    assert 'saw_ingress_requests_total{route="other",status="404"} 2.0' in text


def test_a_taken_metrics_port_is_one_line_and_exit_2(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = subprocess.run(
            _argv(free_port()),
            env=_env(redis_server.url, taken.getsockname()[1]),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]]
    assert errors[0].startswith("error: ingress metrics port ")
    assert "Traceback" not in done.stderr
