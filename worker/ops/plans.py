"""What a replay or purge would do, dead letter by dead letter, before anything changes.

For a replay the plan reads, for each dead letter: its ledger (steps already done: those the
dead letter carries, and the live ledger's where it has not expired), the client's state as
stored today, and the holder of each business key (an invoice granted by another event makes
this one a `duplicate`; the client's business keys answer once the owner keys expired); it
runs the pure `handlers.decide` on that state to list the calls the replay would make and the
credits it would grant. `ambiguous_outcome` and
`business_key_conflict` are refused without a resolution, an event that no longer validates is
refused always (send a fixed one). Each planned item keeps a digest of the record it was planned
from: the job replays exactly those records, and skips one that changed since (`worker.ops.jobs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import redis

from handlers import Context, decide
from handlers.errors import InvalidEvent
from handlers.events import Event, parse_event
from handlers.outcomes import Reason
from handlers.plan import (
    AddCredits,
    Apply,
    ClientState,
    Decision,
    Reject,
    Skip,
    Step,
    Wait,
    step_name,
)
from worker import keys
from worker.ops.filters import DeadLetterFilter
from worker.ops.listing import Record, get_records, matching_raw
from worker.pipeline.ledger import Ledger
from worker.pipeline.outcomes import DeadLetter

Action = Literal["replay", "purge"]
Resolve = Literal["applied", "not_applied"]
BATCH = 500
NEEDS_RESOLVE = {Reason.AMBIGUOUS_OUTCOME.value, Reason.BUSINESS_KEY_CONFLICT.value}


@dataclass(frozen=True)
class ItemPlan:
    """What will happen to one dead letter."""

    id: str
    event_id: str
    client_id: str
    type: str
    reason: str
    step: str | None = None  # where it stopped
    refused: str | None = None  # why it will not be replayed
    steps_done: list[str] = field(default_factory=list)
    duplicate: bool = False  # its grant was made by another report: recorded duplicate
    calls: list[str] = field(default_factory=list)  # API calls the replay would make
    credits: int = 0  # credits the replay would grant
    expect: str = ""  # applied, duplicate, superseded, ignored, waits, dead_letter, purged
    replay: int = 1  # the replay number the message will carry
    digest: str = ""  # of the record planned from

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """A replay or purge plan: the items to act on, those refused, and the ids not found."""

    action: Action
    filter: dict[str, Any]
    resolve: Resolve | None
    items: list[ItemPlan]
    missing: list[str] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict, repr=False, compare=False)

    @property
    def planned(self) -> list[ItemPlan]:
        return [item for item in self.items if item.refused is None]

    @property
    def refused(self) -> list[ItemPlan]:
        return [item for item in self.items if item.refused is not None]

    @property
    def credits(self) -> int:
        return sum(item.credits for item in self.planned)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "filter": self.filter,
            "resolve": self.resolve,
            "planned": len(self.planned),
            "refused": [{"id": i.id, "reason": i.refused} for i in self.refused],
            "missing": self.missing,
            "credits": self.credits,
            "items": [item.to_json() for item in self.items],
        }


@dataclass(frozen=True)
class Selection:
    """The dead letters an operator named (with their stored bytes), and the ids not found."""

    records: list[Record]
    missing: list[str] = field(default_factory=list)

    @property
    def letters(self) -> list[DeadLetter]:
        return [letter for letter, _raw in self.records]


def select(
    client: redis.Redis,
    prefix: str,
    *,
    ids: list[str] | None = None,
    flt: DeadLetterFilter | None = None,
) -> Selection:
    """The dead letters named by `ids`, or matching `flt` (none or an empty filter: all)."""
    if ids:
        found = get_records(client, prefix, ids)
        records = [found[i] for i in dict.fromkeys(ids) if i in found]
        return Selection(records, [i for i in ids if i not in found])
    return Selection(list(matching_raw(client, prefix, flt or DeadLetterFilter())))


def plan(
    client: redis.Redis,
    prefix: str,
    selection: Selection,
    *,
    action: Action = "replay",
    resolve: Resolve | None = None,
    ctx: Context | None = None,
    flt: DeadLetterFilter | None = None,
    previewed: Mapping[str, str] | None = None,
) -> Plan:
    """The plan for the selected dead letters (read-only: nothing changes). `previewed` (id →
    digest, from an earlier plan's items) refuses any dead letter that changed since that
    preview, so a confirmation acts on exactly what was shown (the console's two steps)."""
    items: list[ItemPlan] = []
    events: dict[str, Event] = {}
    chunks = [selection.records[i : i + BATCH] for i in range(0, len(selection.records), BATCH)]
    if action == "purge":
        items = [_purge_item(letter, raw) for chunk in chunks for letter, raw in chunk]
    # The next batch's reads run in a thread while this batch is decided.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ops-plan") as pool:
        reads = (
            pool.submit(_read, client, prefix, chunks[0]) if chunks and action == "replay" else None
        )
        for n, chunk in enumerate(chunks if reads is not None else []):
            assert reads is not None
            found = reads.result()
            if n + 1 < len(chunks):
                reads = pool.submit(_read, client, prefix, chunks[n + 1])
            items.extend(
                _plan_replays(client, prefix, chunk, found, resolve, ctx or Context(True), events)
            )
    if previewed is not None:
        items = [_as_previewed(item, previewed) for item in items]
    filter_json = flt.to_json() if flt else {}
    return Plan(action, filter_json, resolve, items, list(selection.missing), events)


def _as_previewed(item: ItemPlan, previewed: Mapping[str, str]) -> ItemPlan:
    if item.refused is None and previewed.get(item.id) != item.digest:
        return replace(item, refused="changed since the preview: preview again")
    return item


def digest(raw: str | bytes) -> str:
    """Identity of a record's exact bytes (Redis's `redis.sha1hex` gives the same)."""
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _base(letter: DeadLetter, raw: bytes) -> dict[str, Any]:
    return {
        "id": letter.key,
        "event_id": str(letter.event.get("id", "")),
        "client_id": letter.client_id,
        "type": letter.event_type,
        "reason": letter.reason,
        "step": letter.step,
        "digest": digest(raw),
    }


def _purge_item(letter: DeadLetter, raw: bytes) -> ItemPlan:
    return ItemPlan(**_base(letter, raw), expect="purged")


def _read(client: redis.Redis, prefix: str, records: list[Record]) -> list[Any]:
    """One round trip: the letters' ledgers, their clients' states and their replay counts."""
    letters = [letter for letter, _raw in records]
    clients = sorted({letter.client_id for letter in letters})
    pipe = client.pipeline(transaction=False)
    for letter in letters:
        pipe.hgetall(keys.ledger(prefix, letter.key))
    for client_id in clients:
        pipe.get(keys.client(prefix, client_id))
    pipe.hmget(keys.replays(prefix), [letter.key for letter in letters])
    replies = pipe.execute()
    states = {
        client_id: _state(raw, client_id)
        for client_id, raw in zip(clients, replies[len(letters) : -1], strict=True)
    }
    return [replies[: len(letters)], states, replies[-1]]


def _plan_replays(
    client: redis.Redis,
    prefix: str,
    records: list[Record],
    reads: list[Any],
    resolve: Resolve | None,
    ctx: Context,
    parsed: dict[str, Event],
) -> list[ItemPlan]:
    letters = [letter for letter, _raw in records]
    events: dict[str, Event | str] = {}
    for letter in letters:
        try:
            events[letter.key] = parsed[letter.key] = parse_event(letter.event)
        except InvalidEvent as exc:
            events[letter.key] = f"the event no longer validates ({exc}): send a fixed one"
    ledgers, states, replayed = reads
    decisions: dict[str, Decision | str] = {}
    for letter in letters:
        event = events[letter.key]
        decisions[letter.key] = (
            event if isinstance(event, str) else decide(event, states[letter.client_id], ctx)
        )
    owners = _owners(client, prefix, decisions, {e.key: e.client_id for e in letters})
    return [
        _replay_item(letter, raw, decisions[letter.key], ledger, owners, int(n or 0), resolve)
        for (letter, raw), ledger, n in zip(records, ledgers, replayed, strict=True)
    ]


def _state(raw: Any, client_id: str) -> ClientState:
    return ClientState.model_validate_json(raw) if raw else ClientState(client_id=client_id)


def _owners(
    client: redis.Redis,
    prefix: str,
    decisions: dict[str, Decision | str],
    clients: dict[str, str],
) -> dict[str, str | None]:
    """Holder of each business key the planned grants would claim: the owner key's, else the
    event in the client's business keys (`clients`: dead letter → its client)."""
    business: set[tuple[str, str]] = set()
    for key, decision in decisions.items():
        if isinstance(decision, Apply):
            business.update(
                (clients[key], s.business_key) for s in decision.steps if isinstance(s, AddCredits)
            )
    pairs = sorted(business)
    if not pairs:
        return {}
    pipe = client.pipeline(transaction=False)
    for client_id, name in pairs:
        pipe.get(keys.business(prefix, *name.split(":", 1)))
        pipe.hget(keys.business_keys(prefix, client_id), name)
    replies = pipe.execute()
    owners: dict[str, str | None] = {}
    for (_client_id, name), owner, kept in zip(pairs, replies[::2], replies[1::2], strict=True):
        owners[name] = _text(owner) if owner else _text(kept).split(" ")[0] if kept else None
    return owners


def _replay_item(
    letter: DeadLetter,
    raw: bytes,
    decision: Decision | str,
    raw_ledger: dict[Any, Any],
    owners: dict[str, str | None],
    replays: int,
    resolve: Resolve | None,
) -> ItemPlan:
    base = {**_base(letter, raw), "replay": replays + 1}
    if isinstance(decision, str):
        return ItemPlan(**base, refused=decision)
    refused = _refusal(letter, resolve)
    if refused:
        return ItemPlan(**base, refused=refused)
    ledger = Ledger.from_hash({**letter.ledger, **{_text(k): v for k, v in raw_ledger.items()}})
    done = {name for name in ledger.steps if ledger.is_done(name)}
    if letter.step and resolve == "applied":
        done.add(letter.step)
    elif letter.step and resolve == "not_applied":
        done.discard(letter.step)
    match decision:
        case Apply():
            return _apply_item(base, decision.steps, done, letter.key, owners)
        case Skip():
            return ItemPlan(**base, steps_done=sorted(done), expect=decision.outcome.value)
        case Wait():
            return ItemPlan(**base, steps_done=sorted(done), expect="waits for onboarding")
        case Reject():
            return ItemPlan(
                **base, steps_done=sorted(done), expect=f"dead_letter {decision.reason}"
            )


def _apply_item(
    base: dict[str, Any],
    steps: tuple[Step, ...],
    done: set[str],
    key: str,
    owners: dict[str, str | None],
) -> ItemPlan:
    calls: list[str] = []
    credits, duplicate = 0, False
    for step in steps:
        name = step_name(step)
        if name in done:
            continue
        if isinstance(step, AddCredits):
            owner = owners.get(step.business_key)
            if owner is not None and owner != key:
                duplicate = True
                continue
            credits += step.request.amount
        calls.append(name)
    expect = "duplicate" if duplicate and not calls else "applied"
    return ItemPlan(
        **base,
        steps_done=sorted(done),
        duplicate=duplicate,
        calls=calls,
        credits=credits,
        expect=expect,
    )


def _refusal(letter: DeadLetter, resolve: Resolve | None) -> str | None:
    if letter.reason == Reason.BUSINESS_KEY_CONFLICT and resolve != "applied":
        return (
            "business_key_conflict: settle the difference by hand, then purge it or replay "
            "it with --resolve applied"
        )
    if letter.reason == Reason.AMBIGUOUS_OUTCOME and resolve is None:
        return (
            "ambiguous_outcome: check the subaccount, then replay with "
            "--resolve applied|not_applied"
        )
    if resolve and not letter.step:
        return "stopped at no step: replay it without --resolve"
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
