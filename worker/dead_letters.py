"""Dead letters: events that cannot succeed, kept in Redis with their reason until purged.

Layout (see `worker.keys`): hash `{p}:dead` maps the event key to a JSON record; zset
`{p}:dead:index` orders keys by last failure time. Records never expire by themselves, unlike
Dramatiq's own `.XQ` (7 days). Writing happens inside the executor's finishing transaction
(`worker.store`); this module defines the record and reads, filters and purges them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import redis

from worker import keys


class Reason(StrEnum):
    """Why an event was dead-lettered; operators filter by these codes."""

    INVALID_EVENT = "invalid_event"  # failed validation at consume time
    PERMANENT_ERROR = "permanent_error"  # the API refused it (400/401/403)
    NOT_FOUND = "not_found"  # the subaccount does not exist at the API
    CONFLICT = "conflict"  # the username is taken by another subaccount
    AMBIGUOUS_OUTCOME = "ambiguous_outcome"  # sent, no answer, evidence cannot decide
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient errors past the attempt/age limits
    CLIENT_UNKNOWN = "client_unknown"  # never onboarded within the wait limit
    CLIENT_CHURNED = "client_churned"  # invoice paid for a deleted subaccount
    BUSINESS_KEY_CONFLICT = "business_key_conflict"  # one invoice (or onboarding), two amounts
    POISON_MESSAGE = "poison_message"  # delivered again and again without reaching an outcome
    INTERNAL_ERROR = "internal_error"  # a bug of ours kept failing the event: see the logs


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event with everything an operator needs to decide what to do."""

    key: str
    event: dict[str, Any]
    reason: str
    detail: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int
    step: str | None = None
    readings: dict[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return str(self.event.get("subject", ""))

    @property
    def event_type(self) -> str:
        return str(self.event.get("type", ""))

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: str | bytes) -> DeadLetter:
        return cls(**json.loads(raw))


class DeadLetters:
    """Read, filter and purge dead letters."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._hash = keys.dead_letters(prefix)
        self._index = keys.dead_letter_index(prefix)
        self._counts = keys.dead_letter_counts(prefix)

    def get(self, key: str) -> DeadLetter | None:
        raw = self._redis.hget(self._hash, key)
        return DeadLetter.decode(raw) if raw else None

    def count(self) -> int:
        return int(self._redis.hlen(self._hash))

    def list(
        self,
        *,
        reason: str | None = None,
        client_id: str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Newest first, filtered; reads in batches so a large store stays cheap to browse."""
        found: list[DeadLetter] = []
        for letter in self._iter_newest_first():
            if reason and letter.reason != reason:
                continue
            if client_id and letter.client_id != client_id:
                continue
            if event_type and letter.event_type != event_type:
                continue
            found.append(letter)
            if len(found) >= limit:
                break
        return found

    def counts_by_reason(self) -> dict[str, int]:
        """Dead letters per reason code, from the counts kept beside the records."""
        raw: dict[Any, Any] = self._redis.hgetall(self._counts)
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {reason: n for reason, n in counts.items() if n > 0}

    def purge(self, key: str) -> bool:
        """Delete one dead letter; True if it existed."""
        letter = self.get(key)
        if letter is None:
            return False
        pipe = self._redis.pipeline(transaction=True)
        self.remove_in(pipe, letter)
        removed = pipe.execute()[0]
        return bool(removed)

    def remove_in(self, pipe: Any, letter: DeadLetter) -> None:
        """Queue the removal of `letter` (record, index entry, reason count) on `pipe`."""
        pipe.hdel(self._hash, letter.key)
        pipe.zrem(self._index, letter.key)
        pipe.hincrby(self._counts, letter.reason, -1)

    def _iter_newest_first(self, batch: int = 200) -> Iterator[DeadLetter]:
        start = 0
        while True:
            keys_: list[Any] = self._redis.zrevrange(self._index, start, start + batch - 1)
            if not keys_:
                return
            for raw in self._redis.hmget(self._hash, keys_):
                if raw:
                    yield DeadLetter.decode(raw)
            start += batch
