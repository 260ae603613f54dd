"""The fence's and the in-doubt window's rules, on a fake clock and a fake lease store; which
failed calls are in doubt."""

from __future__ import annotations

from typing import Any

import pytest

from handlers import examples as f
from handlers.events import parse_event
from handlers.plan import AddCredits, ClientState, SetStatus
from handlers.requests import ChangeCredits, SetDisabled
from worker.errors import Ambiguous, ApiError, Permanent, Transient
from worker.pipeline.failures import maybe_applied
from worker.pipeline.fence import Fence, FenceLost, FenceRules, NoToken
from worker.pipeline.in_doubt import UNTIL, Window
from worker.pipeline.ledger import Ledger, StepRecord, StepState
from worker.pipeline.progress import Attempt
from worker.pipeline.results import AttemptInfo

RULES = FenceRules(lease_ms=10_000, need_ms=4_000, max_wait_ms=8_000)


class FakeStore:
    """Records lease extensions; `held` says whether the lease is still ours."""

    def __init__(self, held: bool = True) -> None:
        self.held = held
        self.extended: list[int] = []

    def renew(self, event_key: str, client_id: str, token: str, done: Any, ttl_ms: int) -> bool:
        self.extended.append(ttl_ms)
        return self.held


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _fence(store: FakeStore, clock: Clock) -> Fence:
    return Fence(store, RULES, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def _attempt() -> Attempt:
    event = parse_event(f.suspended("fen", t=1))
    return Attempt(event, {}, AttemptInfo(), "tok", ClientState(client_id="fen"), Ledger({}), 0)


def test_a_fresh_lease_is_checked_without_a_round_trip_and_an_old_one_is_renewed() -> None:
    store, clock = FakeStore(), Clock()
    fence, a = _fence(store, clock), _attempt()
    fence.leased(a, clock())
    clock.now += 5.0  # 5 s of a 10 s lease gone: 5 s left >= 4 s needed
    fence.before_send(a)
    assert store.extended == []
    clock.now += 1.5  # 3.5 s left < 4 s needed
    fence.before_send(a)
    assert store.extended == [RULES.lease_ms]


def test_a_lost_lease_stops_the_send() -> None:
    store, clock = FakeStore(held=False), Clock()
    fence, a = _fence(store, clock), _attempt()
    fence.leased(a, clock() - 9.0)
    with pytest.raises(FenceLost):
        fence.before_send(a)


def test_a_limiter_wait_is_covered_by_the_lease_or_not_waited_for() -> None:
    store, clock = FakeStore(), Clock()
    fence, a = _fence(store, clock), _attempt()
    fence.leased(a, clock())
    fence.wait_for_slot(a, 7.0)  # 10 s left < 7 s + 4 s: extended first, then waited
    assert store.extended == [7_000 + RULES.lease_ms]
    assert clock.slept == [7.0]
    fence.before_send(a)  # the extension covers the send: no second round trip
    assert len(store.extended) == 1
    with pytest.raises(NoToken):
        fence.wait_for_slot(a, 9.0)  # longer than the longest wait held through
    assert clock.slept == [7.0]


def test_the_window_ends_where_the_record_says_or_after_a_dead_workers_longest_call() -> None:
    window = Window(settle_ms=3_000, max_call_ms=5_000)
    doubted = StepRecord(StepState.IN_PROGRESS, "t", 1_000, {UNTIL: 9_999})
    assert window.until(doubted) == 9_999
    assert window.after_failure(2_000) == 5_000
    crashed = StepRecord(StepState.IN_PROGRESS, "t", 1_000, {"balance_before": 0})
    assert window.until(crashed) == 1_000 + 5_000 + 3_000
    assert Window(settle_ms=0, max_call_ms=5_000).until(crashed) == 1_000  # no window


@pytest.mark.parametrize(
    ("error", "grant", "in_doubt"),
    [
        (Ambiguous("read timeout", operation="op"), False, True),
        (
            Transient("bad gateway", operation="op", status=502),
            False,
            True,
        ),  # the server behind may go on
        (
            Transient("unavailable", operation="op", status=503),
            False,
            False,
        ),  # answered: it is done with it
        (
            Transient("unavailable", operation="op", status=503),
            True,
            True,
        ),  # a grant: evidence can tell
        (Transient("too many", operation="op", status=429), True, False),
        (Permanent("refused", operation="op", status=400), True, False),
    ],
)
def test_which_failed_calls_are_in_doubt(error: ApiError, grant: bool, in_doubt: bool) -> None:
    step = (
        AddCredits(request=ChangeCredits(username="fen-1", amount=5), business_key="invoice:1")
        if grant
        else SetStatus(request=SetDisabled(username="fen-1", disabled=True))
    )
    assert maybe_applied(step, error) is in_doubt
