"""Presentation helpers for the templates: times, durations, numbers and server-drawn SVG charts.

Formatting only; the figures come from the services. Charts are drawn as SVG path data so the
page needs no script and no inline style (the CSP allows neither).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, Undefined


@dataclass(frozen=True)
class Chart:
    """An SVG line chart: `path` for a <path d=...>, `area` to fill under it, axis labels."""

    width: int
    height: int
    path: str
    area: str
    top: float
    first_label: str
    last_label: str
    empty: bool


def line_chart(
    values: Sequence[float],
    *,
    width: int = 800,
    height: int = 110,
    first_label: str = "",
    last_label: str = "",
) -> Chart:
    """Scale `values` (oldest first) into the box; the top is the largest value (at least 1)."""
    top = max([1.0, *values])
    n = len(values)
    if n == 0:
        return Chart(width, height, "", "", top, first_label, last_label, True)
    if n == 1:  # one reading: a flat line across
        values, n = [values[0], values[0]], 2
    step = width / max(n - 1, 1)
    points = [(i * step, height - (v / top) * (height - 4) - 2) for i, v in enumerate(values)]
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
    area = f"{path} L{points[-1][0]:.1f},{height} L0,{height} Z"
    return Chart(width, height, path, area, top, first_label, last_label, False)


def when(ms: Any) -> str:
    """Epoch milliseconds (or an RFC 3339 string) as `YYYY-MM-DD HH:MM:SS` UTC."""
    if _missing(ms):
        return "—"
    if isinstance(ms, str) and not ms.isdigit():
        return ms.replace("T", " ").removesuffix("Z").split(".")[0]
    moment = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: Any) -> str:
    """A duration in the largest sensible unit: 45 s, 12 min, 3.5 h, 4.2 d; — when unknown."""
    if _missing(seconds):
        return "—"
    s = float(seconds)
    if s == float("inf"):
        return "∞"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(s) >= size:
            value = s / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{s:.0f} s"


def number(value: Any) -> str:
    """Thousands separated by a thin space; — for None."""
    if _missing(value):
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}".replace(",", "\u2009")
    return f"{int(value):,}".replace(",", "\u2009")


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or value == ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def register_filters(env: Environment) -> None:
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["number"] = number
    env.filters["pretty_json"] = pretty_json
    env.globals["line_chart"] = line_chart
