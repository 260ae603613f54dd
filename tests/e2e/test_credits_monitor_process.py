"""`subaccount-worker monitor` as real processes: one leads, the other idles; SIGTERM hands over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
import redis

from tests.conftest import TEST_API_KEY
from tests.credits_support import NOTIFY_SECRET, webhook_receiver
from tests.servers import ThreadedUvicorn, free_port, wait_until
from worker.sandbox import SandboxAdmin

pytestmark = pytest.mark.e2e


class MonitorProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        full = {**os.environ, **env, "SUBACCOUNT_WORKER_MONITOR_PORT": str(self.port)}
        argv = [sys.executable, "-m", "worker.cli", "monitor"]
        self.proc = subprocess.Popen(argv, env=full, start_new_session=True)

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def metric(self, name: str) -> float | None:
        response = self.get("/metrics")
        if response is None:
            return None
        for line in response.text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def monitor_env(redis_url: str, sandbox_server: ThreadedUvicorn) -> dict[str, str]:
    return {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_server.url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_MONITOR_LEASE_TTL_MS": "1500",
        "SUBACCOUNT_WORKER_MONITOR_INTERVAL_S": "3600",
        "SUBACCOUNT_WORKER_MONITOR_HOST": "127.0.0.1",
        "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
    }


def test_two_monitors_elect_one_and_sigterm_hands_over(
    monitor_env: dict[str, str], sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Both serve /healthz; only the leader scans; SIGTERM ends it cleanly (exit 0), releasing
    the lease so the standby takes over; the last one leaves no lease behind."""
    sandbox.set_state({"subaccounts": {f"shop-{i}": {"email": "a@b.io"} for i in range(3)}})
    monitors = [MonitorProcess(monitor_env), MonitorProcess(monitor_env)]
    try:
        wait_until(
            lambda: all(m.metric("saw_credits_monitor_leader") is not None for m in monitors),
            timeout_s=30,
            what="both monitors serving",
        )
        wait_until(
            lambda: any(m.metric("saw_credits_subaccounts_scanned") == 3 for m in monitors),
            timeout_s=30,
            what="a scan",
        )
        leaders = [m.metric("saw_credits_monitor_leader") for m in monitors]
        assert sorted(leaders) == [0.0, 1.0]
        leader, standby = sorted(
            monitors, key=lambda m: -(m.metric("saw_credits_monitor_leader") or 0)
        )
        assert all(m.get("/healthz").status_code == 200 for m in monitors)  # type: ignore[union-attr]
        assert leader.metric("saw_credits_oldest_snapshot_age_seconds") is not None

        leader.proc.send_signal(signal.SIGTERM)
        assert leader.proc.wait(timeout=15) == 0
        wait_until(
            lambda: standby.metric("saw_credits_monitor_leader") == 1.0,
            timeout_s=15,
            what="the standby taking over",
        )
        standby.proc.send_signal(signal.SIGTERM)
        assert standby.proc.wait(timeout=15) == 0
        assert redis_client.exists("saw:credits:lease") == 0
    finally:
        for m in monitors:
            m.stop()


def test_the_monitor_delivers_its_notifications_itself(
    monitor_env: dict[str, str], sandbox: SandboxAdmin
) -> None:
    """No event worker runs: the monitor's own delivery worker POSTs the signed credits_low of a
    subaccount below the threshold (and the drift of this unmanaged subaccount), each once."""
    sandbox.set_state(
        {
            "subaccounts": {
                "shop-low": {"email": "a@b.io", "credit_type": "one_time_credit", "balance": 10}
            }
        }
    )
    with webhook_receiver(NOTIFY_SECRET) as (url, receiver):
        env = {
            **monitor_env,
            "SUBACCOUNT_WORKER_NOTIFY_URL": url,
            "SUBACCOUNT_WORKER_NOTIFY_ALLOW_HTTP_LOOPBACK": "true",
            "SUBACCOUNT_WORKER_NOTIFY_SECRET": NOTIFY_SECRET,
        }
        monitor = MonitorProcess(env)
        try:
            wait_until(lambda: len(receiver.ids) >= 3, timeout_s=30, what="the deliveries")
            monitor.proc.send_signal(signal.SIGTERM)
            assert monitor.proc.wait(timeout=15) == 0
        finally:
            monitor.stop()
    assert receiver.refused == 0
    assert len(set(receiver.ids)) == len(receiver.ids) == 3
    by_type = {d["type"]: d["data"] for d in receiver.deliveries}
    assert by_type["subaccount.credits_low"]["username"] == "shop-low"
    # and the period's digest of every low subaccount
    assert [c["username"] for c in by_type["subaccount.credits_digest"]["clients"]] == ["shop-low"]
    assert by_type["subaccount.drift_detected"]["kind"] == "unmanaged"
