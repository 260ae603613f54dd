"""The worker's liveness probe (`/healthz` on the metrics port), on real processes and Redis.

Healthy while the Dramatiq processes consume; unhealthy when one stops consuming (frozen with
SIGSTOP: its heartbeat ages, it holds no message); healthy again when it resumes. A process whose
heartbeat is old but which holds messages (all threads busy) is never judged stuck.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.servers import WorkerProcess, free_port, wait_until
from worker.ops.liveness import ChildState, LivenessCheck, record_broker
from worker.settings import load_settings

StartWorker = Callable[..., WorkerProcess]


def _health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.HTTPError:
        return None
    return response.status_code, response.json()


def test_healthz_fails_while_a_process_stops_consuming_and_recovers(
    start_worker: StartWorker,
) -> None:
    port = free_port()
    start_worker("--processes", "1", "--threads", "2", "--metrics-port", str(port))

    def healthy_with_a_process() -> bool:
        found = _health(port)
        return found is not None and found[0] == 200 and len(found[1]["processes"]) == 1

    wait_until(healthy_with_a_process, timeout_s=30, what="a healthy worker process")
    found = _health(port)
    assert found is not None
    pid = found[1]["processes"][0]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: (_health(port) or (0, {}))[0] == 503, timeout_s=15, what="503")
        status, body = _health(port) or (0, {})
        assert status == 503
        assert str(pid) in body["reason"]
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: (_health(port) or (0, {}))[0] == 200, timeout_s=15, what="200 again")


def test_an_old_heartbeat_with_messages_held_is_busy_not_stuck(
    redis_url: str, redis_client: redis.Redis, broker_client: redis.Redis, tmp_path: Path
) -> None:
    """Decided from Redis alone: this test's own process stands in for a worker process."""
    settings = load_settings(redis_url=redis_url, heartbeat_timeout_ms=1000)
    record_broker("broker-under-test", str(tmp_path))
    heartbeats, acks = "saw:dramatiq:__heartbeats__", "saw:dramatiq:__acks__.broker-under-test"
    broker_client.zadd(heartbeats, {"broker-under-test": (time.time() - 30) * 1000})
    child = ChildState()
    child.running()
    check = LivenessCheck(redis_client, settings, str(tmp_path), child)

    idle = check()
    assert not idle.ok
    assert idle.processes[0].pid == os.getpid()
    assert idle.processes[0].heartbeat_age_s is not None
    assert idle.processes[0].heartbeat_age_s >= 29

    broker_client.sadd(f"{acks}.subaccount-events", "message-1")
    busy = check()
    assert busy.ok
    assert busy.processes[0].holding == 1

    broker_client.delete(f"{acks}.subaccount-events")
    broker_client.zadd(heartbeats, {"broker-under-test": time.time() * 1000})
    assert check().ok


def test_notes_left_by_an_earlier_run_are_forgotten(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """A metrics directory that outlived a container restart may name a pid now used by another
    process; the supervisor drops such notes before starting Dramatiq."""
    (tmp_path / f"broker-{os.getpid()}").write_text("broker-of-an-earlier-run")
    port = free_port()
    start_worker(
        "--processes", "1", "--threads", "1", "--metrics-port", str(port),
        SUBACCOUNT_WORKER_METRICS_DIR=str(tmp_path),
    )  # fmt: skip

    def one_healthy_process() -> bool:
        found = _health(port)
        return found is not None and found[0] == 200 and len(found[1]["processes"]) == 1

    wait_until(one_healthy_process, timeout_s=30, what="only this run's worker process")
    found = _health(port)
    assert found is not None
    assert found[1]["processes"][0]["pid"] != os.getpid()
