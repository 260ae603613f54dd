"""Outcomes counted per minute and per hour in Redis, for the overview and `status`.

The worker's outcome observer (`OutcomeCounter.observe`, wired in `worker.runtime`) adds each
finished event to an in-process tally that a background thread flushes once a second: one
pipelined round trip per second per process, whatever the throughput, and none on an event's
path. A process killed between flushes loses at most that second of counts (the outcome stream
and the ledger stay exact; these counts are for charts). Readers sum the last hour's 60 minute
hashes and the last day's 24 hour hashes: the same cost at 10 events an hour as at 10,000 a
minute, unlike a scan of the newest outcomes (which made a busy hour look idle).

The API client's observer (`observe_call`) is counted the same way, per minute by result (`ok`
or the error's class) with the summed latency: the overview's "API errors" figure, which says
the API is failing whether or not a circuit breaker reports it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from worker.log import get_logger

log = get_logger(__name__)
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MINUTE_TTL_S = 2 * 3600  # a minute's counts are read for an hour
HOUR_TTL_S = 2 * 86_400  # an hour's counts are read for a day
FLUSH_S = 1.0
GIVE_UP_S = 300.0  # counts Redis would not take for this long are dropped (said once)


def minute_key(prefix: str, minute: int) -> str:
    """Outcome → count of the minute starting at `minute` * 60 s (Unix minutes)."""
    return f"{prefix}:ops:outcomes:minute:{minute}"


def api_minute_key(prefix: str, minute: int) -> str:
    """API call result → count of the minute, and `ms`: their summed latency."""
    return f"{prefix}:ops:api:minute:{minute}"


# Results that mean the API answered as designed (an event's own failure is not the API's).
ANSWERED = frozenset({"ok", "Permanent", "NotFound", "Conflict"})


def hour_key(prefix: str, hour: int) -> str:
    """Outcome → count of the hour starting at `hour` * 3600 s (Unix hours)."""
    return f"{prefix}:ops:outcomes:hour:{hour}"


class OutcomeCounter:
    """Tallies outcomes in memory and flushes them to Redis once a second (started lazily by
    the first outcome, so a process that never finishes an event starts no thread)."""

    def __init__(self, client: redis.Redis, prefix: str, flush_s: float = FLUSH_S) -> None:
        self._redis = client
        self._prefix = prefix
        self._flush_s = flush_s
        self._lock = threading.Lock()
        # (unix minute, "outcome" | "api", field) → count (or summed ms)
        self._tally: Counter[tuple[int, str, str]] = Counter()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing_since: float | None = None

    def observe(self, outcome: str, event_type: str) -> None:
        """The outcome observer: count one finished event in this minute."""
        del event_type  # counted by Prometheus; the overview charts outcomes
        self._add({("outcome", str(outcome)): 1})

    def observe_call(self, operation: str, result: str, seconds: float) -> None:
        """The API client's observer: one call of `result` and its latency, in this minute."""
        del operation
        self._add({("api", result): 1, ("api", "ms"): int(seconds * 1000)})

    def _add(self, counts: dict[tuple[str, str], int]) -> None:
        minute = int(time.time() * 1000) // MINUTE_MS
        with self._lock:
            for (kind, name), n in counts.items():
                self._tally[(minute, kind, name)] += n
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="outcome-counts", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Write the tally to Redis now (kept for the next flush if Redis is down)."""
        with self._lock:
            tally, self._tally = self._tally, Counter()
        if not tally:
            return
        pipe = self._redis.pipeline(transaction=False)
        for (minute, kind, name), n in tally.items():
            if kind == "api":
                pipe.hincrby(api_minute_key(self._prefix, minute), name, n)
                continue
            pipe.hincrby(minute_key(self._prefix, minute), name, n)
            pipe.hincrby(hour_key(self._prefix, minute // 60), name, n)
        for minute in {minute for minute, _, _ in tally}:
            pipe.expire(minute_key(self._prefix, minute), MINUTE_TTL_S)
            pipe.expire(hour_key(self._prefix, minute // 60), HOUR_TTL_S)
            pipe.expire(api_minute_key(self._prefix, minute), MINUTE_TTL_S)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                log.warning("outcome_counts.flush_failed", error=type(exc).__name__)
            if now - self._failing_since < GIVE_UP_S:
                with self._lock:
                    self._tally.update(tally)
            return
        self._failing_since = None

    def stop(self) -> None:
        """Write what is left and end the flushing thread (the process is closing)."""
        self._stop.set()
        self.flush()
        with self._lock:
            self._tally.clear()  # what Redis would not take now is not retried later

    def _run(self) -> None:
        """Flush every `flush_s` while there is something to write; an idle counter's thread
        ends (the next outcome starts another)."""
        while not self._stop.wait(self._flush_s):
            self.flush()
            with self._lock:
                if not self._tally:
                    self._thread = None
                    return


@dataclass(frozen=True)
class OutcomeCounts:
    """The last hour by minute and the last day by hour, oldest first, each outcome → count."""

    minutes: list[dict[str, int]]
    hours: list[dict[str, int]]

    @property
    def last_hour(self) -> dict[str, int]:
        return _sum(self.minutes)

    @property
    def last_day(self) -> dict[str, int]:
        return _sum(self.hours)

    def per_minute(self) -> list[int]:
        return [sum(m.values()) for m in self.minutes]

    def per_hour(self) -> list[int]:
        return [sum(h.values()) for h in self.hours]


def read_counts(
    client: redis.Redis, prefix: str, now_ms: int | None = None, *, minutes: int = 60
) -> OutcomeCounts:
    """The counts of the last `minutes` minutes and the last 24 hours, in one round trip."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    this_minute, this_hour = now // MINUTE_MS, now // HOUR_MS
    pipe = client.pipeline(transaction=False)
    for minute in range(this_minute - minutes + 1, this_minute + 1):
        pipe.hgetall(minute_key(prefix, minute))
    for hour in range(this_hour - 23, this_hour + 1):
        pipe.hgetall(hour_key(prefix, hour))
    replies = [_ints(raw) for raw in pipe.execute()]
    return OutcomeCounts(minutes=replies[:minutes], hours=replies[minutes:])


@dataclass(frozen=True)
class ApiCalls:
    """The API calls of the last minutes: how many, how many failed (not answered as designed:
    timeouts, 5xx, 429, unreadable answers), and their mean latency."""

    calls: int
    failed: int
    mean_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.calls if self.calls else None


def read_api_calls(
    client: redis.Redis, prefix: str, now_ms: int | None = None, *, minutes: int = 5
) -> ApiCalls:
    """The API calls of the last `minutes` minutes (this one included), in one round trip."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    this_minute = now // MINUTE_MS
    pipe = client.pipeline(transaction=False)
    for minute in range(this_minute - minutes + 1, this_minute + 1):
        pipe.hgetall(api_minute_key(prefix, minute))
    total = _sum([_ints(raw) for raw in pipe.execute()])
    ms = total.pop("ms", 0)
    calls = sum(total.values())
    failed = sum(n for result, n in total.items() if result not in ANSWERED)
    return ApiCalls(calls, failed, ms / calls if calls else None)


def _ints(raw: dict[Any, Any]) -> dict[str, int]:
    return {_text(k): int(v) for k, v in raw.items()}


def _sum(buckets: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for bucket in buckets:
        total.update(bucket)
    return dict(total)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
