"""Helpers of the credits tests: settings, a fake clock, a webhook receiver that verifies."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings
from worker.settings import Settings

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"credits-test-secret-0123456789ab").decode()


def credit_settings(redis_url: str, sandbox_url: str, **overrides: Any) -> Settings:
    """Pipeline settings plus a low-credit rule small enough for tests (runway off)."""
    values: dict[str, Any] = {
        "credits_warn_balance": 1000,
        "credits_critical_balance": 100,
        "credits_warn_runway_s": 0.0,
        "credits_critical_runway_s": 0.0,
        "credits_clear_after_s": 30.0,
        "monitor_interval_s": 1.0,
        "monitor_page_size": 7,  # several pages even for a handful of subaccounts
        # a runway from two readings minutes apart (the defaults want hours: tested apart)
        "monitor_runway_min_history_s": 0.0,
        "monitor_runway_min_samples": 2,
        "notify_min_backoff_ms": 20,
        "notify_max_backoff_ms": 200,
        "notify_allow_http_loopback": True,  # the tests' receiver listens on loopback
        **overrides,
    }
    return pipeline_settings(redis_url, f"{sandbox_url}/v6", TEST_API_KEY, **values)


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Receiver:
    """What a webhook receiver saw: every delivery, verified with the standardwebhooks package."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.webhook = Webhook(secret)
        self.fail_first = fail_first
        self.deliveries: list[dict[str, Any]] = []  # verified bodies, in arrival order
        self.ids: list[str] = []
        self.refused = 0  # deliveries with a bad signature
        self.failed = 0  # deliveries answered 500 on purpose
        self.lock = threading.Lock()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            try:
                payload = self.webhook.verify(body, headers)
            except WebhookVerificationError:
                self.refused += 1
                return 401
            if self.failed < self.fail_first:
                self.failed += 1
                return 500
            self.ids.append(headers["webhook-id"])
            self.deliveries.append(payload)
            return 204


@contextmanager
def post_listener(handle: Callable[[bytes, dict[str, str]], int]) -> Iterator[int]:
    """A test HTTP server on a free loopback port: each POST's body and headers go to `handle`,
    whose status is the answer; yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = handle(body, dict(self.headers.items()))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def webhook_receiver(secret: str, fail_first: int = 0) -> Iterator[tuple[str, Receiver]]:
    """A test HTTP server on loopback that verifies each notification; yields (url, receiver)."""
    receiver = Receiver(secret, fail_first)
    with post_listener(receiver.handle) as port:
        yield f"http://127.0.0.1:{port}/hooks/credits", receiver


def parse_json_output(text: str) -> Any:
    return json.loads(text)
