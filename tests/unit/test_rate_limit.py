"""The in-process token bucket on a fake clock (the shared Redis bucket: an integration test)."""

from __future__ import annotations

import pytest

from worker.api.rate_limit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_burst_then_paced() -> None:
    """A full bucket lets `burst` calls through at once, then spaces calls 1/rate apart."""
    clock = FakeClock()
    bucket = TokenBucket(10, 3, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)
    assert waits[4] == pytest.approx(0.2)


def test_refills_over_time_up_to_burst() -> None:
    """Idle time refills tokens, never beyond the burst size."""
    clock = FakeClock()
    bucket = TokenBucket(10, 2, clock=clock, sleep=clock.sleep)
    bucket.reserve()
    bucket.reserve()
    clock.now = 100.0
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_rejects_nonsense_configuration() -> None:
    """A zero rate or burst is a configuration error, said at construction."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
