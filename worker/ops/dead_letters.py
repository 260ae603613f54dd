"""Dead letters: events that cannot succeed, kept in Redis with their reason until purged.

Layout (see `worker.keys`): hash `{p}:dead` maps the event key to a JSON record; zset
`{p}:dead:index` orders keys by last failure time. Records never expire by themselves, unlike
Dramatiq's own `.XQ` (7 days). Writing happens inside the executor's finishing transaction
(`worker.pipeline.attempts`); the record is `worker.pipeline.outcomes.DeadLetter`; this module
reads, filters and purges them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from worker import keys
from worker.pipeline.attempts import business_redis_keys
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.scripts import LuaScript

_RELEASE_CLAIM = LuaScript.load("release_claim")


class DeadLetters:
    """Read, filter and purge dead letters."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
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
        """Queue the removal of `letter` (record, index entry, reason count) on `pipe`, and the
        giving back of the business key (invoice) it held if its grant never took effect."""
        pipe.hdel(self._hash, letter.key)
        pipe.zrem(self._index, letter.key)
        pipe.hincrby(self._counts, letter.reason, -1)
        self._release_claim_in(pipe, letter)

    def _release_claim_in(self, pipe: Any, letter: DeadLetter) -> None:
        """Queue the giving back of the business key `letter` held for a grant that never took
        effect, and the end of its hold of an undecided one in the client's business keys
        (`lua/release_claim.lua`); nothing when it held none."""
        if letter.business_key and letter.grant_step:
            keys_ = [keys.ledger(self._prefix, letter.key),
                     *business_redis_keys(self._prefix, letter.business_key),
                     keys.business_keys(self._prefix, letter.client_id)]  # fmt: skip
            args = [letter.key, letter.grant_step, "", "", letter.business_key]
            pipe.eval(_RELEASE_CLAIM.source, len(keys_), *keys_, *args)

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
