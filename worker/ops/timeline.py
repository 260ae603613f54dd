"""The story of one event (`events show`) and of one client (`clients show`).

A client's timeline is the list `{p}:timeline:{client}` (newest first, capped): the pipeline
pushes each outcome record of the client's events there in its finishing scripts, and the
operators' jobs push their entries (replayed, purged, resolved) in their transactions. Where that
list is empty (records older than it, or written before it existed), the outcome stream is
scanned instead (bounded by its cap). Each item is completed with its event's ledger: the steps
and the API results they recorded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker import keys
from worker.log import redactor
from worker.ops.filters import DeadLetterFilter, InvalidInput, rfc3339
from worker.ops.listing import DeadLetterView, get_letters, list_dead_letters
from worker.ops.outcomes import decode_entry
from worker.pipeline.ledger import OUTCOME_FIELD
from worker.pipeline.outcomes import DeadLetter

SCAN_BATCH = 2000
OPERATOR_KINDS = ("replayed", "purged", "resolved")


@dataclass(frozen=True)
class TimelineItem:
    """One line of a client's (or an event's) story, newest first."""

    event_id: str
    type: str
    time: str | None
    outcome: str  # applied, duplicate, ..., or an operator's replayed / purged / resolved
    key: str = ""
    reason: str = ""
    steps: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # step → API result (the ledger's)
    attempt: int | None = None
    replay: int = 0
    invoice_id: str | None = None
    amount: int | None = None
    operator: str | None = None
    job_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClientStory:
    """`clients show --json` (pinned: client_id, state, timeline)."""

    client_id: str
    state: dict[str, Any] | None
    timeline: list[TimelineItem]
    dead_letters: list[DeadLetterView]
    source: str  # "timeline" (the per-client list) or "outcome stream" (a scan)

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "state": self.state,
            "timeline": [item.to_json() for item in self.timeline],
            "dead_letters": [letter.to_json() for letter in self.dead_letters],
            "source": self.source,
        }


@dataclass(frozen=True)
class StepView:
    name: str
    state: str
    at: str | None
    owner: str
    result: dict[str, Any]
    evidence: dict[str, Any]


@dataclass(frozen=True)
class EventStory:
    """`events show --json`."""

    event_id: str
    key: str
    client_id: str
    type: str
    envelope: dict[str, Any] | None  # redacted; kept only while a dead letter holds it
    steps: list[StepView]
    finished: str | None  # how the ledger says it ended
    deliveries: int  # of the attempt run under way (0 once it ended: see `attempts`)
    outcomes: list[TimelineItem]  # newest first, operator entries included
    dead_letter: DeadLetterView | None
    replays: int

    @property
    def attempts(self) -> int | None:
        """Attempts it took, as its last ending (or its dead letter) says."""
        if self.dead_letter is not None:
            return self.dead_letter.attempts
        made = [item.attempt for item in self.outcomes if item.attempt]
        return made[0] if made else None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["attempts"] = self.attempts
        out["dead_letter"] = self.dead_letter.to_json() if self.dead_letter else None
        return out


def event_key(source: str, event_id: str) -> str:
    """The dedupe key of an event (as `handlers.events` computes it from source and id)."""
    return hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:32]


def client_story(client: redis.Redis, prefix: str, client_id: str) -> ClientStory:
    """What is known of `client_id` and its timeline, newest first."""
    raw_state: Any = client.get(keys.client(prefix, client_id))
    rows: list[Any] = client.lrange(keys.timeline(prefix, client_id), 0, -1)
    records = [json.loads(row) for row in rows]
    source = "timeline"
    if not any(r.get("kind", "outcome") not in OPERATOR_KINDS for r in records):
        source = "outcome stream"
        scanned = scan_outcomes(client, prefix, client_id=client_id)
        records = _merge(records, scanned)
    timeline = _items(client, prefix, records)
    letters = _client_letters(client, prefix, client_id)
    state = json.loads(raw_state) if raw_state else None
    return ClientStory(client_id, state, timeline, letters, source)


def event_story(
    client: redis.Redis, prefix: str, event_id: str, source: str | None = None
) -> EventStory:
    """Everything known of one event; InvalidInput if unknown or ambiguous without `source`."""
    found = scan_outcomes(client, prefix, event_id=event_id) if source is None else []
    if source is not None:
        key = event_key(source, event_id)
    else:
        found_keys = sorted({str(r.get("key", "")) for r in found}) or _dead_letter_keys(
            client, prefix, event_id
        )
        if not found_keys:
            raise InvalidInput(
                f"no event {event_id!r} is known: not in the outcome stream (its newest "
                "entries) nor among the dead letters; check the id (`dead-letters list "
                "--search` finds one by invoice or client)"
            )
        if len(found_keys) > 1:
            raise InvalidInput(
                f"event id {event_id!r} has {len(found_keys)} sources: give --source"
            )
        key = found_keys[0]
    letter = get_letters(client, prefix, [key]).get(key)
    client_id = _client_of(found, letter)
    if source is not None and client_id is None:
        found = scan_outcomes(client, prefix, event_id=event_id)
        client_id = _client_of(found, letter)
    if client_id is None:
        raise InvalidInput(f"no event {event_id!r} from {source!r} is known")
    records = [r for r in client.lrange(keys.timeline(prefix, client_id), 0, -1)]
    mine = [json.loads(r) for r in records if json.loads(r).get("key") == key]
    items = _items(client, prefix, _merge(mine, [r for r in found if r.get("key") == key]))
    return _story(client, prefix, event_id, key, client_id, letter, items)


def _dead_letter_keys(client: redis.Redis, prefix: str, event_id: str) -> list[str]:
    """The keys of the dead letters of this exact event id (the operators' search index)."""
    flt = DeadLetterFilter.parse(search=event_id)
    page = list_dead_letters(client, prefix, flt, limit=10)
    return sorted({item.id for item in page.items if item.event_id == event_id})


def _story(
    client: redis.Redis,
    prefix: str,
    event_id: str,
    key: str,
    client_id: str,
    letter: DeadLetter | None,
    items: list[TimelineItem],
) -> EventStory:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.ledger(prefix, key))
    pipe.get(keys.deliveries(prefix, key))
    pipe.hget(keys.replays(prefix), key)
    ledger, deliveries, replays = pipe.execute()
    steps: list[StepView] = []
    finished = None
    for name, value in sorted((_text(k), v) for k, v in ledger.items()):
        record = json.loads(value)
        if name == OUTCOME_FIELD:
            finished = record.get("outcome") if isinstance(record, dict) else str(record)
            continue
        steps.append(StepView(name, record.get("state", ""), rfc3339(record.get("at_ms")),
                              record.get("owner", ""), record.get("result") or {},
                              record.get("evidence") or {}))  # fmt: skip
    types = [i.type for i in items if i.type]
    return EventStory(
        event_id=event_id,
        key=key,
        client_id=client_id,
        type=letter.event_type if letter else (types[0] if types else ""),
        envelope=redactor.scrub(letter.event) if letter else None,
        steps=steps,
        finished=finished,
        deliveries=int(deliveries or 0),
        outcomes=items,
        dead_letter=DeadLetterView.of(letter) if letter else None,
        replays=int(replays or 0),
    )


def scan_outcomes(
    client: redis.Redis,
    prefix: str,
    *,
    client_id: str | None = None,
    event_id: str | None = None,
) -> list[dict[str, Any]]:
    """Outcome records of one client or one event id, newest first, from the capped stream."""
    found: list[dict[str, Any]] = []
    high = "+"
    while True:
        rows: Any = client.xrevrange(keys.outcomes(prefix), high, "-", count=SCAN_BATCH)
        if not rows:
            return found
        for _entry_id, fields in rows:
            record = decode_entry(fields)
            if client_id is not None and record.get("client_id") != client_id:
                continue
            if event_id is not None and record.get("event_id") != event_id:
                continue
            found.append(record)
        high = f"({_text(rows[-1][0])}"


def _merge(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both lists' records once each, newest first."""
    seen: set[tuple[Any, ...]] = set()
    merged: list[dict[str, Any]] = []
    for record in first + second:
        ident = (record.get("key"), record.get("kind", "outcome"), record.get("outcome"),
                 record.get("at_ms"))  # fmt: skip
        if ident not in seen:
            seen.add(ident)
            merged.append(record)
    return sorted(merged, key=lambda r: int(r.get("at_ms") or 0), reverse=True)


def _items(client: redis.Redis, prefix: str, records: list[dict[str, Any]]) -> list[TimelineItem]:
    """Timeline items from records (newest first), with each event's API results."""
    event_keys = sorted({str(r.get("key", "")) for r in records if r.get("key")})
    pipe = client.pipeline(transaction=False)
    for key in event_keys:
        pipe.hgetall(keys.ledger(prefix, key))
    results = {key: _results(raw) for key, raw in zip(event_keys, pipe.execute(), strict=True)}
    replayed: dict[str, int] = {}
    items: list[TimelineItem] = []
    for record in reversed(records):  # oldest first, to number the replays
        key = str(record.get("key", ""))
        kind = str(record.get("kind", "outcome"))
        if kind == "replayed":
            replayed[key] = replayed.get(key, 0) + 1
        items.append(_item(record, kind, results.get(key, {}), replayed.get(key, 0)))
    return list(reversed(items))


def _item(record: dict[str, Any], kind: str, results: dict[str, Any], replays: int) -> TimelineItem:
    operator = kind in OPERATOR_KINDS
    steps = record.get("steps") or {}
    return TimelineItem(
        event_id=str(record.get("event_id", "")),
        type=str(record.get("event_type", "")),
        time=rfc3339(int(record.get("at_ms") or 0) or None),
        outcome=kind if operator else str(record.get("outcome", "")),
        key=str(record.get("key", "")),
        reason=str(record.get("reason") or ""),
        steps=steps if isinstance(steps, dict) else {},
        results={} if operator else {k: v for k, v in results.items() if k in steps},
        attempt=None if operator else _int(record.get("attempt")),
        replay=_int(record.get("replay")) or (0 if operator else replays),
        invoice_id=record.get("invoice_id") or None,
        amount=_int(record.get("amount")),
        operator=record.get("operator") if operator else None,
        job_id=record.get("job_id") if operator else None,
    )


def _results(raw: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        step = _text(name)
        if step != OUTCOME_FIELD:
            out[step] = json.loads(value).get("result") or {}
    return out


def _client_letters(client: redis.Redis, prefix: str, client_id: str) -> list[DeadLetterView]:
    return list_dead_letters(client, prefix, DeadLetterFilter(client=client_id), limit=200).items


def _client_of(found: list[dict[str, Any]], letter: DeadLetter | None) -> str | None:
    if letter is not None:
        return letter.client_id
    for record in found:
        if record.get("client_id"):
            return str(record["client_id"])
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
