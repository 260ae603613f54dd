"""What handlers return: the known state of a client, the steps of a plan, and the decision.

Every value here is immutable and JSON-serialisable, so the worker can store it and a test can
compare it. A step's `name` is unique within a plan; the ledger keys its record by it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from handlers.outcomes import Outcome, Reason
from handlers.requests import (
    ChangeCredits,
    CreateSubaccount,
    CreditType,
    Recurring,
    SetDisabled,
    SetRecurring,
    UpdateSubaccount,
)


class Lifecycle(StrEnum):
    UNKNOWN = "unknown"  # no onboarding applied yet
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CHURNED = "churned"  # tombstone: the subaccount was deleted


class ClientState(BaseModel):
    """What the worker knows of one client, with the event time each field was last set and
    that event's tie-break (`handlers.order`: rank, id, source) among events of the same time."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    lifecycle: Lifecycle = Lifecycle.UNKNOWN
    username: str | None = None
    email: str | None = None
    credit_type: CreditType | None = None
    recurring: Recurring | None = None
    email_at: dt.datetime | None = None
    credit_type_at: dt.datetime | None = None
    recurring_at: dt.datetime | None = None
    status_at: dt.datetime | None = None
    churned_at: dt.datetime | None = None
    email_tie: tuple[int, str, str] | None = None
    credit_type_tie: tuple[int, str, str] | None = None
    recurring_tie: tuple[int, str, str] | None = None
    status_tie: tuple[int, str, str] | None = None
    churned_tie: tuple[int, str, str] | None = None


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True)


class Create(_Step):
    kind: Literal["create"] = "create"
    request: CreateSubaccount
    generate_password: bool  # v6 needs one; the worker makes it and never stores it


class Update(_Step):
    kind: Literal["update"] = "update"
    request: UpdateSubaccount


class AddCredits(_Step):
    kind: Literal["add_credits"] = "add_credits"
    request: ChangeCredits
    business_key: str  # e.g. "invoice:INV-42": the grant happens once per key, whatever the event


class SetRecurringCredits(_Step):
    kind: Literal["set_recurring"] = "set_recurring"
    request: SetRecurring


class SetStatus(_Step):
    kind: Literal["set_status"] = "set_status"
    request: SetDisabled


class Delete(_Step):
    kind: Literal["delete"] = "delete"
    username: str


Step = Annotated[
    Create | Update | AddCredits | SetRecurringCredits | SetStatus | Delete,
    Field(discriminator="kind"),
]


def step_name(step: Step) -> str:
    """The ledger name of a step; a plan never holds two steps of one kind."""
    return step.kind


class Apply(BaseModel):
    """Run `steps` in order, then record `state`."""

    model_config = ConfigDict(frozen=True)
    decision: Literal["apply"] = "apply"
    steps: tuple[Step, ...]
    state: ClientState


class Skip(BaseModel):
    """Nothing to call: the event is `superseded` by a newer one or `ignored` (e.g. churned)."""

    model_config = ConfigDict(frozen=True)
    decision: Literal["skip"] = "skip"
    outcome: Literal[Outcome.SUPERSEDED, Outcome.IGNORED]
    reason: str


class Wait(BaseModel):
    """The client is not onboarded yet: try again later, up to the configured wait."""

    model_config = ConfigDict(frozen=True)
    decision: Literal["wait"] = "wait"
    reason: Literal["client_unknown"] = "client_unknown"


class Reject(BaseModel):
    """A human must look: dead-letter with `reason`."""

    model_config = ConfigDict(frozen=True)
    decision: Literal["reject"] = "reject"
    reason: Reason
    detail: str


Decision = Apply | Skip | Wait | Reject
