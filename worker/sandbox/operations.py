"""The eight operations as both surfaces perform them: state call in, wire object out.

Routers only translate their wire format into these calls; v5 and v6 differ only in the keys of
recurring settings, which they pass in as `render`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from worker.sandbox.fields import ListQuery, WireArgs, parse
from worker.sandbox.model import CreditType, Recurring
from worker.sandbox.state import SandboxState
from worker.sandbox.wire import (
    CreditBalanceOut,
    CreditDetailsOut,
    DeletedOut,
    ListOut,
    subaccount_out,
)

RenderRecurring = Callable[[Recurring], BaseModel]


@dataclass(frozen=True)
class Outcome:
    """A successful answer: its data, status, whether state changed and credits moved."""

    data: BaseModel
    status: int = 200
    applied: bool = True
    amount: int | None = None


Apply = Callable[[SandboxState], Outcome]


def credits_operation(values: Mapping[str, Any]) -> str:
    """The journal name of a credits call: `remove_credits` for "decrease", else `add_credits`."""
    return "remove_credits" if values.get("action") == "decrease" else "add_credits"


def create(
    state: SandboxState,
    username: str,
    email: str,
    credit_type: str,
    password: str | None,
    status: int = 200,
) -> Outcome:
    """Create a subaccount (v6 answers 201, v5 200)."""
    account = state.create(username, email, CreditType(credit_type), password)
    return Outcome(subaccount_out(account), status=status)


def update(
    state: SandboxState,
    username: str,
    email: str | None,
    credit_type: str | None,
    password: str | None,
) -> Outcome:
    """Change a subaccount's email, credit type and/or password."""
    kind = CreditType(credit_type) if credit_type is not None else None
    return Outcome(subaccount_out(state.update(username, email, kind, password)))


def change_credits(
    state: SandboxState, username: str, action: Literal["increase", "decrease"], amount: int
) -> Outcome:
    """Move credits between the master and a subaccount."""
    balance = state.change_credits(username, action, amount)
    return Outcome(CreditBalanceOut(username=username, balance=balance), amount=amount)


def set_recurring(
    state: SandboxState, username: str, recurring: Recurring, render: RenderRecurring
) -> Outcome:
    """Store a subaccount's recurring allocation."""
    return Outcome(render(state.set_recurring(username, recurring)))


def set_disabled(state: SandboxState, username: str, disabled: bool) -> Outcome:
    """Disable or enable a subaccount."""
    return Outcome(subaccount_out(state.set_disabled(username, disabled)))


def delete(state: SandboxState, username: str) -> Outcome:
    """Delete a subaccount; its balance goes back to the master."""
    returned = state.delete(username)
    return Outcome(DeletedOut(username=username, returned_credits=returned), amount=returned)


def list_page(state: SandboxState, limit: int, offset: int) -> Outcome:
    """One page of subaccounts in creation order."""
    accounts, total = state.page(limit, offset)
    page = ListOut(
        subaccounts=[subaccount_out(a) for a in accounts], total=total, limit=limit, offset=offset
    )
    return Outcome(page, applied=False)


def credit_details(state: SandboxState, username: str, render: RenderRecurring) -> Outcome:
    """A subaccount with its balance, credits used and recurring settings (sandbox-defined)."""
    account = state.view(username)
    recurring = render(account.recurring) if account.recurring is not None else None
    details = CreditDetailsOut[BaseModel](
        **subaccount_out(account).model_dump(),
        balance=account.balance,
        used=account.used,
        recurring=recurring,
    )
    return Outcome(details, applied=False)


def paged(args: WireArgs) -> Apply:
    """The effect of a list call on either surface: parse the paging query, then one page."""

    def apply(state: SandboxState) -> Outcome:
        query = parse(ListQuery, args)
        return list_page(state, query.limit, query.offset)

    return apply
