"""Rules shared by every handler: the username rule, event ordering and the churn gate."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from handlers.events import Event
from handlers.order import later, tie_of
from handlers.outcomes import Outcome
from handlers.plan import ClientState, Lifecycle, Skip, Wait

_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
# Source of the corrective events `subaccount-worker reconcile --fix` enqueues after an operator
# confirmed them: they re-assert what was recorded (re-delete, re-create) where others are skipped.
RECONCILE_SOURCE = "urn:subaccount-worker:reconcile"


@dataclass(frozen=True)
class Context:
    """What a handler may know besides the event and the client: facts of the deployment."""

    needs_password: bool  # the v6 surface requires a password at creation; v5 mails a link


def username_for(client_id: str) -> str:
    """Derive a subaccount username from a client id: readable, valid and collision-resistant.

    Lower-case the id, turn each run of other characters into '-', keep at most 40 characters,
    then append '-' and the first 8 hex digits of the id's SHA-256 ("Acme Corp" →
    "acme-corp-<hash8>"). Two ids that read alike still get different usernames.
    """
    readable = _NOT_ALLOWED.sub("-", client_id.lower()).strip("-")[:40].strip("-") or "client"
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def newer(event: Event, state: ClientState, field: str) -> bool:
    """True when `event` comes after the event that last set `field` of the client (`email`,
    `credit_type`, `recurring`, `status`, `churned`) in the total order of `handlers.order`."""
    return later(event, getattr(state, f"{field}_at"), getattr(state, f"{field}_tie"))


def stamped(event: Event, fields: Iterable[str]) -> dict[str, Any]:
    """The state update recording that `event` set `fields`: its time and its tie-break."""
    stamp: dict[str, Any] = {}
    for field in fields:
        stamp[f"{field}_at"] = event.time
        stamp[f"{field}_tie"] = tie_of(event)
    return stamp


def gate(state: ClientState) -> Wait | Skip | None:
    """Events other than onboarding wait for an unknown client and are ignored after churn."""
    if state.lifecycle == Lifecycle.UNKNOWN:
        return Wait()
    if state.lifecycle == Lifecycle.CHURNED:
        return Skip(outcome=Outcome.IGNORED, reason="client churned: its subaccount was deleted")
    return None


def known_username(state: ClientState) -> str:
    """The username of an onboarded client (the gate guarantees there is one)."""
    if state.username is None:
        raise ValueError(f"client {state.client_id!r} is {state.lifecycle} but has no username")
    return state.username
