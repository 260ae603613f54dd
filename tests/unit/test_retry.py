"""Retry decisions: backoff with jitter, Retry-After as a floor, limits by attempts and age."""

from __future__ import annotations

import random

from handlers.outcomes import Reason
from worker.errors import Transient
from worker.pipeline.retry import GiveUp, RetryLater, RetryPolicy, backoff_ms, on_transient

POLICY = RetryPolicy(max_attempts=5, max_age_ms=60_000, min_backoff_ms=100, max_backoff_ms=2_000)


def _busy(retry_after: float | None = None) -> Transient:
    return Transient("busy", operation="add_credits", status=429, retry_after=retry_after)


def test_backoff_grows_and_is_capped() -> None:
    """Each attempt's delay lies between the minimum and min·2^(attempt-1), capped."""
    rng = random.Random(1)
    for attempt in range(1, 12):
        delay = backoff_ms(POLICY, attempt, rng)
        assert 100 <= delay <= min(2_000, 100 * 2 ** (attempt - 1))


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After is never undercut by a shorter backoff."""
    verdict = on_transient(POLICY, _busy(retry_after=7), attempt=1, age_ms=0, rng=random.Random(2))
    assert isinstance(verdict, RetryLater)
    assert verdict.delay_ms >= 7_000


def test_limits_by_attempts_and_age() -> None:
    """Past the attempt limit, or when the next try would be too old, give up."""
    rng = random.Random(3)
    exhausted = on_transient(POLICY, _busy(), attempt=5, age_ms=0, rng=rng)
    too_old = on_transient(POLICY, _busy(retry_after=30), attempt=1, age_ms=50_000, rng=rng)
    for verdict in (exhausted, too_old):
        assert isinstance(verdict, GiveUp)
        assert verdict.reason == Reason.RETRIES_EXHAUSTED
