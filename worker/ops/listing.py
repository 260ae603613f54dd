"""Listing dead letters by filter, newest first, in pages that stay cheap at 100,000 records.

A listing scans the smallest index zset the filter names (`worker.ops.index`), within the
filter's time range, fetching records in batches (`HMGET`), never the whole hash. `DeadLetterView`
is the pinned shape of `dead-letters list --json` (README "Operations").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker import keys
from worker.ops.filters import DeadLetterFilter, http_status, rfc3339, source_of
from worker.ops.index import DeadLetterIndex, cluster_of
from worker.pipeline.outcomes import DeadLetter

BATCH = 500
Record = tuple[DeadLetter, bytes]  # a dead letter and its stored bytes


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as operators see it; `id` is what show/replay/purge take."""

    id: str
    event_id: str
    reason: str
    type: str
    subject: str
    source: str
    attempts: int
    detail: str
    step: str | None
    status: int | None
    cluster: str
    first_failed_at: str | None
    last_failed_at: str | None
    readings: dict[str, Any] = field(default_factory=dict)
    invoice_id: str | None = None
    credits: int | None = None
    business_key: str | None = None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterView:
        data = letter.event.get("data")
        data = data if isinstance(data, dict) else {}
        invoice, credits = data.get("invoice_id"), data.get("credits")
        return cls(
            id=letter.key,
            event_id=str(letter.event.get("id", "")),
            reason=letter.reason,
            type=letter.event_type,
            subject=letter.client_id,
            source=source_of(letter),
            attempts=letter.attempts,
            detail=letter.detail,
            step=letter.step,
            status=http_status(letter),
            cluster=cluster_of(letter),
            first_failed_at=rfc3339(letter.first_failure_ms),
            last_failed_at=rfc3339(letter.last_failure_ms),
            readings=letter.readings,
            invoice_id=invoice if isinstance(invoice, str) else None,
            credits=credits if type(credits) is int else None,
            business_key=letter.business_key,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeadLetterPage:
    """`items` (newest first) of `total` matching dead letters."""

    items: list[DeadLetterView]
    total: int
    filter: DeadLetterFilter

    @property
    def shown(self) -> int:
        return len(self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [item.to_json() for item in self.items],
            "shown": self.shown,
            "total": self.total,
            "filter": self.filter.to_json(),
        }


def list_dead_letters(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    *,
    limit: int | None = 50,
    offset: int = 0,
) -> DeadLetterPage:
    """A page of the dead letters matching `flt`, newest first, with the total that match
    (`limit=None`: all of them)."""
    source, alone = DeadLetterIndex(client, prefix).source_for(flt)
    items: list[DeadLetterView] = []
    total = 0
    want = None if limit is None else offset + limit
    for letter in iter_matching(client, prefix, flt, source):
        total += 1
        if total > offset and (want is None or total <= want):
            items.append(DeadLetterView.of(letter))
        if alone and want is not None and total >= want:
            total = _count(client, source, flt)
            break
    return DeadLetterPage(items=items, total=total, filter=flt)


def matching(client: redis.Redis, prefix: str, flt: DeadLetterFilter) -> Iterator[DeadLetter]:
    """Every dead letter matching `flt`, newest first (the index brought up to date first)."""
    return (letter for letter, _raw in matching_raw(client, prefix, flt))


def matching_raw(client: redis.Redis, prefix: str, flt: DeadLetterFilter) -> Iterator[Record]:
    """Like `matching`, with each record's stored bytes (what a plan's digest is taken of)."""
    source, _ = DeadLetterIndex(client, prefix).source_for(flt)
    return iter_matching_raw(client, prefix, flt, source)


def get_letters(client: redis.Redis, prefix: str, ids: list[str]) -> dict[str, DeadLetter]:
    """The dead letters among `ids` that exist, by id (batched reads)."""
    return {key: letter for key, (letter, _raw) in get_records(client, prefix, ids).items()}


def get_records(client: redis.Redis, prefix: str, ids: list[str]) -> dict[str, Record]:
    """The dead letters among `ids` that exist, with their stored bytes, by id."""
    found: dict[str, Record] = {}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        records: list[Any] = client.hmget(keys.dead_letters(prefix), chunk)
        for key, raw in zip(chunk, records, strict=True):
            if raw is not None:
                found[key] = (DeadLetter.decode(raw), raw)
    return found


def iter_matching(
    client: redis.Redis, prefix: str, flt: DeadLetterFilter, source: str
) -> Iterator[DeadLetter]:
    """Scan zset `source` newest first within the filter's times; yield the records that match."""
    return (letter for letter, _raw in iter_matching_raw(client, prefix, flt, source))


def iter_matching_raw(
    client: redis.Redis, prefix: str, flt: DeadLetterFilter, source: str
) -> Iterator[Record]:
    high: Any = flt.until_ms if flt.until_ms is not None else "+inf"
    low: Any = flt.since_ms if flt.since_ms is not None else "-inf"
    offset = 0
    while True:
        ids: list[Any] = client.zrevrangebyscore(source, high, low, start=offset, num=BATCH)
        if not ids:
            return
        offset += len(ids)
        records: list[Any] = client.hmget(keys.dead_letters(prefix), ids)
        for raw in records:
            if raw is None:
                continue  # removed since it was indexed
            letter = DeadLetter.decode(raw)
            if flt.matches(letter):
                yield letter, raw


def _count(client: redis.Redis, source: str, flt: DeadLetterFilter) -> int:
    high: Any = flt.until_ms if flt.until_ms is not None else "+inf"
    low: Any = flt.since_ms if flt.since_ms is not None else "-inf"
    return int(client.zcount(source, low, high))
