"""Sandbox-only admin routes (no auth): reset, journal, faults, state access, sending, top-ups
out of band, health."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from worker.sandbox.core import Sandbox, sandbox_of
from worker.sandbox.failures import ApiFailure, invalid
from worker.sandbox.faults import FaultConfig, OperationName
from worker.sandbox.fields import MAX_AMOUNT, CreditTypeName, Email, Username
from worker.sandbox.journal import JournalEntry
from worker.sandbox.model import CreditType
from worker.sandbox.sending import SendingConfig, SendingStatus
from worker.sandbox.state import Account
from worker.sandbox.v6 import RecurringBody
from worker.sandbox.wire import RecurringOut, error_responses, recurring_out

TAG = "sandbox admin"
router = APIRouter(prefix="/_sandbox", tags=[TAG])


class AccountState(BaseModel):
    """A subaccount as the sandbox holds it (recurring with v6 keys; never the password)."""

    username: str
    email: str
    credit_type: CreditTypeName
    disabled: bool
    balance: int
    used: int = Field(description="credits consumed by sending mail (defined by the sandbox)")
    recurring: RecurringOut | None
    created_seq: int = Field(
        description="creation order (a counter of the state, not a journal seq)"
    )
    has_password: bool


class StateOut(BaseModel):
    """The master account and every subaccount, keyed by username."""

    master_active: bool
    master_balance: int
    subaccounts: dict[str, AccountState]


class AccountPatch(BaseModel):
    """Fields to set on one subaccount; a new one needs `email`. Passwords are not accepted."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    credit_type: CreditTypeName | None = None
    disabled: StrictBool | None = None
    balance: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)] | None = None
    used: Annotated[StrictInt, Field(ge=0)] | None = None
    recurring: RecurringBody | None = None

    def fields(self) -> dict[str, Any]:
        """The state fields to set, converted to the state's types."""
        values: dict[str, Any] = {k: getattr(self, k) for k in self.model_fields_set}
        if "credit_type" in values and values["credit_type"] is not None:
            values["credit_type"] = CreditType(values["credit_type"])
        if values.get("recurring") is not None:
            values["recurring"] = values["recurring"].settings()
        return {k: v for k, v in values.items() if v is not None or k == "recurring"}


class StatePatch(BaseModel):
    """Direct state changes for tests: master flag and balance, subaccount upserts and deletes."""

    model_config = ConfigDict(extra="forbid")

    master_active: StrictBool | None = None
    master_balance: Annotated[StrictInt, Field(ge=0)] | None = None
    subaccounts: dict[Username, AccountPatch | None] = Field(
        default_factory=dict, description="null deletes (credits return to the master)"
    )


def _account_state(account: Account) -> AccountState:
    return AccountState(
        username=account.username,
        email=account.email,
        credit_type=account.credit_type.value,
        disabled=account.disabled,
        balance=account.balance,
        used=account.used,
        recurring=recurring_out(account.recurring) if account.recurring else None,
        created_seq=account.created_seq,
        has_password=account.password_sha256 is not None,
    )


def _state(request: Request) -> StateOut:
    sandbox = sandbox_of(request)
    sandbox.sending.advance(sandbox.state)
    active, balance, accounts = sandbox.state.snapshot()
    subaccounts = {a.username: _account_state(a) for a in accounts}
    return StateOut(master_active=active, master_balance=balance, subaccounts=subaccounts)


@router.post("/reset", summary="Reset the sandbox")
async def reset(request: Request) -> dict[str, str]:
    """Empty state and journal, faults back to the start config, master active at start balance."""
    sandbox_of(request).reset()
    return {"status": "ok"}


@router.get(
    "/journal",
    summary="Read the effect journal",
    response_model=list[JournalEntry],
    responses=error_responses(400),
)
async def journal(
    request: Request,
    operation: OperationName | None = None,
    username: str | None = None,
    since_seq: Annotated[int | None, Query(ge=0)] = None,
) -> list[JournalEntry]:
    """Every state-changing API call in order (failed and fault-injected ones included)."""
    return sandbox_of(request).journal.entries(operation, username, since_seq)


@router.get("/faults", summary="Read the fault configuration")
async def get_faults(request: Request) -> FaultConfig:
    """The live fault configuration; `*_next` counters show what is left of them."""
    return sandbox_of(request).faults.current()


@router.put("/faults", summary="Replace the fault configuration", responses=error_responses(400))
async def put_faults(request: Request, config: FaultConfig) -> FaultConfig:
    """Replace the whole configuration (counters, RNG seed, rate-limit bucket); the new config."""
    return sandbox_of(request).faults.replace(config)


@router.get("/state", summary="Read the state")
async def get_state(request: Request) -> StateOut:
    """Master account and every subaccount with its balance and recurring settings."""
    return _state(request)


@router.put("/state", summary="Set state directly", responses=error_responses(400))
async def put_state(request: Request, patch: StatePatch) -> StateOut:
    """Set the master, upsert or delete subaccounts (all or nothing), unjournaled; the new state."""
    sandbox = sandbox_of(request)
    state = sandbox.state
    with state.lock:
        sandbox.sending.advance(state)
        state.upsert(
            {name: None if p is None else p.fields() for name, p in patch.subaccounts.items()}
        )
        state.set_master(patch.master_active, patch.master_balance)
    return _state(request)


@router.get("/sending", summary="Read the mail sending")
async def get_sending(request: Request) -> SendingStatus:
    """The sending rate and seed, and the emails sent and refused since the last reset."""
    sandbox = sandbox_of(request)
    with sandbox.state.lock:
        sandbox.sending.advance(sandbox.state)
        return sandbox.sending.status()


@router.put("/sending", summary="Set the mail sending", responses=error_responses(400))
async def put_sending(request: Request, config: SendingConfig) -> SendingStatus:
    """Enabled `one_time_credit` subaccounts send `emails_per_s` in total (0 stops); seeded."""
    sandbox = sandbox_of(request)
    return sandbox.sending.configure(sandbox.state, config)


class TopUp(BaseModel):
    """A change of a subaccount's credits that no API call made: recurring credits coming due,
    or a person in the provider's dashboard. Journaled `top_up` (surface `sandbox`)."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    amount: Annotated[StrictInt, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)] | None = Field(
        None, description="credits to add (negative: remove); omitted: its recurring amount"
    )
    after_ms: Annotated[StrictInt, Field(ge=0, le=600_000)] = Field(
        0, description="apply this long from now (answered at once: 'scheduled')"
    )


def top_up_now(sandbox: Sandbox, top_up: TopUp) -> JournalEntry:
    """Move the credits (from or to the master, as the dashboard does) and journal it."""
    state = sandbox.state
    with state.lock:
        sandbox.sending.advance(state)
        account = state.view(top_up.username)
        amount = top_up.amount
        if amount is None:
            if account.recurring is None:
                raise invalid("amount: the subaccount has no recurring credits to come due")
            amount = account.recurring.amount
        if amount == 0:
            raise invalid("amount: must not be 0")
        if amount > 0:
            balance = state.change_credits(top_up.username, "increase", amount)
        else:
            balance = state.change_credits(top_up.username, "decrease", -amount)
        return sandbox.journal.append(
            surface="sandbox",
            operation="top_up",
            username=top_up.username,
            status=200,
            applied=True,
            amount=amount,
            args={"amount": amount, "out_of_band": True},
            fault=None,
            result={"username": top_up.username, "balance": balance},
        )


def _top_up_later(sandbox: Sandbox, top_up: TopUp) -> None:
    with contextlib.suppress(ApiFailure):  # the subaccount went away meanwhile: nothing to do
        top_up_now(sandbox, top_up)


@router.post("/top_up", summary="Top up out of band", responses=error_responses(400, 404))
async def top_up(request: Request, body: TopUp) -> dict[str, Any]:
    """Change a subaccount's credits as no API call does (recurring credits due, a dashboard
    user): now (the journal entry), or `after_ms` from now (`{"status": "scheduled"}`)."""
    sandbox = sandbox_of(request)
    if body.after_ms:
        asyncio.get_running_loop().call_later(body.after_ms / 1000, _top_up_later, sandbox, body)
        return {"status": "scheduled"}
    return top_up_now(sandbox, body).model_dump()


@router.get("/health", summary="Health check")
async def health() -> dict[str, str]:
    """Always ok while the server runs."""
    return {"status": "ok"}
