"""`subaccount-worker worker` and its metrics/health port, run as a real command (issue 10, item 9).

A port already taken (a second worker on the host, a leftover process) must end the command with
one line naming the port and where it came from, exit 2, before any Dramatiq consumer starts;
`--metrics-port` overrides the setting.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from tests.servers import WorkerProcess, free_port, wait_until
from worker import keys

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the whole test."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - the worker binds every interface by default
        sock.listen()
        yield int(sock.getsockname()[1])


def _run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "1"]
    return subprocess.run(
        [*argv, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _said(stderr: str) -> list[str]:
    """stderr's lines for a person: the structured log lines (JSON, e.g. the start-up warning
    about the test Redis's durability) are the log's, not the command's answer."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("{")]


def _heartbeats(broker_client: redis.Redis) -> int:
    return int(broker_client.zcard(f"{keys.dramatiq_namespace('saw')}:__heartbeats__"))


def test_metrics_port_taken_by_the_setting_is_one_line_and_exit_2(
    worker_env: dict[str, str], taken_port: int, broker_client: redis.Redis
) -> None:
    result = _run_worker({**worker_env, "SUBACCOUNT_WORKER_METRICS_PORT": str(taken_port)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = _said(result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(taken_port) in lines[0]
    assert "SUBACCOUNT_WORKER_METRICS_PORT" in lines[0]
    assert _heartbeats(broker_client) == 0  # no consumer ever fetched


def test_metrics_port_option_overrides_the_setting(
    worker_env: dict[str, str], taken_port: int, broker_client: redis.Redis
) -> None:
    """A taken --metrics-port is named as the option; the setting's value is not consulted."""
    env = {**worker_env, "SUBACCOUNT_WORKER_METRICS_PORT": "0"}
    result = _run_worker(env, "--metrics-port", str(taken_port))
    assert result.returncode == 2, result.stderr
    lines = _said(result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(taken_port) in lines[0]
    assert "--metrics-port" in lines[0]
    assert _heartbeats(broker_client) == 0


def test_worker_serves_metrics_on_the_option_port(
    start_worker: StartWorker, taken_port: int
) -> None:
    """The setting names a taken port; --metrics-port moves the worker to a free one."""
    port = free_port()
    worker = start_worker(
        "--processes", "1", "--threads", "1", "--metrics-port", str(port),
        SUBACCOUNT_WORKER_METRICS_PORT=str(taken_port),
    )  # fmt: skip

    def up() -> bool:
        try:
            return b"saw_worker_up{" in httpx.get(f"http://127.0.0.1:{port}/metrics").content
        except httpx.HTTPError:
            return False

    wait_until(up, timeout_s=30, what="metrics on the --metrics-port")
    worker.stop()
    assert worker.proc is not None
    assert worker.proc.returncode == 0
