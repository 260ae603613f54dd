"""The monitor against the sandbox sending mail, on a clock the test drives (sandbox and monitor
share it): runway, one alert per episode, signed notifications delivered once through the queue,
drift noticed once, and the lease electing one monitor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.credits_support import NOTIFY_SECRET, FakeClock, credit_settings, webhook_receiver
from tests.pipeline_support import running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker.credits.monitor import Monitor, build_monitor
from worker.credits.notify import read_notifications
from worker.credits.service import client_rule, list_credits, set_client_rule, show_credits
from worker.runtime import Runtime, redis_client
from worker.sandbox import SandboxAdmin, create_app
from worker.settings import Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_sandbox(clock: FakeClock) -> Iterator[tuple[str, SandboxAdmin]]:
    """A sandbox of this test whose mail sending follows `clock`."""
    server = ThreadedUvicorn(create_app(TEST_API_KEY, clock=clock)).start()
    admin = SandboxAdmin(server.url)
    yield server.url, admin
    admin.close()
    server.stop()


def _onboard(runtime: Runtime, redis_client: redis.Redis, *events: dict[str, Any]) -> None:
    runtime.publisher.publish_many(list(events))
    found = wait_for_outcomes(redis_client, [e["id"] for e in events])
    assert {r["outcome"] for r in found.values()} == {"applied"}


def _monitor(settings: Settings, clock: FakeClock) -> Monitor:
    return build_monitor(settings, redis_client(settings), clock=clock)


def test_runway_is_within_20_percent_of_the_truth_after_a_few_scans(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """Two subaccounts send 10 emails/s in total (5 each): after three scans ten minutes apart,
    the runway of each is its balance / 5 within 20%; the unlimited one has none."""
    url, sandbox = clocked_sandbox
    settings = credit_settings(redis_url, url)
    with running_pipeline(settings) as runtime:
        _onboard(
            runtime,
            redis_client,
            f.onboarded("a", credits=50_000),
            f.onboarded("b", credits=20_000),
            f.onboarded("u", credit_type="unlimited"),
        )
    sandbox.set_sending(10, seed=7)
    monitor = _monitor(settings, clock)
    for _ in range(3):
        monitor.scanner.scan()
        clock.advance(600)
    rows = {r.client_id: r for r in list_credits(redis_client, "saw", now=clock.now)}

    for client_id in ("a", "b"):
        row = rows[client_id]
        assert row.runway_s is not None
        truth = row.balance / 5.0
        assert abs(row.runway_s - truth) / truth < 0.2, (client_id, row.runway_s, truth)
    assert rows["u"].runway_s is None
    assert [r.client_id for r in list_credits(redis_client, "saw")] == ["b", "a", "u"]
    detail = show_credits(redis_client, "saw", "b")
    assert detail is not None
    assert len(detail.history) == 3


def test_a_low_balance_opens_one_alert_and_a_top_up_closes_it_with_signed_notifications(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """Sending 1 email/s from 1,300 credits: crossing 1,000 opens one alert however many scans
    follow; an invoice lifting it above the clear level (1,500) for 30 s closes it. The receiver
    verifies both notifications with the standardwebhooks package and sees each once, the first
    one after a failed delivery retried through the queue."""
    url, sandbox = clocked_sandbox
    with webhook_receiver(NOTIFY_SECRET, fail_first=1) as (hook_url, receiver):
        settings = credit_settings(redis_url, url, notify_url=hook_url, notify_secret=NOTIFY_SECRET)
        with running_pipeline(settings) as runtime:
            _onboard(runtime, redis_client, f.onboarded("acme", credits=1300))
            sandbox.set_sending(1, seed=1)
            monitor = _monitor(settings, clock)
            for _ in range(8):  # 1300 → 600 over 700 s, a scan every 100 s
                monitor.tick()
                clock.advance(100)
            _onboard(runtime, redis_client, f.invoice_paid("acme", "INV-TOPUP", 5000, t=1))
            for _ in range(3):
                monitor.tick()
                clock.advance(20)
            wait_until(lambda: len(receiver.ids) == 2, timeout_s=20, what="two deliveries")

    by_type = {d["type"]: d["data"] for d in receiver.deliveries}  # a retry may arrive last
    types = ["subaccount.credits_low", "subaccount.credits_recovered"]
    assert sorted(by_type) == types
    assert receiver.refused == 0
    assert receiver.failed == 1  # the first attempt was refused with a 500, then retried
    assert len(set(receiver.ids)) == len(receiver.ids)
    low, recovered = (by_type[t] for t in types)
    assert low["alert_id"] == recovered["alert_id"]
    assert (low["client_id"], low["username"]) == ("acme", username_for("acme"))
    assert [n.type.value for n in read_notifications(redis_client, "saw")] == types
    detail = show_credits(redis_client, "saw", "acme")
    assert detail is not None
    assert [e["change"] for e in reversed(detail.alert_log)] == ["opened", "cleared"]
    assert not detail.row.low


def test_drift_found_by_scans_is_notified_once(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """A subaccount disabled by hand stays drift over three scans: one drift_detected."""
    url, sandbox = clocked_sandbox
    settings = credit_settings(redis_url, url)
    with running_pipeline(settings) as runtime:
        _onboard(runtime, redis_client, f.onboarded("acme", credits=5000))
    sandbox.set_state({"subaccounts": {username_for("acme"): {"disabled": True}}})
    monitor = _monitor(settings, clock)
    for _ in range(3):
        assert monitor.tick() is not None
        clock.advance(10)

    notes = read_notifications(redis_client, "saw")
    assert [(n.type.value, n.data["kind"], n.data["client_id"]) for n in notes] == [
        ("subaccount.drift_detected", "unexpected_disabled", "acme")
    ]


def test_one_monitor_scans_while_another_idles_until_the_lease_is_free(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """Two monitors: the first to tick leads and scans; the second idles until it is released."""
    url, _sandbox = clocked_sandbox
    settings = credit_settings(redis_url, url)
    first, second = _monitor(settings, clock), _monitor(settings, clock)

    assert first.tick() is not None
    clock.advance(10)
    assert second.tick() is None
    assert (first.leader, second.leader) == (True, False)
    first.lease.release()
    assert second.tick() is not None
    assert second.leader


def test_a_client_rule_overrides_the_defaults(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """Two clients with 5,000 credits: only the one whose warn balance is 10,000 alerts."""
    url, _sandbox = clocked_sandbox
    settings = credit_settings(redis_url, url)
    with running_pipeline(settings) as runtime:
        _onboard(
            runtime,
            redis_client,
            f.onboarded("big", credits=5000),
            f.onboarded("small", credits=5000),
        )
    rule = set_client_rule(settings, redis_client, "big", {"warn_balance": 10_000})
    assert (rule.warn_balance, rule.critical_balance) == (10_000, 100)
    assert client_rule(settings, redis_client, "small").warn_balance == 1000

    _monitor(settings, clock).tick()

    rows = {r.client_id: r for r in list_credits(redis_client, "saw")}
    assert (rows["big"].low, rows["small"].low) == (True, False)
    assert set_client_rule(settings, redis_client, "big", {}, reset=True).warn_balance == 1000


def test_one_digest_per_period_lists_every_low_client_and_minutes_of_history_alert_nobody(
    redis_url: str,
    redis_client: redis.Redis,
    clock: FakeClock,
    clocked_sandbox: tuple[str, SandboxAdmin],
) -> None:
    """Six subaccounts sending fast, three of them under the warn balance; the default runway
    rule (hours of history) is on. Scans a minute apart for ten minutes: only the three low
    balances alert (a burst over minutes is no runway), each notified once; one digest lists
    the three; the next digest comes only after the digest period. Bound: per client at most
    opened + escalated + cleared per alert period, plus one digest per digest period."""
    from tests.credits_support import credit_settings as make

    url, sandbox = clocked_sandbox
    settings = make(redis_url, url, credits_warn_runway_s=3 * 86_400.0,
                    credits_critical_runway_s=86_400.0, monitor_runway_min_history_s=6 * 3600.0,
                    monitor_runway_min_samples=4, credits_digest_period_s=3600.0)  # fmt: skip
    names = [f"d{n}" for n in range(6)]
    with running_pipeline(settings) as runtime:
        events = [f.onboarded(c, credits=500 if n < 3 else 50_000) for n, c in enumerate(names)]
        _onboard(runtime, redis_client, *events)
    sandbox.set_sending(3, seed=3)  # 0.5/s each: the low ones stay above critical
    monitor = _monitor(settings, clock)
    for _ in range(10):
        monitor.scanner.scan()
        clock.advance(60)
    notes = read_notifications(redis_client, "saw", count=1000)
    kinds = [n.type.value for n in notes]
    assert kinds.count("subaccount.credits_low") == 3, [n.data for n in notes]
    (digest,) = [n for n in notes if n.type.value == "subaccount.credits_digest"]
    assert sorted(row["client_id"] for row in digest.data["clients"]) == ["d0", "d1", "d2"]
    clock.advance(3600)
    monitor.scanner.scan()
    notes = read_notifications(redis_client, "saw", count=1000)
    assert [n.type.value for n in notes].count("subaccount.credits_digest") == 2
    # an hour of sending emptied the low ones: each escalated once (a change), none reopened
    changes = [n.data["change"] for n in notes if n.type.value == "subaccount.credits_low"]
    assert sorted(changes) == ["escalated"] * 3 + ["opened"] * 3


def test_a_monitor_started_before_the_api_waits_for_it_without_failing_ticks(
    redis_url: str, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """Nothing answers at the API's address yet: the first ticks say once, at INFO, that the
    monitor waits for the API; no `tick_failed` warning until a scan has once succeeded."""
    from structlog.testing import capture_logs

    from worker.dev.devservers import free_port

    settings = credit_settings(redis_url, f"http://127.0.0.1:{free_port()}")
    monitor = _monitor(settings, clock)
    with capture_logs() as logs:
        for _ in range(3):
            monitor.tick_once()
            clock.advance(settings.monitor_interval_s)
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("credits.")]
    assert events == [("credits.waiting_for_api", "info")]
    monitor.api_seen = True  # as after a first scan: a failure now is a failed tick
    with capture_logs() as logs:
        monitor.tick_once()
    assert [e["event"] for e in logs if e["event"].startswith("credits.")] == [
        "credits.tick_failed"
    ]
