"""Console fixtures: the console served by a real uvicorn on loopback over the test-owned Redis,
an httpx client per role, and the attempt store (to write dead letters as the worker does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.console.support import SECRET, TOKENS_SETTING, login
from tests.servers import RedisServer, ThreadedUvicorn
from worker.console import create_app
from worker.console.services import Services, console_redis
from worker.pipeline.attempts import AttemptStore
from worker.runtime import build_store, redis_client
from worker.settings import Settings, load_settings


@pytest.fixture(scope="session")
def console_settings(redis_server: RedisServer) -> Settings:
    return load_settings(
        redis_url=redis_server.url, console_tokens=TOKENS_SETTING, console_secret=SECRET
    )


@pytest.fixture(scope="session")
def console_server(console_settings: Settings) -> Iterator[ThreadedUvicorn]:
    """The console app under uvicorn for the session (each test empties Redis first)."""
    # No index warmer here: it would race the emptying of Redis between tests.
    services = Services(console_redis(console_settings), console_settings, warm_index=False)
    app = create_app(console_settings, services)
    server = ThreadedUvicorn(app).start()
    yield server
    server.stop()
    app.state.services.close()


@pytest.fixture
def console(redis_url: str, console_server: ThreadedUvicorn) -> ThreadedUvicorn:
    """The console, over an emptied Redis."""
    return console_server


@pytest.fixture
def store(console_settings: Settings, redis_url: str) -> Iterator[AttemptStore]:
    client = redis_client(console_settings)
    yield build_store(console_settings, client)
    client.close()


@pytest.fixture
def anonymous(console: ThreadedUvicorn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=10) as client:
        yield client


@pytest.fixture
def as_role(console: ThreadedUvicorn) -> Iterator[Callable[[str], tuple[httpx.Client, str]]]:
    """Log a fresh client in as a role: `client, csrf = as_role("operator")`."""
    clients: list[httpx.Client] = []

    def make(role: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=console.url, timeout=10)
        clients.append(client)
        return client, login(client, role)

    yield make
    for client in clients:
        client.close()
