"""The HTTP session on the wire: a connection per thread, and proxies, seen by a real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.threads import threads_kept_alive
from worker.api.http import HttpSession
from worker.dev.devservers import wait_until


class CountingServer(ThreadingHTTPServer):
    """Answers every request with a small JSON body, keeps connections alive, counts them."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.opened = 0
        self.open_now = 0
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v6"

    def count(self, delta: int) -> None:
        with self.lock:
            self.open_now += delta
            self.opened += max(delta, 0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: CountingServer

    def setup(self) -> None:
        super().setup()
        self.server.count(+1)

    def finish(self) -> None:
        super().finish()
        self.server.count(-1)

    def do_POST(self) -> None:
        self.server.targets.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"data": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[CountingServer]:
    srv = CountingServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_each_thread_keeps_one_connection_closed_when_it_ends(server: CountingServer) -> None:
    session = HttpSession(server.url, timeout=httpx.Timeout(5.0))
    statuses: list[int] = []

    def work() -> None:
        for _ in range(5):
            statuses.append(session.send("POST", "/subaccounts", body={"n": 1}).status_code)

    with threads_kept_alive(3, work):
        assert statuses == [200] * 15
        assert server.opened == 3  # one kept-alive connection per thread
    wait_until(lambda: server.open_now == 0, 5, "connections closed as their threads ended")


def test_close_closes_the_callers_connection(server: CountingServer) -> None:
    session = HttpSession(server.url, timeout=httpx.Timeout(5.0))
    session.send("POST", "/x", body={})
    session.send("POST", "/x", body={})
    assert (server.opened, server.open_now) == (1, 1)
    session.close()
    wait_until(lambda: server.open_now == 0, 5, "connection closed by session.close()")


def test_requests_go_through_the_proxy_the_environment_names(
    server: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with httpx.Client, HTTP(S)_PROXY is honoured (the 'proxy' here is the test server)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url.removesuffix("/v6"))
    session = HttpSession("http://api.invalid/v6", timeout=httpx.Timeout(5.0))
    assert session.send("POST", "/subaccounts", body={}).status_code == 200
    assert server.targets == ["http://api.invalid/v6/subaccounts"]  # absolute form: a proxy's
    session.close()
