"""Reconcile: what the pipeline recorded against what the API says, explained, and fixed by events.

`find` lists the drift (see `worker.credits.drift` for the kinds) with the client's latest
timeline entries and its last known balance as explanation; `plan` turns the fixable items into
corrective events checked against the handlers and says of every other item why it is skipped
(a missing subaccount names the credits it held); with `restore_credits`, a re-created
subaccount also gets its last known balance back as an `invoice.paid` grant through the
pipeline, its invoice id derived from the snapshot so a second run cannot grant it twice;
`apply` enqueues them through the normal pipeline and audits what it did and what it skipped.
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

from handlers import Context, decide
from handlers.events import parse_event
from handlers.plan import Apply, ClientState
from handlers.rules import RECONCILE_SOURCE
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
RESTORE_PREFIX = "reconcile-restore-"
RESTORE_WAIT_S = 30.0  # a restoring grant waits this long for its subaccount's re-create
RESTORE_POLL_S = 0.2


@dataclass(frozen=True)
class DriftItem:
    """One drift as reported: the difference, whether `--fix` may act, and what explains it."""

    drift: Drift
    fixable: bool
    explanation: list[dict[str, Any]] = field(default_factory=list)  # newest timeline entries
    last_balance: int | None = None  # credits at the last snapshot (what a `missing` one held)
    last_balance_at: float | None = None  # when that snapshot was read (epoch seconds)

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
            "last_balance_at": _rfc3339(self.last_balance_at),
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
    # A scan forgets a vanished subaccount's latest snapshot; its history keeps the last one.
    lost = [d.username for d in drift if d.username not in snapshots]
    for username, history in store.histories(lost).items():
        if history:
            snapshots[username] = history[0]
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
                last_balance_at=snap.read_at if snap else None,
            )
        )
    return items


def plan(
    found: Reconciliation,
    ctx: Context,
    now: dt.datetime | None = None,
    *,
    restore_credits: bool = False,
) -> list[Fix]:
    """For every item, in report order: its corrective event, or why it has none (`event` None:
    skipped, `note` says why). With `restore_credits`, each re-created subaccount is followed by
    the grant of its last known balance."""
    at = now or dt.datetime.now(dt.UTC)
    fixes: list[Fix] = []
    for item in found.items:
        state = found.states.get(item.drift.client_id or "")
        if not item.fixable:
            fixes.append(Fix(item.drift, None, skip_reason(item)))
            continue
        fix = plan_fix(item.drift, state, ctx, at)
        fixes.append(fix)
        if restore_credits and fix.event is not None and item.drift.kind == DriftKind.MISSING:
            fixes.append(restore_fix(item, state, ctx))
    return fixes


def skip_reason(item: DriftItem) -> str:
    """Why `--fix` leaves this item alone, with the credits at stake for a missing one."""
    d = item.drift
    if d.kind == DriftKind.MISSING:
        held = "" if item.last_balance is None else f" (last known balance {item.last_balance})"
        return f"missing at the API{held}: re-create with --recreate-missing --restore-credits"
    if d.kind == DriftKind.UNMANAGED:
        return "unmanaged: not ours, reported only"
    return f"{d.kind.value}: not fixable by an event"


def restore_fix(item: DriftItem, state: ClientState | None, ctx: Context) -> Fix:
    """The grant of a missing subaccount's last known balance, as an `invoice.paid` event whose
    invoice id names the snapshot (`restore:<username>:<read at>`): a business key, so the
    pipeline grants it once however often reconcile runs."""
    d = item.drift
    if not item.last_balance or item.last_balance_at is None or state is None:
        return Fix(d, None, "no last known balance to restore")
    invoice = f"restore:{d.username}:{int(item.last_balance_at)}"
    event = {
        "specversion": "1.0",
        "id": f"{RESTORE_PREFIX}{d.username}-{int(item.last_balance_at)}",
        "source": RECONCILE_SOURCE,
        "subject": state.client_id,
        "type": "invoice.paid",
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"invoice_id": invoice, "credits": item.last_balance},
    }
    decision = decide(parse_event(event), state, ctx)
    if not isinstance(decision, Apply):
        why = getattr(decision, "reason", decision.decision)
        return Fix(d, None, f"restore of {item.last_balance} credits refused: {why}")
    return Fix(d, event, f"invoice.paid → add_credits: restore {item.last_balance} credits")


def apply(
    fixes: Sequence[Fix],
    publisher: Publisher,
    client: redis.Redis,
    prefix: str,
    operator: str | None = None,
) -> list[Published]:
    """Enqueue the corrective events (a restoring grant once its re-create is applied) and
    audit what was enqueued, what was skipped and why, and the credits restored."""
    first = [fix for fix in fixes if fix.event is not None and not _is_restore(fix)]
    published = publisher.publish_many([f.event for f in first if f.event]) if first else []
    fixes = [*first, *[fix for fix in fixes if fix.event is None]] + [
        _after_recreate(fix, first, client, prefix, publisher, published)
        for fix in fixes
        if _is_restore(fix)
    ]
    skipped = [
        {"kind": fix.drift.kind.value, "username": fix.drift.username, "why": fix.note}
        for fix in fixes
        if fix.event is None
    ]
    restored = sum(
        int(fix.event["data"]["credits"])
        for fix in fixes
        if fix.event is not None and fix.event["type"] == "invoice.paid"
    )
    audit.record(
        client,
        prefix,
        "reconcile_fix",
        audit.operator_name(operator),
        ids=[p.event_id for p in published],
        result={
            "enqueued": len(published),
            "kinds": sorted({fix.drift.kind.value for fix in fixes if fix.event is not None}),
            "not_fixable": len(skipped),
            "skipped": skipped,
            "restored_credits": restored,
        },
    )
    return published


def _is_restore(fix: Fix) -> bool:
    return fix.event is not None and str(fix.event["id"]).startswith(RESTORE_PREFIX)


def _after_recreate(
    fix: Fix,
    first: Sequence[Fix],
    client: redis.Redis,
    prefix: str,
    publisher: Publisher,
    published: list[Published],
) -> Fix:
    """Publish a restoring grant once its subaccount's re-create is applied (a grant sent
    before would fail `not_found`); if it is not within `RESTORE_WAIT_S`, skip it and say so
    (running `--restore-credits` again is safe: one grant per snapshot)."""
    assert fix.event is not None
    recreate = next((f for f in first if f.drift == fix.drift and f.event is not None), None)
    if recreate is None or recreate.event is None:
        return Fix(fix.drift, None, "not restored: its re-create was not planned")
    ledger = keys.ledger(prefix, parse_event(recreate.event).key)
    deadline = time.monotonic() + RESTORE_WAIT_S
    while time.monotonic() < deadline:
        mark: Any = client.hget(ledger, "_outcome")
        if mark is not None:
            if json.loads(mark).get("outcome") != "applied":
                return Fix(fix.drift, None, "not restored: its re-create was not applied")
            published.extend(publisher.publish_many([fix.event]))
            return fix
        time.sleep(RESTORE_POLL_S)
    return Fix(fix.drift, None, f"not restored: re-create not applied within {RESTORE_WAIT_S:.0f}"
               " s; run --restore-credits again once it is (one grant per snapshot)")  # fmt: skip


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


def _rfc3339(at_s: float | None) -> str | None:
    if at_s is None:
        return None
    return dt.datetime.fromtimestamp(at_s, tz=dt.UTC).isoformat().replace("+00:00", "Z")


__all__ = ["DriftItem", "DriftKind", "Reconciliation", "apply", "find", "note_drift", "plan"]
