"""CloudEvents 1.0 over HTTP: structured, batched and binary mode, parsed into catalogue events.

- structured: `application/cloudevents+json`, the body is one event;
- batched: `application/cloudevents-batch+json`, the body is a JSON array of events;
- binary: `application/json`, the attributes are `ce-*` headers (percent-encoded) and the body
  is the event's `data`.

Beyond what the catalogue checks, extension attributes must be CloudEvents-shaped (name of
lowercase letters and digits, value a string, integer or boolean), `data_base64` is refused, and
so is a `source` in the namespace reserved for verified webhooks (`sources.py`).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from starlette.datastructures import Headers

from handlers.errors import InvalidEvent
from handlers.events import Event
from handlers.limits import DEFAULT_LIMITS, EventLimits
from worker.ingress import sources
from worker.ingress.body import parse_json
from worker.ingress.mapping import catalogue_event, rename
from worker.ingress.problems import Malformed

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY = "application/json"
MEDIA_TYPES = (STRUCTURED, BATCH, BINARY)

ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
INT32 = range(-(2**31), 2**31)
HEADER_PREFIX = "ce-"


def parse_request(
    media: str, headers: Headers, body: bytes, limits: EventLimits = DEFAULT_LIMITS
) -> list[Event]:
    """The events of a `POST /events` body in the mode its media type says; 400 if invalid."""
    if media == STRUCTURED:
        return parse_events([parse_json(body)], limits, indexed=False)
    if media == BATCH:
        batch = parse_json(body)
        if not isinstance(batch, list):
            raise Malformed(["body: a batch must be a JSON array of events"])
        return parse_events(batch, limits, indexed=True)
    return [_binary_event(headers, body, limits)]


def parse_events(items: list[Any], limits: EventLimits, *, indexed: bool) -> list[Event]:
    """Every item as a catalogue event, or one 400 naming each bad one ('[2] data.email: …')."""
    events: list[Event] = []
    reasons: list[str] = []
    for index, item in enumerate(items):
        prefix = f"[{index}] " if indexed else ""
        try:
            events.append(_structured_event(item, limits))
        except InvalidEvent as exc:
            reasons.extend(prefix + reason for reason in exc.reasons)
    if reasons:
        raise Malformed(reasons)
    return events


def _structured_event(item: Any, limits: EventLimits) -> Event:
    """One structured-mode event: CloudEvents-shaped extensions, then the catalogue's checks."""
    if not isinstance(item, dict):
        raise InvalidEvent(["event: must be a JSON object"])
    reasons = [
        reason for name, value in item.items() if (reason := _extension_problem(name, value))
    ]
    if reasons:
        raise InvalidEvent(reasons)
    event = catalogue_event(item, limits)
    if sources.is_reserved(event.source):
        raise InvalidEvent([sources.reserved_reason(event.source)])
    return event


def _extension_problem(name: str, value: Any) -> str | None:
    """Why attribute `name` is not acceptable, or None if it is (or is not an extension)."""
    if name in ATTRIBUTES or name == "data":
        return None
    if name == "data_base64":
        return "data_base64: not supported; send the data as JSON in `data`"
    if not EXTENSION_NAME.match(name):
        return f"{name!r}: not a CloudEvents attribute name (1-20 lowercase letters or digits)"
    if isinstance(value, str | bool) or (isinstance(value, int) and value in INT32):
        return None
    return f"{name}: an extension attribute is a string, a 32-bit integer or a boolean"


def _binary_event(headers: Headers, body: bytes, limits: EventLimits) -> Event:
    """A binary-mode event: attributes from `ce-*` headers, data from the body."""
    attributes: dict[str, Any] = {}
    for header, value in headers.items():
        if header.startswith(HEADER_PREFIX) and header != "ce-datacontenttype":
            attributes[header.removeprefix(HEADER_PREFIX)] = _percent_decoded(header, value)
    if "specversion" not in attributes:
        raise Malformed(
            ["ce-specversion: required in binary mode (or send application/cloudevents+json)"]
        )
    attributes["datacontenttype"] = BINARY
    if body:
        attributes["data"] = parse_json(body)
    renames = {name: HEADER_PREFIX + name for name in attributes if name != "data"}
    renames["data"] = "body"
    try:
        return _structured_event(attributes, limits)
    except InvalidEvent as exc:
        raise Malformed([rename(reason, renames) for reason in exc.reasons]) from None


def _percent_decoded(header: str, value: str) -> str:
    """A `ce-*` header value with percent-encoding undone (CloudEvents HTTP binding, 3.1.3.2)."""
    try:
        return urllib.parse.unquote(value.encode("latin-1").decode("utf-8"), errors="strict")
    except UnicodeDecodeError:
        raise Malformed([f"{header}: not UTF-8 once percent-decoded"]) from None
