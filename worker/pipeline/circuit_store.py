"""The API circuit breaker's state in Redis, so every worker process agrees (keys in `keys.py`).

Each call is one Lua script (`lua/circuit_*.lua`) on the Redis server's clock. None runs on the
path of an event while every circuit is closed except `read_open`, which the gate caches.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import keys
from worker.errors import BrokerUnavailable
from worker.pipeline.circuit import CircuitPolicy
from worker.pipeline.scripts import LuaScript

_FAILURE = LuaScript.load("circuit_failure")
_PROBE = LuaScript.load("circuit_probe")
_CLOSE = LuaScript.load("circuit_close")


@dataclass(frozen=True)
class CircuitState:
    """One open circuit as stored (times in ms on the Redis server's clock)."""

    operation: str
    since_ms: int  # the first failure of the window that opened it
    opened_ms: int
    probe_at_ms: int  # the next probe is let through at or after this time
    failures: int  # systemic failures counted (those that opened it, then failed probes)
    probes: int  # probes let through since it opened
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "since_ms": self.since_ms,
            "opened_ms": self.opened_ms,
            "probe_at_ms": self.probe_at_ms,
            "failures": self.failures,
            "probes": self.probes,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Circuits:
    """Every open circuit and the server's time they were read at."""

    now_ms: int
    open: tuple[CircuitState, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Verdict:
    """The answer of a failure report or a probe request: is the circuit open, and when is the
    next probe (server ms, with the server's now to measure it from)."""

    is_open: bool
    probe_at_ms: int = 0
    now_ms: int = 0
    since_ms: int = 0
    probe: bool = False  # (probe requests) this caller holds the probe slot
    opened: bool = False  # (failure reports) this failure opened it


class CircuitStore:
    """Reads and changes the circuits of one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str, policy: CircuitPolicy) -> None:
        self._redis = client
        self._prefix = prefix
        self._policy = policy

    def read_open(self) -> Circuits:
        """Every open circuit with the server's time, in plain reads (no script: the operators'
        read-only users can see the API's health too); two round trips."""
        p = self._prefix
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.time()
            pipe.zrange(keys.circuit_open(p), 0, -1)
            (seconds, micros), members = pipe.execute()
            operations = [_text(m) for m in members]
            pipe = self._redis.pipeline(transaction=False)
            for op in operations:
                pipe.hgetall(keys.circuit(p, op))
            found = pipe.execute() if operations else []
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not read the API circuits: {exc}") from exc
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        states = tuple(
            _state([op, *[x for kv in fields.items() for x in kv]])
            for op, fields in zip(operations, found, strict=True)
            if fields  # closed between the two reads
        )
        return Circuits(now_ms, states)

    def failed(
        self, operation: str, client_id: str, error: str, ratio_reached: bool, retry_after_ms: int
    ) -> Verdict:
        """Count a systemic failure of `operation` by `client_id`; open the circuit by the rule."""
        p, policy = self._prefix, self._policy
        reply = self._run(
            _FAILURE,
            [keys.circuit(p, operation), keys.circuit_open(p),
             keys.circuit_failures(p, operation), keys.circuit_clients(p, operation)],
            [operation, client_id, error[:500], policy.window_ms, policy.failure_threshold,
             policy.min_clients, "1" if ratio_reached else "0", policy.probe_interval_ms,
             retry_after_ms, secrets.token_hex(8)],
        )  # fmt: skip
        state, probe_at, now, since = (int(v) for v in reply)
        return Verdict(state > 0, probe_at, now, since, opened=state == 2)

    def try_probe(self, operation: str) -> Verdict:
        """Take the probe slot of `operation` if its probe is due (at most one per interval)."""
        p = self._prefix
        reply = self._run(_PROBE, [keys.circuit(p, operation), keys.circuit_open(p)],
                          [operation, self._policy.probe_interval_ms])  # fmt: skip
        kind = _text(reply[0])
        if kind == "closed":
            return Verdict(False)
        probe_at, now, since = (int(v) for v in reply[1:])
        return Verdict(True, probe_at, now, since, probe=kind == "probe")

    def close(self, operation: str) -> bool:
        """Close `operation`'s circuit (its probe was answered); True if it was open."""
        p = self._prefix
        return bool(self._run(_CLOSE, [keys.circuit(p, operation), keys.circuit_open(p),
                                       keys.circuit_last(p)], [operation]))  # fmt: skip

    def last_outages(self) -> dict[str, dict[str, Any]]:
        """Per operation, its last closed outage (since, opened, closed, probes, failures)."""
        try:
            raw: Any = self._redis.hgetall(keys.circuit_last(self._prefix))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not read the API circuits: {exc}") from exc
        return {_text(op): json.loads(value) for op, value in raw.items()}

    def _run(self, script: LuaScript, script_keys: list[str], args: list[Any]) -> Any:
        try:
            try:
                return self._redis.evalsha(script.sha, len(script_keys), *script_keys, *args)
            except redis.exceptions.NoScriptError:
                return self._redis.eval(script.source, len(script_keys), *script_keys, *args)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not reach the API circuits in Redis: {exc}") from exc


def _state(fields: list[Any]) -> CircuitState:
    operation = _text(fields[0])
    values = {_text(k): _text(v) for k, v in zip(fields[1::2], fields[2::2], strict=True)}

    def number(name: str) -> int:
        return int(float(values.get(name) or 0))

    return CircuitState(
        operation=operation,
        since_ms=number("since_ms"),
        opened_ms=number("opened_ms"),
        probe_at_ms=number("probe_at_ms"),
        failures=number("failures"),
        probes=number("probes"),
        last_error=values.get("last_error", ""),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
