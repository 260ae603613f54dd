"""`credits list|show|refresh` as an operator runs them: real Redis, the sandbox over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import redis

from tests.conftest import TEST_API_KEY
from tests.servers import ThreadedUvicorn
from worker.credits.lease import Lease
from worker.sandbox import SandboxAdmin

PINNED = {"client_id", "username", "balance", "disabled", "low"}


@pytest.fixture
def env(redis_url: str, sandbox_server: ThreadedUvicorn) -> dict[str, str]:
    return {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_server.url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "worker.cli", *args]
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def as_json(env: dict[str, str], *args: str) -> Any:
    result = run(env, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_show_and_refresh(env: dict[str, str], sandbox: SandboxAdmin) -> None:
    """After a refresh, `credits list --json` has the pinned fields, low ones flagged, filters
    applied; `show` has the history; an unknown client is exit 1, a bad duration exit 2."""
    sandbox.set_state(
        {
            "subaccounts": {
                "shop-low": {"email": "l@x.io", "credit_type": "one_time_credit", "balance": 40},
                "shop-ok": {"email": "o@x.io", "credit_type": "one_time_credit", "balance": 90_000},
                "shop-inf": {"email": "i@x.io", "credit_type": "unlimited"},
            }
        }
    )
    assert as_json(env, "credits", "list") == []

    refreshed = run(env, "credits", "refresh")

    assert refreshed.returncode == 0, refreshed.stderr
    assert "scanned 3 subaccounts" in refreshed.stdout
    rows = as_json(env, "credits", "list")
    assert all(set(row) >= PINNED for row in rows)
    by_name = {row["username"]: row for row in rows}
    assert (by_name["shop-low"]["low"], by_name["shop-low"]["level"]) == (True, "critical")
    assert by_name["shop-ok"]["low"] is False
    assert by_name["shop-inf"]["low"] is False  # unlimited never alerts
    assert by_name["shop-low"]["client_id"] is None  # no client owns it
    below = as_json(env, "credits", "list", "--below", "1000")
    assert [row["username"] for row in below] == ["shop-low"]
    assert as_json(env, "credits", "list", "--runway-below", "3d") == []  # no rate yet
    assert run(env, "credits", "list").returncode == 0  # the rich table renders

    sandbox.set_state({"subaccounts": {"shop-ok": {"balance": 80_000, "used": 10_000}}})
    assert run(env, "credits", "refresh", "shop-ok").returncode == 0
    shown = as_json(env, "credits", "show", "shop-ok")
    assert [snap["balance"] for snap in shown["history"]] == [80_000, 90_000]
    # two readings seconds apart are too little history for a rate (hours by default)
    assert shown["rate_per_s"] is None
    assert shown["runway_s"] is None
    assert run(env, "credits", "show", "shop-ok").returncode == 0

    unknown = run(env, "credits", "show", "nobody")
    assert unknown.returncode == 1
    assert "credits refresh nobody" in unknown.stderr
    bad = run(env, "credits", "list", "--runway-below", "soon")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1  # one line, no traceback


def test_refresh_of_all_asks_the_running_monitor(
    env: dict[str, str], sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """With a monitor holding the lease, a full refresh is a request, not a second scanner."""
    Lease(redis_client, "saw:credits:lease", 10_000).hold()

    result = run(env, "credits", "refresh")

    assert result.returncode == 0, result.stderr
    assert "asked the running monitor" in result.stdout
    assert redis_client.hget("saw:credits:scan", "requested_at") is not None
    assert redis_client.hlen("saw:credits:snapshots") == 0
