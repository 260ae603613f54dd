"""Reading the outcome stream: one record per finished event (applied, duplicate, superseded,
ignored, dead_lettered), capped at `outcome_stream_maxlen` entries."""

from __future__ import annotations

import json
from typing import Any

import redis

from worker import keys

_JSON_FIELDS = ("steps", "attempt", "at_ms")


def decode_entry(fields: dict[Any, Any]) -> dict[str, Any]:
    """One stream entry as a dict of text, with its JSON fields decoded."""
    record: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
    for name in _JSON_FIELDS:
        if name in record:
            record[name] = json.loads(record[name])
    return record


def read_outcomes(
    client: redis.Redis, prefix: str, count: int | None = None
) -> list[dict[str, Any]]:
    """The newest `count` outcomes (all if None), oldest first."""
    entries: Any = client.xrevrange(keys.outcomes(prefix), count=count)
    return [decode_entry(fields) for _id, fields in reversed(entries or [])]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
