"""Reconcile: what the pipeline recorded against what the API says, explained, and fixed by events.

`find` lists the drift (see `worker.credits.drift` for the kinds) with the client's latest
timeline entries as explanation; `plan` turns the fixable items into corrective events checked
against the handlers; `apply` enqueues them through the normal pipeline and audits the action.
`note_drift` is what the monitor does after each scan: keep the open drift in Redis and notify
`subaccount.drift_detected` once per new item (an item that goes away and comes back is new).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from handlers import Context
from handlers.plan import ClientState
from worker import keys
from worker.api.client import SubaccountClient
from worker.credits.drift import Drift, DriftKind, Fix, find_drift, plan_fix
from worker.credits.notify import Notification, NotificationType, Notifier, logged
from worker.credits.scan import list_subaccounts
from worker.credits.store import CreditsStore, client_states
from worker.log import get_logger
from worker.ops import audit
from worker.pipeline.publish import Published, Publisher

log = get_logger(__name__)
EXPLANATION_ENTRIES = 3


@dataclass(frozen=True)
class DriftItem:
    """One drift as reported: the difference, whether `--fix` may act, and what explains it."""

    drift: Drift
    fixable: bool
    explanation: list[dict[str, Any]] = field(default_factory=list)  # newest timeline entries
    last_balance: int | None = None  # credits at the last snapshot (what a `missing` one held)

    def to_json(self) -> dict[str, Any]:
        d = self.drift
        return {
            "kind": d.kind.value,
            "client_id": d.client_id,
            "username": d.username,
            "fixable": self.fixable,
            "recorded": d.recorded,
            "actual": d.actual,
            "last_balance": self.last_balance,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Reconciliation:
    """The drift found, and the recorded client states it was judged against."""

    items: list[DriftItem]
    states: dict[str, ClientState]


def find(
    api: SubaccountClient,
    client: redis.Redis,
    prefix: str,
    *,
    page_size: int = 100,
    recreate_missing: bool = False,
) -> Reconciliation:
    """List the subaccounts, compare with the recorded clients, explain each difference."""
    states = client_states(client, prefix)
    listed = list_subaccounts(api, page_size)
    drift = find_drift(states, {sub.username: sub for sub in listed})
    return Reconciliation(
        items=explain(client, prefix, drift, recreate_missing),
        states={s.client_id: s for s in states},
    )


def explain(
    client: redis.Redis, prefix: str, drift: Sequence[Drift], recreate_missing: bool = False
) -> list[DriftItem]:
    """Attach to each drift its client's newest timeline entries and last known balance."""
    store = CreditsStore(client, prefix)
    snapshots = store.snapshots()
    pipe = client.pipeline(transaction=False)
    for d in drift:
        pipe.lrange(keys.timeline(prefix, d.client_id or ""), 0, EXPLANATION_ENTRIES - 1)
    rows = pipe.execute()
    items = []
    for d, row in zip(drift, rows, strict=True):
        snap = snapshots.get(d.username)
        items.append(
            DriftItem(
                drift=d,
                fixable=d.fixable(recreate_missing),
                explanation=[json.loads(entry) for entry in row] if d.client_id else [],
                last_balance=snap.balance if snap else None,
            )
        )
    return items


def plan(found: Reconciliation, ctx: Context, now: dt.datetime | None = None) -> list[Fix]:
    """The corrective event of each fixable item (or why it has none), in report order."""
    at = now or dt.datetime.now(dt.UTC)
    return [
        plan_fix(item.drift, found.states.get(item.drift.client_id or ""), ctx, at)
        for item in found.items
        if item.fixable
    ]


def apply(
    fixes: Sequence[Fix],
    publisher: Publisher,
    client: redis.Redis,
    prefix: str,
    operator: str | None = None,
) -> list[Published]:
    """Enqueue the corrective events (all or none) and audit the action."""
    events = [fix.event for fix in fixes if fix.event is not None]
    published = publisher.publish_many(events) if events else []
    audit.record(
        client,
        prefix,
        "reconcile_fix",
        audit.operator_name(operator),
        ids=[p.event_id for p in published],
        result={
            "enqueued": len(published),
            "kinds": sorted({fix.drift.kind.value for fix in fixes if fix.event is not None}),
            "not_fixable": len([fix for fix in fixes if fix.event is None]),
        },
    )
    return published


def note_drift(
    store: CreditsStore, notifier: Notifier, drift: Sequence[Drift], now: float
) -> list[Notification]:
    """Keep the open drift; notify each item not notified before (deduplicated by kind+user)."""
    previous = store.open_drift()
    records: dict[str, dict[str, Any]] = {}
    notes = []
    for d in drift:
        old = previous.get(d.key)
        first_seen = float(old["first_seen"]) if old else now
        records[d.key] = {
            "kind": d.kind.value,
            "client_id": d.client_id,
            "username": d.username,
            "first_seen": first_seen,
            "last_seen": now,
            "notified": True,
        }
        if old is None or not old.get("notified"):
            data = {**records[d.key], "recorded": d.recorded, "actual": d.actual}
            data.pop("notified")
            notes.append(
                Notification.make(
                    NotificationType.DRIFT_DETECTED, now, data, d.key, repr(first_seen)
                )
            )
    pipe = store.redis.pipeline(transaction=True)
    store.replace_drift(pipe, records)
    for note in notes:
        notifier.add(pipe, note)
    store.execute(pipe)
    logged(notes)
    return notes


def drift_recorder(client: redis.Redis, prefix: str) -> Callable[[str, str, str], None]:
    """The executor's drift observer: open a drift record (not yet notified) unless one is open.

    The monitor notifies it after its next scan. A Redis failure here is only logged: the next
    scan finds the same drift by itself.
    """

    def record(kind: str, client_id: str, username: str) -> None:
        now = time.time()
        item = {
            "kind": kind,
            "client_id": client_id,
            "username": username,
            "first_seen": now,
            "last_seen": now,
            "notified": False,
            "source": "pipeline",
        }
        try:
            client.hsetnx(keys.credit_drift(prefix), f"{kind}:{username}", json.dumps(item))
        except redis.RedisError as exc:
            log.warning("credits.drift_not_recorded", kind=kind, username=username, error=str(exc))

    return record


__all__ = ["DriftItem", "DriftKind", "Reconciliation", "apply", "find", "note_drift", "plan"]
