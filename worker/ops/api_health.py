"""The API's health as the operators' views show it, from the workers' shared circuit breaker
(`worker.ops.status.api_health`): `state` ("closed" or "open") and `since`, beside the breaker's
own fields; and the warning a replay's dry run gives while a circuit is open."""

from __future__ import annotations

from typing import Any

import redis

from worker.errors import BrokerUnavailable
from worker.log import get_logger
from worker.ops import status

log = get_logger(__name__)


def api_health(client: redis.Redis, prefix: str) -> dict[str, Any] | None:
    """The circuit's state as a dict (`state`, `since`, the open circuits...), or None when
    Redis could not say (the views then say the state is unknown)."""
    try:
        health = status.api_health(client, prefix).to_json()
    except (redis.RedisError, BrokerUnavailable) as exc:
        log.warning("api_health_unreadable", error=type(exc).__name__)
        return None
    health["state"] = "closed" if health["available"] else "open"
    health["since"] = health["unavailable_since"]
    return health


def circuit_open(client: redis.Redis, prefix: str) -> str | None:
    """A warning when the API's circuit is open (a replay now would wait), else None."""
    health = api_health(client, prefix)
    if not health or health["state"] != "open":
        return None
    since = health.get("since")
    return (
        "the API circuit is open"
        + (f" since {since}" if since else "")
        + ": replayed events will wait until the API answers again"
    )
