"""The operators' secondary index of dead letters: one zset per reason, type, client and cluster.

The pipeline writes a dead letter in three places only (hash, time index, reason counts: see
`worker.keys`), inside its finishing scripts, and must stay fast; so the operators' side keeps
its own index and brings it up to date before each read (`sync`): it indexes every dead letter
whose failure time is past the last mark (minus a look-back for clocks of several workers), and
remembers per dead letter which entries it made (`{p}:dead:ix:of`), so a rewritten dead letter
moves between indexes exactly and a replay or purge removes it from all of them. Readers still
check each record they fetch against their filter: the index narrows, the record decides.

A cluster is reason x type x step x last HTTP status: "the 995 from the outage" share one.

Search (`--search`, the console's search box) uses two more parts of the index: one zset of
every dead letter's identifiers (event id, invoice id, business key, client), lower-cased, as
`value\0dim\0id` members of equal score, read by `ZRANGEBYLEX` for an exact or prefix match;
and one zset per word of the detail (by failure time), intersected for a query's words. A query
is answered as one short-lived zset (`search_source`), so a page of the results and their count
cost the same at the 100,000th dead letter as at the first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import NoPermissionError

from worker import keys
from worker.ops.filters import (
    WORDS_KEPT,
    DeadLetterFilter,
    http_status,
    identifiers_of,
    source_of,
    words,
)
from worker.pipeline.outcomes import DeadLetter

DIMENSIONS = ("reason", "type", "client", "cluster", "source")
IDENTIFIERS = ("event", "invoice", "business_key", "client")  # searched exactly or by prefix
LOOKBACK_MS = 5 * 60_000  # workers' clocks may disagree by this much
BATCH = 1000
INDEX_VERSION = "2"  # 2: identifiers and words for search
PREFIX_CAP = 20_000  # identifiers a prefix search reads at most ("i" alone matches too much)
SEARCH_TTL_MS = 3_000  # a query's result zset is reused this long (a page, its next page)
_SEP = "\x00"


def cluster_of(letter: DeadLetter) -> str:
    """The cluster name of a dead letter: `reason|type|step|status` ('-' for none)."""
    status = http_status(letter)
    parts = (letter.reason, letter.event_type, letter.step or "-", str(status or "-"))
    return "|".join(parts)


def entries_of(letter: DeadLetter) -> dict[str, str]:
    """Index dimension → value for one dead letter."""
    return {
        "reason": letter.reason,
        "type": letter.event_type,
        "client": letter.client_id,
        "cluster": cluster_of(letter),
        "source": source_of(letter),
    }


def search_entries(letter: DeadLetter) -> dict[str, list[str]]:
    """The search index entries of one dead letter: its identifier members and detail words."""
    lex = [
        f"{value.lower()}{_SEP}{dim}{_SEP}{letter.key}"
        for dim, value in identifiers_of(letter).items()
    ]
    return {"lex": lex, "words": words(letter.detail)[:WORDS_KEPT]}


class DeadLetterIndex:
    """Keeps and reads the secondary index; `sync` before reading."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._of = keys.dead_letter_ix_of(prefix)
        self._lex = keys.dead_letter_ix(prefix, "lex", "all")

    def sync(self) -> int:
        """Index the dead letters written since the last mark; return how many were indexed.
        A dead letter whose index entry is as old as its record is not read again."""
        mark_key = keys.dead_letter_ix_mark(self._prefix)
        version_key = mark_key + ":version"
        mark = int(self._redis.get(mark_key) or 0)
        if self._redis.get(version_key) != INDEX_VERSION.encode():
            mark = 0  # an index made by older code: every dead letter is looked at once
        start = max(mark - LOOKBACK_MS, 0)
        indexed, top = 0, mark
        for batch in self._batches(start):
            made: list[Any] = self._redis.hmget(self._of, [key for key, _ in batch])
            stale = [
                key
                for (key, score), old in zip(batch, made, strict=True)
                if old is None
                or json.loads(old).get("at") != int(score)
                or "words" not in json.loads(old)
            ]
            if stale:
                self.index_ids(stale)
            indexed += len(stale)
            top = max(top, int(batch[-1][1]))
        if top > mark:
            self._redis.set(mark_key, top)
        self._redis.set(version_key, INDEX_VERSION)
        return indexed

    def _batches(self, start: int) -> Iterator[list[tuple[str, float]]]:
        index = keys.dead_letter_index(self._prefix)
        offset = 0
        while True:
            rows: Any = self._redis.zrangebyscore(
                index, start, "+inf", start=offset, num=BATCH, withscores=True
            )
            if not rows:
                return
            yield [(_text(key), score) for key, score in rows]
            offset += len(rows)

    def index_ids(self, batch: list[str]) -> None:
        """Index these dead letters now, whatever their failure time (e.g. just imported)."""
        records: list[Any] = self._redis.hmget(keys.dead_letters(self._prefix), batch)
        made: list[Any] = self._redis.hmget(self._of, batch)
        adds: dict[str, dict[str, int]] = {}  # index zset → {dead letter: score}
        lex: dict[str, int] = {}  # identifier members of the prefix-search zset
        pipe = self._redis.pipeline(transaction=False)
        new_of: dict[str, str] = {}
        for key, raw, old in zip(batch, records, made, strict=True):
            if raw is None:
                continue
            letter = DeadLetter.decode(raw)
            made_now = {**entries_of(letter), **search_entries(letter)}
            encoded = json.dumps({**made_now, "at": letter.last_failure_ms}, separators=(",", ":"))
            if old is not None and _text(old) == encoded:
                continue
            if old is not None:
                self._unindex(pipe, key, json.loads(old))
            for zset in self._zsets(made_now):
                adds.setdefault(zset, {})[key] = letter.last_failure_ms
            lex.update(dict.fromkeys(made_now["lex"], 0))
            new_of[key] = encoded
        for zset, members in adds.items():
            pipe.zadd(zset, members)
        if lex:
            pipe.zadd(self._lex, lex)
        clusters = {json.loads(v)["cluster"] for v in new_of.values()}
        if clusters:
            pipe.sadd(keys.dead_letter_ix_clusters(self._prefix), *clusters)
        if new_of:
            pipe.hset(self._of, mapping=new_of)  # type: ignore[arg-type]
        pipe.execute()

    def _zsets(self, entries: dict[str, Any]) -> list[str]:
        """The zsets (by failure time) a dead letter of these index entries belongs in."""
        names = [keys.dead_letter_ix(self._prefix, dim, entries[dim]) for dim in DIMENSIONS]
        names += [keys.dead_letter_ix(self._prefix, "word", w) for w in entries["words"]]
        return names

    def remove_in(self, pipe: Any, key: str, letter: DeadLetter) -> None:
        """Queue the removal of `key` from every index entry (what `letter` implies)."""
        self._unindex(pipe, key, {**entries_of(letter), **search_entries(letter)})
        pipe.hdel(self._of, key)

    def _unindex(self, pipe: Any, key: str, entries: dict[str, Any]) -> None:
        for dim, value in entries.items():
            if dim in DIMENSIONS:
                pipe.zrem(keys.dead_letter_ix(self._prefix, dim, value), key)
        if entries.get("lex"):
            pipe.zrem(self._lex, *entries["lex"])
        for word in entries.get("words") or []:
            pipe.zrem(keys.dead_letter_ix(self._prefix, "word", word), key)

    def search_source(self, query: str) -> str:
        """A zset (by failure time) of the dead letters that may answer `query`: identifiers
        equal to or starting with it, and those whose detail has all its words. Built once per
        query for `SEARCH_TTL_MS`; readers check each record (`matches_search`)."""
        q = query.strip().lower()
        name = keys.dead_letter_ix(self._prefix, "query", hashlib.sha1(q.encode()).hexdigest())  # noqa: S324 - a cache key
        if self._redis.exists(name):
            return name
        lex: Any = self._redis.zrangebylex(self._lex, f"[{q}", f"[{q}\xff", start=0, num=PREFIX_CAP)
        ids = list(dict.fromkeys(_text(member).rsplit(_SEP, 1)[-1] for member in lex))
        wanted = [keys.dead_letter_ix(self._prefix, "word", w) for w in words(q)]
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(name)
        if wanted:
            pipe.zinterstore(name, wanted, aggregate="MAX")
        if ids:
            scores: Any = self._redis.zmscore(keys.dead_letter_index(self._prefix), ids)
            found = {k: s for k, s in zip(ids, scores, strict=True) if s is not None}
            if found:
                pipe.zadd(name, found)
        pipe.pexpire(name, SEARCH_TTL_MS)
        pipe.execute()
        return name

    def source_for(self, flt: DeadLetterFilter) -> tuple[str, bool]:
        """The zset to scan for `flt`, and whether it alone (with times) decides the filter;
        the index is brought up to date first when the filter needs one of its zsets."""
        given = {"reason": flt.reason, "type": flt.type, "client": flt.client}
        given["source"] = flt.source
        dims = {dim: value for dim, value in given.items() if value is not None}
        rest = (flt.status, flt.step)
        alone = len(dims) + (flt.search is not None) <= 1 and all(v is None for v in rest)
        if not dims and flt.search is None:
            return keys.dead_letter_index(self._prefix), alone
        try:
            self.sync()
        except NoPermissionError:  # a read-only user (saw-reader) and an index behind: scan all
            return keys.dead_letter_index(self._prefix), False
        pipe = self._redis.pipeline(transaction=False)
        names = [keys.dead_letter_ix(self._prefix, dim, value) for dim, value in dims.items()]
        if flt.search is not None:
            names.append(self.search_source(flt.search))
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zcard(name)
        sizes = pipe.execute()
        return min(zip(sizes, names, strict=True))[1], alone

    def clusters(self) -> list[str]:
        raw: Any = self._redis.smembers(keys.dead_letter_ix_clusters(self._prefix))
        return sorted(_text(name) for name in raw)

    def cluster_key(self, name: str) -> str:
        return keys.dead_letter_ix(self._prefix, "cluster", name)

    def forget_cluster(self, name: str) -> None:
        self._redis.srem(keys.dead_letter_ix_clusters(self._prefix), name)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
