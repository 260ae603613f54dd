"""Helpers of the operators' tests: run the CLI as a subprocess, build dead letters quickly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from handlers import examples as f
from handlers.events import parse_event
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings, running_pipeline
from tests.servers import ThreadedUvicorn
from worker.ops.job_records import running_jobs
from worker.ops.outcomes import read_outcomes
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.outcomes import DeadLetter
from worker.runtime import Runtime


def cli(redis_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`subaccount-worker ARGS` as a real process against the test's Redis."""
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


def cli_json(redis_url: str, *args: str, code: int = 0) -> Any:
    """Run the CLI with `--json`; assert its exit code; return the parsed output."""
    done = cli(redis_url, *args, "--json")
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


@contextmanager
def pipeline_with(
    redis_url: str, sandbox_server: ThreadedUvicorn, **overrides: Any
) -> Iterator[Runtime]:
    """The in-process pipeline with some settings changed (e.g. fewer retries)."""
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, **overrides)
    with running_pipeline(settings) as runtime:
        yield runtime


def outcomes_of(client: redis.Redis, event_id: str) -> list[str]:
    return [o["outcome"] for o in read_outcomes(client, "saw") if o.get("event_id") == event_id]


def write_dead_letter(store: AttemptStore, event: dict[str, Any], reason: str) -> str:
    """Dead-letter `event` through the worker's own script (as a failing attempt would)."""
    key = parse_event(event).key
    now = int(time.time() * 1000)
    letter = DeadLetter(key, event, reason, "add_credits failed (HTTP 503): down", 2, now, now,
                        step="add_credits")  # fmt: skip
    outcome = {"key": key, "event_id": event["id"], "client_id": event["subject"],
               "event_type": event["type"], "outcome": "dead_lettered", "reason": reason,
               "at_ms": now}  # fmt: skip
    store.record_unlocked(key, outcome, letter.encode())
    return key


def make_dead_letters(client: redis.Redis, n: int) -> list[str]:
    """`n` dead letters of distinct clients' invoices, written as a failing attempt would."""
    store = AttemptStore(client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600, outcome_maxlen=1000)
    return [write_dead_letter(store, f.invoice_paid(f"j{i}", f"J-{i}", 1), "retries_exhausted")
            for i in range(n)]  # fmt: skip


def job_progress(client: redis.Redis) -> int:
    """How far the running replay job is (0 while none runs)."""
    jobs = running_jobs(client, "saw")
    return jobs[0].done if jobs else 0
