"""The monitor's and the console's /healthz tell the truth: 503 while Redis refuses our password
or is stopped, and (monitor) when no scan has finished for several intervals; the monitor's
/livez, which restarts nothing over Redis, stays 200 meanwhile. Each on a Redis of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.credits_support import FakeClock, credit_settings
from tests.servers import RedisServer, ThreadedUvicorn, free_port
from worker.console.app import create_app
from worker.console.services import Services, console_redis
from worker.credits.metrics import serve
from worker.credits.monitor import SCAN_STALE_INTERVALS, Monitor, build_monitor
from worker.errors import BrokerUnavailable
from worker.runtime import redis_client
from worker.settings import load_settings

PASSWORD = "health-test-password"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test with a password (the test stops it on purpose)."""
    server = RedisServer().start()
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", PASSWORD)
    admin.close()
    yield server
    server.stop()


def _url(server: RedisServer, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


def _monitor_http(monitor: Monitor) -> Iterator[httpx.Client]:
    """The monitor's real HTTP server for one `for` block; then everything closed."""
    assert monitor.metrics is not None
    port = free_port()
    server = serve("127.0.0.1", port, monitor.metrics.registry, monitor.healthy)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.shutdown()
        server.server_close()
        monitor.scanner.api.close()
        monitor.scanner.store.redis.close()


def _monitor(url: str, clock: FakeClock) -> Monitor:
    settings = credit_settings(url, "http://127.0.0.1:9", monitor_interval_s=300.0)
    return build_monitor(settings, redis_client(settings), clock=clock)


def _answer(http: httpx.Client, path: str) -> tuple[int, str]:
    response = http.get(path)
    return response.status_code, response.json()["status"]


def test_monitor_health_with_a_wrong_password_and_a_stopped_redis(
    private_redis: RedisServer,
) -> None:
    clock = FakeClock()
    good = _monitor(_url(private_redis, PASSWORD), clock)
    # A scan finished now and one is under way: no scan is due, so ticks need no API.
    good.scanner.store.set_scan({"started_at": clock() + 1, "finished_at": clock()})
    good.tick()
    for http in _monitor_http(good):
        assert _answer(http, "/healthz") == (200, "ok")

        wrong = _monitor(_url(private_redis, "not-the-password"), clock)
        with pytest.raises(BrokerUnavailable):
            wrong.tick()  # the loop logs this and ticks on: alive, but blind
        for wrong_http in _monitor_http(wrong):
            assert _answer(wrong_http, "/healthz") == (503, "redis_unreachable")
            assert _answer(wrong_http, "/livez") == (200, "alive")

        private_redis.stop()
        assert _answer(http, "/healthz") == (503, "redis_unreachable")
        assert _answer(http, "/livez") == (200, "alive")


def test_monitor_health_fails_when_no_scan_finished_for_several_intervals(
    private_redis: RedisServer,
) -> None:
    clock = FakeClock()
    monitor = _monitor(_url(private_redis, PASSWORD), clock)
    # A scan started and never finished (hung on the API, or its monitor died mid-scan).
    monitor.scanner.store.set_scan({"started_at": clock() + 10**6, "finished_at": clock()})
    monitor.tick()
    for http in _monitor_http(monitor):
        clock.advance(SCAN_STALE_INTERVALS * monitor.interval_s - 1)
        monitor.tick()
        assert _answer(http, "/healthz") == (200, "ok")
        clock.advance(2)
        monitor.tick()
        assert _answer(http, "/healthz") == (503, "no_recent_scan")
        monitor.scanner.store.set_scan({"finished_at": clock()})
        assert _answer(http, "/healthz") == (200, "ok")


def _console(url: str) -> tuple[ThreadedUvicorn, Services]:
    settings = load_settings(
        redis_url=url,
        console_tokens=f"ops:viewer:{secrets.token_urlsafe(32)}",
        console_secret="s" * 32,
    )
    services = Services(console_redis(settings), settings, warm_index=False)
    return ThreadedUvicorn(create_app(settings, services)).start(), services


def test_console_health_with_a_wrong_password_and_a_stopped_redis(
    private_redis: RedisServer,
) -> None:
    good, good_services = _console(_url(private_redis, PASSWORD))
    wrong, wrong_services = _console(_url(private_redis, "not-the-password"))
    try:
        assert httpx.get(f"{good.url}/healthz").status_code == 200
        refused = httpx.get(f"{wrong.url}/healthz")
        assert (refused.status_code, refused.text) == (503, "redis unreachable")
        private_redis.stop()
        stopped = httpx.get(f"{good.url}/healthz", timeout=15)
        assert (stopped.status_code, stopped.text) == (503, "redis unreachable")
        assert httpx.get(f"{good.url}/livez").status_code == 200  # liveness: never Redis
    finally:
        for server, services in ((good, good_services), (wrong, wrong_services)):
            server.stop()
            services.close()
