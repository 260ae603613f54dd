"""The v5 surface of the official `pepipost` 5.0.0 SDK (`api_key` header), plus credit details.

Paths, field names and the "monhtly" spelling are the SDK's. Response bodies, 409 and the
credit-details route are defined by the sandbox.
"""

from __future__ import annotations

from typing import Literal, Self

from fastapi import APIRouter, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, StrictStr, model_validator
from starlette.responses import Response

from worker.sandbox import operations as ops
from worker.sandbox.docs import SANDBOX_DEFINED, body_doc, query_doc
from worker.sandbox.fields import (
    Action,
    Amount,
    CreditTypeName,
    DatedModel,
    Disabled,
    Email,
    ListQuery,
    Password,
    RecurringAmount,
    RecurringFlag,
    RecurringStatus,
    Username,
    UsernameArg,
    WireArgs,
    WireModel,
    check_password,
    parse,
)
from worker.sandbox.model import Period, Recurring
from worker.sandbox.pipeline import Call, execute
from worker.sandbox.state import SandboxState
from worker.sandbox.wire import (
    CreditBalanceOut,
    CreditDetailsOut,
    DeletedOut,
    ListOut,
    SubaccountOut,
    Success,
    api_errors,
    read_body,
    read_query,
)

api_key_header = APIKeyHeader(name="api_key", auto_error=False, description="`api_key: <key>`")
router = APIRouter(prefix="/v5", tags=["v5"], dependencies=[Security(api_key_header)])
_ERRORS = api_errors(404)

V5Period = Literal["daily", "weekly", "monhtly"]  # sic: the SDK's enum; "monthly" is refused
_PERIODS: dict[str, Period] = {
    "daily": Period.DAILY,
    "weekly": Period.WEEKLY,
    "monhtly": Period.MONTHLY,
}
_V5_PERIODS: dict[Period, V5Period] = {
    Period.DAILY: "daily",
    Period.WEEKLY: "weekly",
    Period.MONTHLY: "monhtly",
}


class V5RecurringOut(BaseModel):
    """Recurring credit allocation with the SDK's keys (the response is defined by the sandbox)."""

    recurring_credit: int
    timeperiod: V5Period
    start_date: str | None
    end_date: str | None
    status: RecurringStatus


def v5_recurring_out(recurring: Recurring) -> V5RecurringOut:
    """The v5 wire view of recurring settings."""
    return V5RecurringOut(
        recurring_credit=recurring.amount,
        timeperiod=_V5_PERIODS[recurring.period],
        start_date=recurring.start_date.isoformat() if recurring.start_date else None,
        end_date=recurring.end_date.isoformat() if recurring.end_date else None,
        status="active" if recurring.active else "inactive",
    )


class CreateBody(WireModel):
    """`password` is required and checked iff `setpassword` is "1"; with "0" it is ignored."""

    username: Username
    email: Email
    setpassword: Literal["1", "0"]
    password: StrictStr | None = None
    credit_type: CreditTypeName = "unlimited"

    @model_validator(mode="after")
    def _password_iff_setpassword(self) -> Self:
        if self.setpassword == "1":
            if self.password is None:
                raise ValueError('password: required when setpassword is "1"')
            try:
                check_password(self.password)
            except ValueError as exc:
                raise ValueError(f"password: {exc}") from None
        return self


class UpdateBody(WireModel):
    """SDK v5 update: `new_*` fields; `confirm_password` must equal `new_password`."""

    username: Username
    new_email: Email | None = None
    new_password: Password | None = None
    confirm_password: StrictStr | None = None
    credit_type: CreditTypeName | None = None

    @model_validator(mode="after")
    def _confirmed(self) -> Self:
        if self.confirm_password != self.new_password:
            raise ValueError("confirm_password: must equal new_password")
        return self


class CreditsBody(WireModel):
    """SDK v5 credits: move `amount` credits in the direction of `action`."""

    username: Username
    action: Action
    amount: Amount


class RecurringBody(DatedModel):
    """SDK v5 recurring credits: `recurring_credit` per `timeperiod` ("monhtly", sic)."""

    username: Username
    recurring_credit: RecurringAmount
    timeperiod: V5Period
    status: RecurringFlag = True

    def settings(self) -> Recurring:
        """The surface-neutral recurring settings."""
        return Recurring(
            amount=self.recurring_credit,
            period=_PERIODS[self.timeperiod],
            start_date=self.start_date,
            end_date=self.end_date,
            active=self.status,
        )


class DisabledBody(WireModel):
    """SDK v5 enable/disable: `disabled` true disables, false enables."""

    username: Username
    disabled: Disabled


def _call(operation: str, args: WireArgs, apply: ops.Apply) -> Call:
    return Call("v5", operation, apply, args.values)


@router.post(
    "/subaccounts/createSubaccount",
    summary="Create a subaccount",
    description="SDK v5. A taken username answers 409 (that status is defined by the sandbox).",
    responses={200: {"model": Success[SubaccountOut]}, **api_errors(409)},
    openapi_extra=body_doc(CreateBody),
)
async def create(request: Request) -> Response:
    """Create a subaccount with zero balance."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(CreateBody, args)
        password = body.password if body.setpassword == "1" else None
        return ops.create(state, body.username, body.email, body.credit_type, password)

    return await execute(request, _call("create", args, apply))


@router.post(
    "/subaccounts/updateSubaccount",
    summary="Update a subaccount",
    description="SDK v5. `confirm_password` must equal `new_password`; giving nothing is a 400.",
    responses={200: {"model": Success[SubaccountOut]}, **_ERRORS},
    openapi_extra=body_doc(UpdateBody),
)
async def update(request: Request) -> Response:
    """Change a subaccount's email, password and/or credit type."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(UpdateBody, args)
        return ops.update(state, body.username, body.new_email, body.credit_type, body.new_password)

    return await execute(request, _call("update", args, apply))


@router.post(
    "/subaccounts/setsubaccountcredit",
    summary="Add or remove credits",
    description=(
        "SDK v5. `increase` moves credits from the master, `decrease` moves them back; either"
        " side lacking them is a 400. Not idempotent: a repeat moves credits again."
    ),
    responses={200: {"model": Success[CreditBalanceOut]}, **_ERRORS},
    openapi_extra=body_doc(CreditsBody),
)
async def change_credits(request: Request) -> Response:
    """Move credits between the master and a subaccount."""
    args = await read_body(request)
    operation = ops.credits_operation(args.values)

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(CreditsBody, args)
        return ops.change_credits(state, body.username, body.action, body.amount)

    return await execute(request, _call(operation, args, apply))


@router.post(
    "/setrecurringcreditddetails",
    summary="Set recurring credits",
    description='SDK v5 (sic path). `timeperiod` "monhtly" (sic) is monthly; "monthly" is a 400.',
    responses={200: {"model": Success[V5RecurringOut]}, **_ERRORS},
    openapi_extra=body_doc(RecurringBody),
)
async def set_recurring(request: Request) -> Response:
    """Set a subaccount's recurring credit allocation."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(RecurringBody, args)
        return ops.set_recurring(state, body.username, body.settings(), v5_recurring_out)

    return await execute(request, _call("set_recurring", args, apply))


@router.get(
    "/subaccounts/getSubAccounts",
    summary="List subaccounts",
    description="SDK v5. In creation order; `offset` counts skipped subaccounts (0-based).",
    responses={200: {"model": Success[ListOut]}, **api_errors()},
    openapi_extra=query_doc(ListQuery),
)
async def list_subaccounts(request: Request) -> Response:
    """One page of subaccounts."""
    args = read_query(request)
    return await execute(request, _call("list", args, ops.paged(args)))


@router.patch(
    "/subaccounts",
    summary="Enable/disable a subaccount",
    description="SDK v5. A disabled subaccount keeps its credits and can still receive more.",
    responses={200: {"model": Success[SubaccountOut]}, **_ERRORS},
    openapi_extra=body_doc(DisabledBody),
)
async def set_disabled(request: Request) -> Response:
    """Enable or disable a subaccount."""
    args = await read_body(request)
    operation = "enable" if args.values.get("disabled") is False else "disable"

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(DisabledBody, args)
        return ops.set_disabled(state, body.username, body.disabled)

    return await execute(request, _call(operation, args, apply))


@router.delete(
    "/subaccounts/delete",
    summary="Delete a subaccount",
    description="SDK v5 (JSON body on DELETE). Remaining credits return to the master.",
    responses={200: {"model": Success[DeletedOut]}, **_ERRORS},
    openapi_extra=body_doc(UsernameArg),
)
async def delete(request: Request) -> Response:
    """Delete a subaccount, returning its credits to the master."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        return ops.delete(state, parse(UsernameArg, args).username)

    return await execute(request, _call("delete", args, apply))


@router.get(
    "/subaccounts/getcredit",
    summary="Get credit details",
    description=(
        f"{SANDBOX_DEFINED} Balance, credits used, credit type, status and recurring settings"
        " (v5 keys)."
    ),
    responses={200: {"model": Success[CreditDetailsOut[V5RecurringOut]]}, **_ERRORS},
    openapi_extra=query_doc(UsernameArg),
)
async def get_credits(request: Request) -> Response:
    """A subaccount's balance and recurring settings."""
    args = read_query(request)

    def apply(state: SandboxState) -> ops.Outcome:
        username = parse(UsernameArg, args).username
        return ops.credit_details(state, username, v5_recurring_out)

    return await execute(request, _call("get_credits", args, apply))
