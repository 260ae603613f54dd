"""Slow clients cannot hold the ingress: request-head and body deadlines, a connection cap.

A bounded slow-client script on loopback against the ingress served as `subaccount-worker
ingress` serves it (`server_config`: our h11 protocol and the limits from settings). Clients are
paced by `select` on their own sockets, which also tells when the server closed them.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from tests.ingress_support import TOKEN, ingress_settings
from tests.servers import RedisServer, free_port, wait_until
from worker.ingress import create_app
from worker.ingress.server import server_config

HEAD_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 1.5
CAP_S = 15.0  # the script gives up (and the test fails) after this: far beyond every deadline


@contextmanager
def serving(redis_url: str, **overrides: Any) -> Iterator[str]:
    """The ingress under uvicorn with its production config, in a thread; yields its URL."""
    settings = ingress_settings(
        redis_url,
        ingress_header_timeout_s=HEAD_TIMEOUT_S,
        ingress_body_timeout_s=BODY_TIMEOUT_S,
        **overrides,
    )
    port = free_port()
    server = uvicorn.Server(server_config(create_app(settings), settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the ingress")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by CAP_S)."""
    sock.setblocking(True)
    sock.settimeout(CAP_S)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_trickled_headers_are_cut_off_and_healthz_answers_meanwhile(
    redis_server: RedisServer,
) -> None:
    """50 clients trickle header lines forever: each gets 408 and is closed, while /healthz
    keeps answering 200 to a well-behaved client."""
    with serving(redis_server.url) as url, httpx.Client(base_url=url, timeout=5) as http:
        slow = {connect(url): b"" for _ in range(50)}
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ingress\r\n")
        health: list[int] = []
        deadline = time.monotonic() + CAP_S
        open_socks = set(slow)
        while open_socks and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_socks), [], [], 0.1)  # paces the trickle
            for sock in readable:
                chunk = sock.recv(65536)
                slow[sock] += chunk
                if not chunk:
                    open_socks.discard(sock)
            for sock in open_socks - set(readable):
                sock.sendall(b"X-Slow: 1\r\n")  # one more header line, never the blank line
            health.append(http.get("/healthz").status_code)
        for sock in slow:
            sock.close()
    assert not open_socks, f"{len(open_socks)} slow clients still connected after {CAP_S} s"
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in slow.values())
    body = json.loads(next(iter(slow.values())).partition(b"\r\n\r\n")[2])
    assert body == {
        "error": "timeout",
        "reasons": [f"headers: not received within {HEAD_TIMEOUT_S:g} s"],
    }
    assert len(health) >= 5
    assert set(health) == {200}


def test_a_silent_connection_is_closed_after_the_head_deadline(redis_server: RedisServer) -> None:
    """A client that connects and sends nothing is answered 408 and closed."""
    with serving(redis_server.url) as url:
        sock = connect(url)
        answer = read_answer(sock)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_stalled_body_gets_408_naming_what_arrived(redis_server: RedisServer) -> None:
    """Content-Length 262143 and 10 bytes sent: 408 within the body deadline, then closed."""
    with serving(redis_server.url) as url, httpx.Client(base_url=url, timeout=5) as http:
        sock = connect(url)
        sock.sendall(
            b"POST /events HTTP/1.1\r\nHost: ingress\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/cloudevents+json\r\n"
            b"Content-Length: 262143\r\n\r\n0123456789"
        )
        assert http.get("/healthz").status_code == 200  # meanwhile
        answer = read_answer(sock)
        sock.close()
        counted = 'saw_ingress_requests_total{route="/events",status="408"} 1.0'
        wait_until(lambda: counted in http.get("/metrics").text, what="the 408 counted")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "error": "timeout",
        "reasons": [f"body: 10 of 262143 bytes received within {BODY_TIMEOUT_S:g} s"],
    }


def test_connections_beyond_the_cap_get_503_until_the_slow_ones_are_cut(
    redis_server: RedisServer,
) -> None:
    """With a cap of 5, five idle sockets make a sixth request 503; once the head deadline
    has closed them, requests are served again."""
    with serving(redis_server.url, ingress_max_connections=5) as url:
        idle = [connect(url) for _ in range(5)]
        wait_until(lambda: _healthz(url) == 503, what="the cap to be reached")
        answers = [read_answer(sock) for sock in idle]
        for sock in idle:
            sock.close()
        assert _healthz(url) == 200
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)


def _healthz(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=5).status_code
