"""What Stripe and the CRM share: building a catalogue envelope and validating it.

A webhook maps onto at most one catalogue event. Its id is the source's own delivery id and its
source a fixed URN, so the pipeline's dedupe key (sha256 of source + id) is the same for every
re-delivery of the same webhook.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.errors import InvalidEvent
from handlers.events import Event, parse_event
from handlers.limits import EventLimits
from worker.ingress.problems import Problem

SPECVERSION = "1.0"


@dataclass(frozen=True)
class Ignored:
    """A webhook acknowledged without an event (e.g. a Stripe type the catalogue has no use for)."""

    reason: str


def envelope(
    *, type_: str, source: str, id_: str, subject: Any, time: Any, data: Any
) -> dict[str, Any]:
    """A CloudEvents 1.0 dict for the catalogue; absent (None) attributes are left out."""
    attributes = {
        "specversion": SPECVERSION,
        "type": type_,
        "source": source,
        "id": id_,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }
    return {name: value for name, value in attributes.items() if value is not None}


def catalogue_event(raw: dict[str, Any], limits: EventLimits) -> Event:
    """`parse_event`, guarded against a `type` that is not a string (it would raise TypeError)."""
    if not isinstance(raw.get("type", ""), str):
        raise InvalidEvent(["type: must be a string naming a catalogue event type"])
    return parse_event(raw, limits)


def to_event(
    raw: dict[str, Any], renames: Mapping[str, str], problem: type[Problem], limits: EventLimits
) -> Event:
    """Validate a mapped event; on failure raise `problem` with reasons in the sender's names."""
    try:
        return catalogue_event(raw, limits)
    except InvalidEvent as exc:
        raise problem([rename(reason, renames) for reason in exc.reasons]) from None


def rename(reason: str, renames: Mapping[str, str]) -> str:
    """Rewrite the field path of a 'field.path: why' reason with the longest matching prefix."""
    path, sep, why = reason.partition(": ")
    for old in sorted(renames, key=len, reverse=True):
        if path == old or path.startswith(old + "."):
            return renames[old] + path[len(old) :] + sep + why
    return reason


def rfc3339_utc(unix_s: int) -> str:
    """Unix seconds as an RFC 3339 UTC timestamp, e.g. 2026-01-31T12:00:00Z."""
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def loggable(value: object, limit: int = 120) -> str:
    """A sender-controlled value made safe for a log line: ASCII, bounded length."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit].encode("ascii", "backslashreplace").decode("ascii")
