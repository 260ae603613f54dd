"""The notification URL policy: the URLs the probe got accepted are refused at load, a name that
resolves inward is refused at delivery (DNS answers come from a stub resolver: nothing is looked
up or sent anywhere but a listener on loopback), and the URL is masked in check-config and logs."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.credits_support import NOTIFY_SECRET, post_listener
from worker.cli import app
from worker.credits.notify import (
    DeliveryFailed,
    Notification,
    NotificationType,
    check_notify_settings,
    deliver,
)
from worker.errors import ConfigError
from worker.log import SecretRedactor
from worker.settings import load_settings

NOTE = Notification.make(NotificationType.CREDITS_LOW, 1_800_000_000.0, {"client_id": "c"}, "x")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://169.254.169.254/latest/meta-data/", "not a public address"),  # cloud metadata
        ("https://[fd00:ec2::254]/", "not a public address"),
        ("https://[::1]:6379/", "not a public address"),  # the local Redis
        ("https://10.0.0.8/hook", "not a public address"),
        ("https://100.100.100.200/", "not a public address"),  # shared (CGNAT) metadata
        ("https://[::ffff:192.168.1.1]/", "not a public address"),
        ("file:///etc/passwd", "must be an https:// URL"),
        ("gopher://hooks.example:6379/_SET", "must be an https:// URL"),
        ("https://user:pass@hooks.example/x", "no user:password@"),
        ("http://hooks.example/x", "http:// is allowed only to loopback"),
        ("http://127.0.0.1:9000/x", "http:// is allowed only to loopback"),  # not said explicitly
    ],
)
def test_urls_the_probe_got_accepted_are_refused_at_load(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings(notify_url=url, notify_secret=NOTIFY_SECRET)
    assert "NOTIFY_URL" in str(caught.value)
    assert "pass" not in str(caught.value).replace("password", "")


def test_allowed_urls_load() -> None:
    load_settings(notify_url="https://hooks.example/x?token=abc")
    load_settings(notify_url="https://10.1.2.3/x", notify_allowed_cidrs="10.0.0.0/8")
    load_settings(notify_url="http://127.0.0.1:9000/x", notify_allow_http_loopback=True)


def answers(*addresses: str) -> Any:
    """A resolver (socket.getaddrinfo's shape) that answers `addresses`, whatever the name."""

    def resolve(host: str, port: int, **_: object) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


@contextmanager
def listener() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A loopback HTTP listener recording the headers of each POST."""
    seen: list[dict[str, str]] = []

    def record(body: bytes, headers: dict[str, str]) -> int:
        seen.append({k.lower(): v for k, v in headers.items()})
        return 204

    with post_listener(record) as port:
        yield port, seen


def test_each_delivery_resolves_checks_and_connects_to_the_checked_address() -> None:
    """A name that resolved to the loopback receiver, then (a DNS change) to a private address:
    the second delivery is refused before any connection; the first reached the receiver with
    the name in its Host header."""
    with listener() as (port, seen), httpx.Client(timeout=5) as http:
        settings = load_settings(
            notify_url=f"http://hooks.test:{port}/credits",
            notify_secret=NOTIFY_SECRET,
            notify_allow_http_loopback=True,
        )
        deliver(settings, NOTE, http, resolver=answers("127.0.0.1"))
        assert [h["host"] for h in seen] == [f"hooks.test:{port}"]
        with pytest.raises(DeliveryFailed, match="not a public address"):
            deliver(settings, NOTE, http, resolver=answers("10.0.0.5"))
        with pytest.raises(DeliveryFailed, match="not a public address"):
            deliver(settings, NOTE, http, resolver=answers("127.0.0.1", "169.254.169.254"))
        assert len(seen) == 1


def test_the_start_check_refuses_a_name_resolving_inward() -> None:
    settings = load_settings(notify_url="https://hooks.example/x", notify_secret=NOTIFY_SECRET)
    with pytest.raises(ConfigError, match=r"169\.254\.169\.254"):
        check_notify_settings(settings, answers("169.254.169.254"))
    check_notify_settings(settings, answers("93.184.215.14"))


def test_the_url_is_masked_in_check_config_and_logs() -> None:
    url = "https://hooks.example/x?token=tok-9f8e7d6c5b&team=ops-channel"
    settings = load_settings(notify_url=url, notify_secret=NOTIFY_SECRET)
    env = {"SUBACCOUNT_WORKER_NOTIFY_URL": url, "SUBACCOUNT_WORKER_NOTIFY_SECRET": NOTIFY_SECRET}
    result = CliRunner().invoke(app, ["check-config"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["notify_url"]
    assert shown == "https://hooks.example/x?token=%2A%2A%2A&team=%2A%2A%2A"
    assert "tok-9f8e7d6c5b" not in result.output
    redactor = SecretRedactor(settings.secrets())
    line = redactor.scrub(f"POST {url} failed; also https://ann:hunter22@other.example/")
    assert "tok-9f8e7d6c5b" not in line
    assert "hunter22" not in line
    assert "https://***@other.example/" in line
