"""Issue 10.6: the Subaccount API's address is never a silent default. `worker` refuses to start
without it and refuses plain http:// beyond loopback (the key would travel in clear text) unless
explicitly allowed; it logs the URL and surface at start; `check-config` shows them. The CLI runs
as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_API_KEY
from tests.servers import ThreadedUvicorn, wait_until

pytestmark = pytest.mark.e2e

URL = "SUBACCOUNT_WORKER_API_BASE_URL"
ALLOW = "SUBACCOUNT_WORKER_API_ALLOW_INSECURE_HTTP"


def _env(**values: str) -> dict[str, str]:
    """The test's environment with no SUBACCOUNT_WORKER_* of the machine leaking in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    return {**base, "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY, **values}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_worker_refuses_to_start_without_the_api_base_url() -> None:
    done = _cli(_env(), "worker")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {URL} is required")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["worker", "check-config"])
def test_plain_http_beyond_loopback_is_refused(command: str) -> None:
    done = _cli(_env(**{URL: "http://api.pepipost.com/v6"}), command)
    assert done.returncode == 2
    assert "http:// to api.pepipost.com would send the API key in clear text" in done.stderr
    assert ALLOW in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "extra", "shown"),
    [
        ("https://api.pepipost.com/v6/", {}, "https://api.pepipost.com/v6"),
        ("http://127.0.0.1:8025/v6", {}, "http://127.0.0.1:8025/v6"),  # loopback: the sandbox
        ("http://[::1]:8025/v5", {}, "http://[::1]:8025/v5"),
        ("http://api.internal/v6", {ALLOW: "true"}, "http://api.internal/v6"),  # said explicitly
        ("https://ops:s3cret@api.example/v6", {}, "https://ops:***@api.example/v6"),
    ],
)
def test_check_config_shows_the_api_it_would_call(
    url: str, extra: dict[str, str], shown: str
) -> None:
    done = _cli(_env(**{URL: url, **extra}), "check-config")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["api_base_url"] == shown
    assert printed["api_surface"] == "v6"
    assert "s3cret" not in done.stdout + done.stderr


def test_check_config_says_when_the_worker_would_refuse_to_start() -> None:
    done = _cli(_env(), "check-config")
    assert done.returncode == 0
    assert json.loads(done.stdout)["api_base_url"] == ""
    assert f"{URL} is not set" in done.stderr


@pytest.fixture
def worker_output(redis_url: str, sandbox_server: ThreadedUvicorn) -> Iterator[list[str]]:
    """Start `worker` (JSON logs at INFO) and collect its output lines; stopped after the test."""
    env = _env(**{
        URL: f"{sandbox_server.url}/v6", "SUBACCOUNT_WORKER_API_SURFACE": "v6",
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url, "SUBACCOUNT_WORKER_METRICS_PORT": "0",
        "SUBACCOUNT_WORKER_LOG_FORMAT": "json", "SUBACCOUNT_WORKER_LOG_LEVEL": "INFO",
    })  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_worker_logs_the_api_and_surface_it_talks_to_at_start(
    worker_output: list[str], sandbox_server: ThreadedUvicorn
) -> None:
    def started() -> dict[str, str] | None:
        for line in list(worker_output):
            if '"worker.starting"' in line:
                found: dict[str, str] = json.loads(line)
                return found
        return None

    wait_until(lambda: started() is not None, timeout_s=30, what="the worker's start line")
    line = started()
    assert line is not None
    assert line["api_base_url"] == f"{sandbox_server.url}/v6"
    assert line["api_surface"] == "v6"
    assert TEST_API_KEY not in "".join(worker_output)
