"""Run `subaccount-worker` as a real subprocess, as an operator would, on test-owned servers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

CLI_PREFIX = "saw-cli-test"


def cli_env(redis_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a CLI run: this test's Redis and prefix, plus `settings` (by name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    env["SUBACCOUNT_WORKER_REDIS_URL"] = redis_url
    env["SUBACCOUNT_WORKER_KEY_PREFIX"] = CLI_PREFIX
    env["SUBACCOUNT_WORKER_LOG_FORMAT"] = "json"
    env.update({f"SUBACCOUNT_WORKER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def run_cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m worker.cli ARGS` to completion, with text stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        input=stdin.decode("utf-8", "surrogateescape") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
