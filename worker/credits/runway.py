"""Consumption rate and runway from a subaccount's snapshot history: pure arithmetic, no I/O.

The rate counts only consumption: rises of `used` where the API reports it, otherwise falls of
the balance. A top-up (the balance rising) is not negative consumption, so it neither hides nor
inflates the rate. The runway is the balance divided by that rate: how long, at the pace seen
over the window, until the subaccount has no credits left. A rate is told only from enough
history (`min_span_s`, `min_samples`): extrapolated from minutes, a burst of sending made 497 of
500 subaccounts "low"; with too little history the runway is unknown and only the balance
thresholds can alert.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One reading of a subaccount: when (epoch seconds), its balance, and `used` if reported."""

    at: float
    balance: int
    used: int | None = None


def consumption_rate(
    history: Sequence[Sample], window_s: float, min_span_s: float = 0.0, min_samples: int = 2
) -> float | None:
    """Credits consumed per second over the samples of the last `window_s` seconds.

    `history` may come in any order. None when the samples in the window are fewer than
    `min_samples` (at least two) or span less than `min_span_s` (no rate can be told yet); 0.0
    when nothing was consumed.
    """
    if not history:
        return None
    ordered = sorted(history, key=lambda s: s.at)
    newest = ordered[-1].at
    recent = [s for s in ordered if s.at >= newest - window_s]
    if len(recent) < max(2, min_samples) or recent[-1].at <= recent[0].at:
        return None
    if recent[-1].at - recent[0].at < min_span_s:
        return None
    consumed = sum(_consumed(a, b) for a, b in itertools.pairwise(recent))
    return consumed / (recent[-1].at - recent[0].at)


def _consumed(before: Sample, after: Sample) -> int:
    """Credits consumed between two readings: the rise of `used` if both report it."""
    if before.used is not None and after.used is not None and after.used >= before.used:
        return after.used - before.used
    return max(0, before.balance - after.balance)


def runway_s(balance: int, rate_per_s: float | None) -> float | None:
    """Seconds until `balance` reaches 0 at `rate_per_s`; None when it never does (or unknown)."""
    if rate_per_s is None or rate_per_s <= 0:
        return None
    return max(0, balance) / rate_per_s


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90`, `90s`, `15m`, `12h`, `3d` or `1w`; ValueError if not."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 12h, 3d)") from None
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 12h, 3d)")
    return seconds


def format_duration(seconds: float | None) -> str:
    """A short human reading of a duration (`2d 4h`, `35m`, `12s`); `∞` for None."""
    if seconds is None:
        return "∞"
    whole = int(seconds)
    for size, unit, sub_size, sub_unit in (
        (86_400, "d", 3600, "h"),
        (3600, "h", 60, "m"),
        (60, "m", 1, "s"),
    ):
        if whole >= size:
            rest = (whole % size) // sub_size
            return f"{whole // size}{unit}" + (f" {rest}{sub_unit}" if rest else "")
    return f"{whole}s"
