"""Drift between what the pipeline recorded of each client and what the API reports: pure code.

| kind | we recorded | the API says | fix (through the pipeline) |
|---|---|---|---|
| `missing` | active or suspended | no such subaccount | `client.onboarded` (2) |
| `unexpected_disabled` | active | disabled | `client.reactivated` |
| `unexpected_enabled` | suspended | enabled | `client.suspended` |
| `churned_still_exists` | churned | it exists | `client.churned` again (delete) |
| `credit_type_mismatch` | credit type A | credit type B | `client.updated` with A |
| `unmanaged` | nothing | it exists | never touched |

(2) Only with `--recreate-missing`: re-created under its username, without credits.

A corrective event is a catalogue event from `RECONCILE_SOURCE` at the current time; before it is
offered, the handlers decide it against the recorded state, so an event they would skip (a newer
change is recorded) is reported as not fixable instead of being sent for nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from handlers import Context, decide
from handlers.events import EventType, parse_event
from handlers.plan import Apply, ClientState, Lifecycle
from handlers.rules import RECONCILE_SOURCE
from worker.api.models import Subaccount


class DriftKind(StrEnum):
    MISSING = "missing"
    UNEXPECTED_DISABLED = "unexpected_disabled"
    UNEXPECTED_ENABLED = "unexpected_enabled"
    CHURNED_STILL_EXISTS = "churned_still_exists"
    UNMANAGED = "unmanaged"
    CREDIT_TYPE_MISMATCH = "credit_type_mismatch"


FIXABLE = frozenset(
    {
        DriftKind.UNEXPECTED_DISABLED,
        DriftKind.UNEXPECTED_ENABLED,
        DriftKind.CHURNED_STILL_EXISTS,
        DriftKind.CREDIT_TYPE_MISMATCH,
    }
)


@dataclass(frozen=True)
class Drift:
    """One difference: its kind, whose, what we recorded and what the API says."""

    kind: DriftKind
    client_id: str | None
    username: str
    recorded: dict[str, Any] = field(default_factory=dict)
    actual: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """Identity of this drift for deduplication: kind and username."""
        return f"{self.kind.value}:{self.username}"

    def fixable(self, recreate_missing: bool = False) -> bool:
        """Whether `--fix` may act on it (`missing` only when re-creation is asked for)."""
        return self.kind in FIXABLE or (recreate_missing and self.kind == DriftKind.MISSING)


def find_drift(states: Iterable[ClientState], actual: Mapping[str, Subaccount]) -> list[Drift]:
    """Every drift between the recorded client `states` and the API's subaccounts by username."""
    found: list[Drift] = []
    claimed: set[str] = set()
    for state in states:
        if state.username is None or state.lifecycle == Lifecycle.UNKNOWN:
            continue
        claimed.add(state.username)
        found.extend(_drift_of(state, actual.get(state.username)))
    for username, sub in actual.items():
        if username not in claimed:
            found.append(Drift(DriftKind.UNMANAGED, None, username, {}, _reading(sub)))
    return sorted(found, key=lambda d: (d.kind.value, d.username))


def _drift_of(state: ClientState, sub: Subaccount | None) -> list[Drift]:
    assert state.username is not None
    recorded = _recorded(state)

    def drift(kind: DriftKind) -> Drift:
        return Drift(kind, state.client_id, state.username or "", recorded, _reading(sub))

    if state.lifecycle == Lifecycle.CHURNED:
        return [drift(DriftKind.CHURNED_STILL_EXISTS)] if sub is not None else []
    if sub is None:
        return [drift(DriftKind.MISSING)]
    found = []
    if state.lifecycle == Lifecycle.ACTIVE and sub.disabled:
        found.append(drift(DriftKind.UNEXPECTED_DISABLED))
    if state.lifecycle == Lifecycle.SUSPENDED and not sub.disabled:
        found.append(drift(DriftKind.UNEXPECTED_ENABLED))
    if state.credit_type is not None and state.credit_type != sub.credit_type:
        found.append(drift(DriftKind.CREDIT_TYPE_MISMATCH))
    return found


def _recorded(state: ClientState) -> dict[str, Any]:
    return {
        "lifecycle": state.lifecycle.value,
        "credit_type": state.credit_type.value if state.credit_type else None,
        "email": state.email,
    }


def _reading(sub: Subaccount | None) -> dict[str, Any] | None:
    if sub is None:
        return None
    return {"disabled": sub.disabled, "credit_type": sub.credit_type.value, "email": sub.email}


# --- corrective events ----------------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """What `--fix` would do about one drift: the event to enqueue, or why there is none."""

    drift: Drift
    event: dict[str, Any] | None
    note: str


def plan_fix(drift: Drift, state: ClientState | None, ctx: Context, now: dt.datetime) -> Fix:
    """The corrective event for `drift`, checked against the handlers; or the reason for none."""
    if state is None or drift.client_id is None:
        return Fix(drift, None, "unmanaged: reported, never touched")
    event = _corrective(drift, state, now)
    if event is None:
        return Fix(drift, None, "nothing recorded to restore")
    decision = decide(parse_event(event), state, ctx)
    if not isinstance(decision, Apply):
        why = getattr(decision, "reason", decision.decision)
        return Fix(drift, None, f"the pipeline would not apply it: {why}")
    steps = ", ".join(step.kind for step in decision.steps)
    return Fix(drift, event, f"{event['type']} → {steps}")


def _corrective(drift: Drift, state: ClientState, now: dt.datetime) -> dict[str, Any] | None:
    data: dict[str, Any] = {"reason": f"reconcile: {drift.kind.value}"}
    match drift.kind:
        case DriftKind.UNEXPECTED_DISABLED:
            kind = EventType.REACTIVATED
        case DriftKind.UNEXPECTED_ENABLED:
            kind = EventType.SUSPENDED
        case DriftKind.CHURNED_STILL_EXISTS:
            kind = EventType.CHURNED
        case DriftKind.CREDIT_TYPE_MISMATCH:
            if state.credit_type is None:
                return None
            kind, data = EventType.UPDATED, {"credit_type": state.credit_type.value}
        case DriftKind.MISSING:
            if state.email is None or state.credit_type is None:
                return None
            kind = EventType.ONBOARDED
            data = {
                "username": state.username,
                "email": state.email,
                "credit_type": state.credit_type.value,
            }
        case DriftKind.UNMANAGED:
            return None
    stamp = now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    digest = hashlib.sha256(f"{drift.key}\n{stamp}".encode()).hexdigest()[:12]
    return {
        "specversion": "1.0",
        "id": f"reconcile-{drift.kind.value}-{digest}",
        "source": RECONCILE_SOURCE,
        "subject": state.client_id,
        "type": kind.value,
        "time": stamp,
        "datacontenttype": "application/json",
        "data": data,
    }
