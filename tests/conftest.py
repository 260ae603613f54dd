"""Shared fixtures: a test-owned redis-server and the sandbox API served by uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.pipeline_support import pipeline_settings, running_pipeline
from tests.servers import RedisServer, ThreadedUvicorn
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin, create_app

TEST_API_KEY = "test-key-9f8e7d6c5b4a"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of our own for the whole session, on a free port."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The test-owned server's URL, emptied before each test (we started it, so we may)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def broker_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the database Dramatiq's keys live in (SUBACCOUNT_WORKER_BROKER_REDIS_DB)."""
    from worker.settings import load_settings

    client = redis.Redis.from_url(load_settings(redis_url=redis_url).broker_url())
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[ThreadedUvicorn]:
    """The sandbox API (both surfaces) under a real uvicorn on a free loopback port."""
    server = ThreadedUvicorn(create_app(api_key=TEST_API_KEY)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: ThreadedUvicorn) -> Iterator[SandboxAdmin]:
    """Admin handle on the sandbox, with state, journal and faults reset for this test."""
    admin = SandboxAdmin(sandbox_server.url)
    admin.reset()
    yield admin
    admin.close()


@pytest.fixture
def pipeline(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """The whole pipeline in-process: a Dramatiq worker (4 threads) running our actor on the
    test-owned Redis against the sandbox's v6 surface."""
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY)
    with running_pipeline(settings) as runtime:
        yield runtime


@pytest.fixture
def v6(sandbox_server: ThreadedUvicorn, sandbox: SandboxAdmin) -> Iterator[httpx.Client]:
    """A raw client of the v6 surface with the Bearer header, on a freshly reset sandbox."""
    from tests.sandbox_support import v6_client  # it imports this module's key

    with v6_client(sandbox_server.url) as client:
        yield client


@pytest.fixture
def v5(sandbox_server: ThreadedUvicorn, sandbox: SandboxAdmin) -> Iterator[httpx.Client]:
    """A raw client of the v5 surface with the api_key header, on a freshly reset sandbox."""
    from tests.sandbox_support import v5_client  # it imports this module's key

    with v5_client(sandbox_server.url) as client:
        yield client
