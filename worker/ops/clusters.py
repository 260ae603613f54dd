"""Failure clusters: dead letters grouped by reason x type x step x last HTTP status.

Unfiltered, the summary reads one small index zset per cluster (count, oldest, newest), whatever
the number of dead letters; with a filter it groups the matching records as it scans them.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.exceptions import NoPermissionError

from worker.ops.filters import DeadLetterFilter, rfc3339
from worker.ops.index import DeadLetterIndex, cluster_of
from worker.ops.listing import matching


@dataclass(frozen=True)
class Cluster:
    """One line of `dead-letters summary`."""

    reason: str
    type: str
    step: str | None
    status: int | None
    count: int
    oldest_at: str | None
    newest_at: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    clusters: list[Cluster]

    @property
    def total(self) -> int:
        return sum(cluster.count for cluster in self.clusters)

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "clusters": [c.to_json() for c in self.clusters]}


def summarize(client: redis.Redis, prefix: str, flt: DeadLetterFilter | None = None) -> Summary:
    """The clusters of all dead letters (or of those matching `flt`), biggest first."""
    if flt is not None and not flt.empty:
        return _summarize_scan(client, prefix, flt)
    index = DeadLetterIndex(client, prefix)
    try:
        index.sync()
    except NoPermissionError:  # a read-only user (saw-reader) and an index behind: scan all
        return _summarize_scan(client, prefix, DeadLetterFilter())
    names = index.clusters()
    pipe = client.pipeline(transaction=False)
    for name in names:
        key = index.cluster_key(name)
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.zrange(key, -1, -1, withscores=True)
    replies = pipe.execute()
    clusters: list[Cluster] = []
    for i, name in enumerate(names):
        count, oldest, newest = replies[3 * i : 3 * i + 3]
        if not count:
            with contextlib.suppress(NoPermissionError):  # the read-only user leaves it
                index.forget_cluster(name)
            continue
        clusters.append(_cluster(name, int(count), int(oldest[0][1]), int(newest[0][1])))
    return Summary(sorted(clusters, key=lambda c: (-c.count, c.reason, c.type)))


def _summarize_scan(client: redis.Redis, prefix: str, flt: DeadLetterFilter) -> Summary:
    groups: dict[str, list[int]] = {}  # cluster → [count, oldest ms, newest ms]
    for letter in matching(client, prefix, flt):
        name = cluster_of(letter)
        at = letter.last_failure_ms
        group = groups.setdefault(name, [0, at, at])
        group[0] += 1
        group[1], group[2] = min(group[1], at), max(group[2], at)
    clusters = [_cluster(name, *group) for name, group in groups.items()]
    return Summary(sorted(clusters, key=lambda c: (-c.count, c.reason, c.type)))


def _cluster(name: str, count: int, oldest_ms: int, newest_ms: int) -> Cluster:
    reason, type_, step, status = name.split("|")
    return Cluster(
        reason=reason,
        type=type_,
        step=None if step == "-" else step,
        status=None if status == "-" else int(status),
        count=count,
        oldest_at=rfc3339(oldest_ms),
        newest_at=rfc3339(newest_ms),
    )
