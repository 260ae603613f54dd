"""`make demo`: a private Redis, the sandbox and a worker; one client's life story, end to end.

Everything runs on loopback ports chosen free, and everything started here is stopped at the end.
The story shows the promises at work: a duplicate invoice, toggles out of order, a dead letter.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import redis

from handlers import examples as ex
from handlers import username_for
from worker import keys
from worker.dev.devservers import RedisServer, free_port, wait_until
from worker.ops.outcomes import read_outcomes
from worker.pipeline.publish import Publisher
from worker.settings import load_settings


def story() -> list[dict[str, Any]]:
    """The events a billing system and a CRM would send about one client, some out of order."""
    paid = ex.invoice_paid("acme", "INV-2026-001", 250, t=60)
    return [
        ex.onboarded("acme", t=0, credits=1000, recurring={"amount": 500, "period": "monthly"}),
        paid,
        {**paid, "id": "evt_stripe_1", "source": "urn:stripe"},  # the same invoice, reported twice
        ex.reactivated("acme", t=300),  # arrives before the suspension it overrides
        ex.suspended("acme", t=200),
        ex.plan_changed("acme", t=400, credit_type="unlimited"),
        ex.invoice_paid("nobody", "INV-9", 10, t=5),  # never onboarded: waits, then dead letter
    ]


@contextmanager
def _process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env)  # noqa: S603 - our own CLI
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run() -> None:
    """Start everything, send the story, print what happened, stop everything."""
    with ExitStack() as stack:
        server = RedisServer().start()
        stack.callback(server.cleanup)
        port = free_port()
        env = {
            **os.environ,
            "SUBACCOUNT_WORKER_REDIS_URL": server.url,
            "SUBACCOUNT_WORKER_API_BASE_URL": f"http://127.0.0.1:{port}/v6",
            "SUBACCOUNT_WORKER_API_KEY": secrets.token_hex(16),
            "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_WAIT_S": "3",
            "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_RETRY_MS": "500",
            "SUBACCOUNT_WORKER_METRICS_PORT": "0",
            "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
        }
        cli = [sys.executable, "-m", "worker.cli"]
        sandbox = [*cli, "sandbox", "--port", str(port), "--no-access-log"]
        stack.enter_context(_process(sandbox, env))
        admin = f"http://127.0.0.1:{port}/_sandbox"
        wait_until(lambda: _up(f"{admin}/health"), timeout_s=20, what="the sandbox")
        stack.enter_context(_process([*cli, "worker", "--threads", "4"], env))
        client = redis.Redis.from_url(server.url)
        events = story()
        print(f"sending {len(events)} events about client 'acme' (and one stranger) ...")
        for event in events:  # one by one, as they would arrive
            Publisher(client, load_settings(redis_url=server.url)).publish(event)
        wait_until(lambda: _finished(client) >= len(events), timeout_s=30, what="outcomes")
        _report(client, admin)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).is_success
    except httpx.HTTPError:
        return False


def _finished(client: redis.Redis) -> int:
    return int(client.xlen(keys.outcomes("saw")))


def _report(client: redis.Redis, admin: str) -> None:
    print("\noutcomes (one per event):")
    for row in read_outcomes(client, "saw"):
        why = f"  ({row['reason']})" if row.get("reason") else ""
        print(
            f"  {row.get('event_type', ''):20} {row.get('event_id', ''):14} {row['outcome']}{why}"
        )
    print("\nsandbox journal (every state-changing API call):")
    for entry in httpx.get(f"{admin}/journal", timeout=5).json():
        amount = f" amount={entry['amount']}" if entry.get("amount") else ""
        print(f"  {entry['operation']:15} {entry['username']:22} HTTP {entry['status']}{amount}")
    account = httpx.get(f"{admin}/state", timeout=5).json()["subaccounts"][username_for("acme")]
    print("\nsubaccount now:", json.dumps(account, default=str))
    dead = client.hlen(keys.dead_letters("saw"))
    print(f"dead letters: {dead} (see `subaccount-worker dead-letters list`)")
