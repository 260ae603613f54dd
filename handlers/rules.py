"""Rules shared by every handler: the username rule, event-time ordering and the churn gate."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

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


def newer(time: dt.datetime, last: dt.datetime | None) -> bool:
    """True when an event at `time` is newer than the last applied change of that field."""
    return last is None or time > last


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
