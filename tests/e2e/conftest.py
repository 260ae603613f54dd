"""Fixtures for end-to-end tests: real worker processes against test-owned servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_API_KEY
from tests.servers import ThreadedUvicorn, WorkerProcess


@pytest.fixture
def worker_env(redis_url: str, sandbox_server: ThreadedUvicorn) -> dict[str, str]:
    """Environment of a worker process: test servers, low heartbeat, fast retries."""
    return {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_server.url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_HEARTBEAT_TIMEOUT_MS": "1000",
        "SUBACCOUNT_WORKER_MAINTENANCE_CHANCE": "1000000",
        "SUBACCOUNT_WORKER_LOCK_TTL_MS": "12000",
        "SUBACCOUNT_WORKER_API_POOL_TIMEOUT_S": "0.5",
        "SUBACCOUNT_WORKER_API_WRITE_TIMEOUT_S": "0.5",
        "SUBACCOUNT_WORKER_API_CONNECT_TIMEOUT_S": "0.5",
        "SUBACCOUNT_WORKER_API_READ_TIMEOUT_S": "2.5",
        "SUBACCOUNT_WORKER_API_SETTLE_S": "1",  # the in-doubt window, short for tests
        "SUBACCOUNT_WORKER_RETRY_MIN_BACKOFF_MS": "20",
        "SUBACCOUNT_WORKER_RETRY_MAX_BACKOFF_MS": "200",
        "SUBACCOUNT_WORKER_LOCK_BUSY_DELAY_MS": "50",
        "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_RETRY_MS": "50",
        "SUBACCOUNT_WORKER_METRICS_PORT": "0",
        "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker process groups; every one started is stopped after the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        process = WorkerProcess({**worker_env, **env}, *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e carries the `e2e` marker, even one whose module forgot it
    (`-m "not e2e"` must leave out the whole slow layer)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
