"""The demo's processes: our own CLI's servers on free loopback ports, each logging to a file.

Everything is started from one `Cast` of settings (a private Redis, fresh random secrets, short
retry and wait limits so the story takes seconds) and stopped when the `Processes` closes: on the
story's end, on an error, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from worker.dev.devservers import free_port, wait_until
from worker.settings import ENV_PREFIX, Settings, load_settings

STOP_TIMEOUT_S = 20
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class Ports:
    """Where each server listens (all on 127.0.0.1)."""

    sandbox: int = field(default_factory=free_port)
    ingress: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    console: int = field(default_factory=free_port)


def demo_values(redis_url: str, ports: Ports) -> dict[str, str]:
    """The settings every process of the demo shares (names without the env prefix)."""
    crm_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return {
        "redis_url": redis_url,
        "api_base_url": f"http://127.0.0.1:{ports.sandbox}/v6",
        "api_key": secrets.token_hex(16),
        "ingress_tokens": secrets.token_urlsafe(24),
        "stripe_webhook_secret": "whsec_" + secrets.token_hex(16),
        "crm_webhook_secrets": crm_secret,
        # An outage becomes a dead letter after three quick attempts, not a day of them: the
        # story shows the dead-letter tools, so the API circuit breaker (which would hold the
        # events through the outage instead) is off here.
        "circuit_enabled": "false",
        # The sandbox applies a call or refuses it before it answers: a 503 it sent is no doubt
        # to wait out for two minutes. A short in-doubt window keeps the story in seconds.
        "api_settle_s": "0.5",
        "retry_max_attempts": "3",
        "retry_min_backoff_ms": "150",
        "retry_max_backoff_ms": "400",
        "unknown_client_wait_s": "5",
        "unknown_client_retry_ms": "300",
        "metrics_port": "0",
        "log_format": "json",
        "log_level": "INFO",
        # The credit monitor reads every balance each second and alerts on balances only.
        "monitor_port": str(ports.monitor),
        "monitor_interval_s": "1",
        "credits_warn_balance": "1000",
        "credits_critical_balance": "100",
        "credits_warn_runway_s": "0",
        "credits_critical_runway_s": "0",
        # The console, kept running after the story: one admin token, made for this run.
        "console_tokens": f"demo:admin:{secrets.token_urlsafe(18)}",
        "console_secret": secrets.token_urlsafe(32),
    }


def settings_of(values: dict[str, str]) -> Settings:
    """The in-process settings for the same values the processes get from their environment."""
    return load_settings(**values)


def environment(values: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """`base` (the caller's environment) with the demo's settings as `SUBACCOUNT_WORKER_*`."""
    ours = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
    return ours | {ENV_PREFIX + name.upper(): value for name, value in values.items()}


class Processes:
    """Starts `subaccount-worker <command>` processes, logging to `<logs>/<name>.log`."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self._running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start one command in its own session (so Ctrl-C reaches only us; we stop it)."""
        log = (self.logs / f"{name}.log").open("ab")
        argv = [sys.executable, "-m", "worker.cli", *args]
        proc = subprocess.Popen(  # noqa: S603 - our own CLI, our own arguments
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._running.append((name, proc, log))
        return proc

    def wait_ready(self, name: str, url: str) -> None:
        """Wait until `url` answers 2xx; fail naming the log file if the process died first."""
        proc = next(p for n, p, _ in self._running if n == name)

        def ready() -> bool:
            if proc.poll() is not None:
                raise ProcessDied(f"{name} exited ({proc.returncode}); see {self.logs}/{name}.log")
            try:
                return httpx.get(url, timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=START_TIMEOUT_S, what=f"{name} at {url}")

    def alive(self) -> list[str]:
        """Names of the processes still running."""
        return [name for name, proc, _ in self._running if proc.poll() is None]

    def close(self) -> None:
        """Stop every process: SIGTERM to all, then SIGKILL to any still there after a while."""
        for _name, proc, _log in self._running:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, log in reversed(self._running):
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self._running.clear()


class ProcessDied(RuntimeError):
    """A server the demo started exited before it was ready."""
