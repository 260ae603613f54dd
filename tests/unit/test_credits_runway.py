"""Consumption rate and runway: pure arithmetic over a snapshot history."""

from __future__ import annotations

import pytest

from worker.credits.runway import (
    Sample,
    consumption_rate,
    format_duration,
    parse_duration,
    runway_s,
)

DAY = 86_400.0


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # no rate without two readings some time apart
        ([], None),
        ([Sample(0, 100)], None),
        ([Sample(5, 100), Sample(5, 90)], None),
        # a steady fall of the balance: 10 credits in 10 s
        ([Sample(0, 100), Sample(10, 90)], 1.0),
        # the order of the history does not matter
        ([Sample(10, 90), Sample(0, 100)], 1.0),
        # a top-up is not negative consumption: 10 used before it, 10 after, over 20 s
        ([Sample(0, 100), Sample(10, 90), Sample(11, 1090), Sample(21, 1080)], 20 / 21),
        # `used` wins where both readings report it (balance rose by a grant meanwhile)
        ([Sample(0, 100, used=5), Sample(10, 500, used=25)], 2.0),
        # a `used` that went backwards (reset) falls back to the balance
        ([Sample(0, 100, used=50), Sample(10, 80, used=0)], 2.0),
        # nothing consumed
        ([Sample(0, 100), Sample(60, 100)], 0.0),
    ],
)
def test_consumption_rate(history: list[Sample], expected: float | None) -> None:
    """The rate is consumption (never top-ups) per second over the history."""
    assert consumption_rate(history, window_s=DAY) == (
        pytest.approx(expected) if expected is not None else None
    )


def test_the_rate_looks_only_at_the_window() -> None:
    """Readings older than the window (from the newest) are left out."""
    history = [Sample(0, 1000), Sample(100, 900), Sample(200, 890), Sample(300, 880)]
    assert consumption_rate(history, window_s=200) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("balance", "rate", "expected"),
    [
        (1000, 1.0, 1000.0),
        (0, 1.0, 0.0),
        (-5, 1.0, 0.0),  # an overdrawn balance has no runway left
        (1000, 0.0, None),  # nothing consumed: never runs out
        (1000, None, None),  # rate unknown yet
    ],
)
def test_runway(balance: int, rate: float | None, expected: float | None) -> None:
    """Runway = balance / rate; None when it never runs out or the rate is unknown."""
    assert runway_s(balance, rate) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("12h", 43_200.0), ("3d", 3 * DAY),
     ("1w", 7 * DAY), ("1.5d", 1.5 * DAY)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "three days", "-1d", "nan"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "∞"), (12, "12s"), (60, "1m"), (2100, "35m"), (3 * DAY + 4 * 3600, "3d 4h")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_no_runway_from_too_little_history() -> None:
    """A burst seen over minutes is not a runway: below the span or the number of readings the
    rate is unknown (and so the runway), above both it is told."""
    from worker.credits.runway import Sample, consumption_rate

    minutes = [Sample(at=60.0 * n, balance=10_000 - 500 * n) for n in range(4)]  # 3 min
    assert consumption_rate(minutes, 86_400, min_span_s=6 * 3600, min_samples=4) is None
    hours = [Sample(at=3600.0 * n, balance=10_000 - 500 * n) for n in range(7)]  # 6 h, 7 reads
    assert consumption_rate(hours, 86_400, min_span_s=6 * 3600, min_samples=4) == 500 / 3600
    assert consumption_rate(hours[:3], 86_400, min_span_s=0, min_samples=4) is None
