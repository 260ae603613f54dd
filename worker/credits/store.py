"""Where the credits work keeps what it learned, in Redis (key names in `worker.keys`).

Snapshots (latest per subaccount, plus a capped history), the low-credit alert state and log,
open drift, and the figures of the last scan. Writes go through a pipeline the caller executes,
so one scan chunk costs one round trip; reads return typed values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from handlers.plan import ClientState
from handlers.requests import CreditType
from worker import keys
from worker.credits.rule import AlertState, Level
from worker.credits.runway import Sample
from worker.errors import BrokerUnavailable
from worker.log import get_logger

log = get_logger(__name__)


class Snapshot(BaseModel):
    """One subaccount as a scan read it: balance, `used` (where reported), type, status, time."""

    model_config = ConfigDict(frozen=True)

    username: str
    client_id: str | None = None
    balance: int
    used: int | None = None
    credit_type: CreditType
    disabled: bool
    read_at: float  # epoch seconds
    rate_per_s: float | None = None  # consumption over the history window, at this read
    runway_s: float | None = None  # None: never runs out at that rate (or not known yet)

    def sample(self) -> Sample:
        return Sample(at=self.read_at, balance=self.balance, used=self.used)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def alert_from_json(raw: bytes | str | None) -> AlertState:
    """An alert state as stored (a missing one is a closed alert)."""
    if not raw:
        return AlertState()
    data = json.loads(raw)
    data["level"] = Level(data.get("level", "ok"))
    return AlertState(**data)


class CreditsStore:
    """Typed reads and pipelined writes of the credits keys under one prefix."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        history_maxlen: int = 288,
        alert_log_maxlen: int = 100,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self._history_maxlen = history_maxlen
        self._alert_log_maxlen = alert_log_maxlen

    # --- writes (on a pipeline) ------------------------------------------------------------

    def add_snapshot(self, pipe: Any, snap: Snapshot) -> None:
        text = snap.model_dump_json()
        pipe.hset(keys.credit_snapshots(self.prefix), snap.username, text)
        history = keys.credit_history(self.prefix, snap.username)
        pipe.lpush(history, text)
        pipe.ltrim(history, 0, self._history_maxlen - 1)

    def set_alert(self, pipe: Any, username: str, state: AlertState) -> None:
        data = asdict(state)
        data["level"] = state.level.value
        pipe.hset(keys.credit_alerts(self.prefix), username, json.dumps(data))

    def log_alert(self, pipe: Any, username: str, record: dict[str, Any]) -> None:
        log_key = keys.credit_alert_log(self.prefix, username)
        pipe.lpush(log_key, json.dumps(record))
        pipe.ltrim(log_key, 0, self._alert_log_maxlen - 1)

    def forget(self, pipe: Any, username: str) -> None:
        """Drop the latest snapshot of a subaccount that no longer exists (history stays)."""
        pipe.hdel(keys.credit_snapshots(self.prefix), username)

    def execute(self, pipe: Any) -> list[Any]:
        try:
            return list(pipe.execute())
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not write credit snapshots ({exc})") from exc

    # --- reads -------------------------------------------------------------------------------

    def snapshots(self) -> dict[str, Snapshot]:
        raw = self.redis.hgetall(keys.credit_snapshots(self.prefix))
        return {_text(k): Snapshot.model_validate_json(v) for k, v in raw.items()}

    def snapshot(self, username: str) -> Snapshot | None:
        raw = self.redis.hget(keys.credit_snapshots(self.prefix), username)
        return Snapshot.model_validate_json(raw) if raw else None

    def history(self, username: str, limit: int | None = None) -> list[Snapshot]:
        """Snapshots of one subaccount, newest first."""
        end = -1 if limit is None else limit - 1
        raw = self.redis.lrange(keys.credit_history(self.prefix, username), 0, end)
        return [Snapshot.model_validate_json(item) for item in raw]

    def histories(self, usernames: list[str]) -> dict[str, list[Snapshot]]:
        """Histories of many subaccounts in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for username in usernames:
            pipe.lrange(keys.credit_history(self.prefix, username), 0, -1)
        rows = pipe.execute()
        return {
            name: [Snapshot.model_validate_json(item) for item in row]
            for name, row in zip(usernames, rows, strict=True)
        }

    def alerts(self) -> dict[str, AlertState]:
        raw = self.redis.hgetall(keys.credit_alerts(self.prefix))
        return {_text(k): alert_from_json(v) for k, v in raw.items()}

    def alerts_of(self, usernames: list[str]) -> dict[str, AlertState]:
        raw = self.redis.hmget(keys.credit_alerts(self.prefix), usernames) if usernames else []
        return {name: alert_from_json(value) for name, value in zip(usernames, raw, strict=True)}

    def alert(self, username: str) -> AlertState:
        return alert_from_json(self.redis.hget(keys.credit_alerts(self.prefix), username))

    def alert_log(self, username: str, limit: int = 50) -> list[dict[str, Any]]:
        raw = self.redis.lrange(keys.credit_alert_log(self.prefix, username), 0, limit - 1)
        return [json.loads(item) for item in raw]

    # --- per-client rules -------------------------------------------------------------------

    def rule_overrides(self) -> dict[str, dict[str, Any]]:
        """Client id → the threshold fields set for it (the rest come from the defaults)."""
        raw = self.redis.hgetall(keys.credit_rules(self.prefix))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def set_rule_override(self, client_id: str, fields: dict[str, Any]) -> None:
        if fields:
            self.redis.hset(keys.credit_rules(self.prefix), client_id, json.dumps(fields))
        else:
            self.redis.hdel(keys.credit_rules(self.prefix), client_id)

    # --- drift and scan figures --------------------------------------------------------------

    def open_drift(self) -> dict[str, dict[str, Any]]:
        raw = self.redis.hgetall(keys.credit_drift(self.prefix))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def replace_drift(self, pipe: Any, records: dict[str, dict[str, Any]]) -> None:
        """Set the open drift to `records` (on `pipe`, a MULTI the caller runs)."""
        key = keys.credit_drift(self.prefix)
        pipe.delete(key)
        if records:
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in records.items()})

    def set_scan(self, figures: Mapping[str, float | int | str]) -> None:
        self.redis.hset(keys.credit_scan(self.prefix), mapping=dict(figures))  # type: ignore[arg-type]

    def scan_figures(self) -> dict[str, str]:
        raw = self.redis.hgetall(keys.credit_scan(self.prefix))
        return {_text(k): _text(v) for k, v in raw.items()}


def client_states(client: redis.Redis, prefix: str, batch: int = 500) -> list[ClientState]:
    """Every client state the pipeline recorded (`{p}:client:*`), read with SCAN + MGET."""
    found: list[ClientState] = []
    for chunk in _chunks(client.scan_iter(match=keys.client(prefix, "*"), count=batch), batch):
        for key, raw in zip(chunk, client.mget(chunk), strict=True):
            if not raw:
                continue  # (not a string: some other key under the client prefix)
            try:
                found.append(ClientState.model_validate_json(raw))
            except ValueError:
                log.warning("credits.client_state_unreadable", key=_text(key))
    return found


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
