"""`subaccount-worker console --host --port` (pinned): serves the console; refuses to start with
nobody able to log in (one line, exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.console.support import TOKENS, TOKENS_SETTING
from tests.servers import RedisServer, free_port, wait_until


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    return {**env, "SUBACCOUNT_WORKER_LOG_FORMAT": "json", **extra}


def test_the_console_refuses_to_start_without_users() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "console", "--port", str(free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: the console needs users")
    assert "Traceback" not in done.stderr


def test_the_console_command_serves_health_and_the_login_page(redis_server: RedisServer) -> None:
    port = free_port()
    env = _env(
        SUBACCOUNT_WORKER_CONSOLE_TOKENS=TOKENS_SETTING,
        SUBACCOUNT_WORKER_REDIS_URL=redis_server.url,
    )
    argv = [
        sys.executable,
        "-m",
        "worker.cli",
        "console",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz").text == "ok"
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout_s=30, what="the console's /healthz")
        login = httpx.get(f"{url}/login")
        assert login.status_code == 200
        assert 'name="token"' in login.text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert not [token for token in TOKENS.values() if token in err.decode()]
