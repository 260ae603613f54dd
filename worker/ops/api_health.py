"""The API's health as the operators' views show it: the circuit breaker's state when the
circuit module provides it (`worker.ops.status`, item 1 of issue 22), else nothing.

The hook: a function named in `READERS` on `worker.ops.status`, taking (Redis, prefix) and
returning a dict (or an object with `to_json()`) with either `state` ("closed", "open",
"half_open") and `since`, or, as the `circuit` branch's `ApiHealth` has it, `available` and
`unavailable_since` (RFC 3339); both read the same here. The overview shows it and a
replay's dry run warns while it is open. Until such a function exists, `api_health` answers
None and the views say the circuit state is not available.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from worker.log import get_logger

log = get_logger(__name__)
READERS = ("api_health", "circuit_status", "read_circuit", "circuit_state")


def _reader() -> Callable[[redis.Redis, str], Any] | None:
    from worker.ops import status

    for name in READERS:
        found = getattr(status, name, None)
        if callable(found):
            return found  # type: ignore[no-any-return]
    return None


def api_health(client: redis.Redis, prefix: str) -> dict[str, Any] | None:
    """The circuit's state as a dict (`state`, `since`, ...), or None when not available."""
    reader = _reader()
    if reader is None:
        return None
    try:
        found = reader(client, prefix)
    except (redis.RedisError, TypeError, ValueError) as exc:
        log.warning("api_health_unreadable", error=type(exc).__name__)
        return None
    if found is None:
        return None
    value = found.to_json() if hasattr(found, "to_json") else found
    if not isinstance(value, dict):
        return {"state": str(value)}
    health = dict(value)
    if "available" in health and "state" not in health:
        health["state"] = "closed" if health["available"] else "open"
        health.setdefault("since", health.get("unavailable_since"))
    return health


def circuit_open(client: redis.Redis, prefix: str) -> str | None:
    """A warning when the API's circuit is open (a replay now would wait or fail), else None."""
    health = api_health(client, prefix)
    if not health or str(health.get("state", "")).lower() not in ("open", "half_open"):
        return None
    since = health.get("since") or health.get("opened_at")
    return (
        "the API circuit is open"
        + (f" since {since}" if since else "")
        + (": replayed events will wait until the API answers again")
    )
