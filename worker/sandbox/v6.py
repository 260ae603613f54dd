"""The v6 REST surface (`Authorization: Bearer`), plus the routes the sandbox defines.

Known from the v6 REST reference the project started from (summarised in docs/api.md): create,
PATCH disabled, delete, list. Defined by the sandbox: updating fields through PATCH, credits,
recurring credits and credit details.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Security
from fastapi.security import HTTPBearer
from starlette.responses import Response

from worker.sandbox import operations as ops
from worker.sandbox.docs import SANDBOX_DEFINED, body_doc, query_doc
from worker.sandbox.failures import invalid
from worker.sandbox.fields import (
    USERNAME_SCHEMA,
    Action,
    Amount,
    CreditTypeName,
    DatedModel,
    Disabled,
    Email,
    ListQuery,
    RecurringAmount,
    RecurringFlag,
    Username,
    UsernameArg,
    V6Password,
    WireArgs,
    WireModel,
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
    RecurringOut,
    SubaccountOut,
    Success,
    api_errors,
    read_body,
    read_query,
    recurring_out,
)

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
router = APIRouter(prefix="/v6", tags=["v6"], dependencies=[Security(bearer)])
_ERRORS = api_errors(404)
# Documented only: the route parses the username itself, after auth and faults.
UsernamePath = Annotated[str, Path(json_schema_extra=USERNAME_SCHEMA)]


class CreateBody(WireModel):
    """v6 create (v6 reference): the password is required and policy-checked."""

    username: Username
    email: Email
    password: V6Password
    credit_type: CreditTypeName = "unlimited"


class UpdateBody(WireModel):
    """Fields PATCH may change (defined by the sandbox); `disabled` may not be mixed in."""

    email: Email | None = None
    credit_type: CreditTypeName | None = None
    password: V6Password | None = None


class DisabledBody(WireModel):
    """v6 enable/disable (v6 reference): `disabled` alone."""

    disabled: Disabled


class CreditsBody(WireModel):
    """Move `amount` credits in the direction of `action` (defined by the sandbox)."""

    action: Action
    amount: Amount


class RecurringBody(DatedModel):
    """Recurring credits, v6 keys (defined by the sandbox)."""

    amount: RecurringAmount
    period: Literal["daily", "weekly", "monthly"]
    status: RecurringFlag = True

    def settings(self) -> Recurring:
        """The surface-neutral recurring settings."""
        return Recurring(
            amount=self.amount,
            period=Period(self.period),
            start_date=self.start_date,
            end_date=self.end_date,
            active=self.status,
        )


def _username(username: str) -> str:
    return parse(UsernameArg, {"username": username}).username


def _call(operation: str, username: str, args: WireArgs, apply: ops.Apply) -> Call:
    return Call("v6", operation, apply, {**args.values, "username": username})


@router.post(
    "/subaccounts",
    status_code=201,
    summary="Create a subaccount",
    description="v6 reference. A taken username answers 409 (that status is sandbox-defined).",
    responses={201: {"model": Success[SubaccountOut]}, **api_errors(409)},
    openapi_extra=body_doc(CreateBody),
)
async def create(request: Request) -> Response:
    """Create a subaccount with zero balance."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        body = parse(CreateBody, args)
        return ops.create(state, body.username, body.email, body.credit_type, body.password, 201)

    return await execute(request, Call("v6", "create", apply, dict(args.values)))


def _patch_operation(args: WireArgs) -> str:
    if "disabled" not in args.values or len(args.values) > 1:
        return "update"
    return "enable" if args.values["disabled"] is False else "disable"


def _patch(username: str, args: WireArgs, operation: str) -> ops.Apply:
    def apply(state: SandboxState) -> ops.Outcome:
        name = _username(username)
        if operation != "update":
            return ops.set_disabled(state, name, parse(DisabledBody, args).disabled)
        if "disabled" in args.values:
            raise invalid("disabled: cannot be combined with email, credit_type or password")
        body = parse(UpdateBody, args)
        return ops.update(state, name, body.email, body.credit_type, body.password)

    return apply


@router.patch(
    "/subaccounts/{username}",
    summary="Enable/disable a subaccount, or update its fields",
    description=(
        "v6 reference: `{disabled: bool}` alone enables or disables. Updating `email`,"
        " `credit_type` or `password` here is defined by the sandbox; mixing `disabled` with them"
        " is a 400."
    ),
    responses={200: {"model": Success[SubaccountOut]}, **_ERRORS},
    openapi_extra=body_doc(DisabledBody, UpdateBody),
)
async def patch(request: Request, username: UsernamePath) -> Response:
    """Enable, disable or update a subaccount."""
    args = await read_body(request)
    operation = _patch_operation(args)
    return await execute(
        request, _call(operation, username, args, _patch(username, args, operation))
    )


@router.delete(
    "/subaccounts/{username}",
    summary="Delete a subaccount",
    description=(
        "v6 reference: remaining credits return to the master. The body is sandbox-defined."
    ),
    responses={200: {"model": Success[DeletedOut]}, **_ERRORS},
)
async def delete(request: Request, username: UsernamePath) -> Response:
    """Delete a subaccount, returning its credits to the master."""

    def apply(state: SandboxState) -> ops.Outcome:
        return ops.delete(state, _username(username))

    return await execute(request, _call("delete", username, WireArgs(), apply))


@router.get(
    "/subaccounts",
    summary="List subaccounts",
    description="v6 reference. In creation order; `offset` counts skipped subaccounts (0-based).",
    responses={200: {"model": Success[ListOut]}, **api_errors()},
    openapi_extra=query_doc(ListQuery),
)
async def list_subaccounts(request: Request) -> Response:
    """One page of subaccounts."""
    args = read_query(request)
    return await execute(request, Call("v6", "list", ops.paged(args), args.values))


@router.get(
    "/subaccounts/{username}/credits",
    summary="Get credit details",
    description=(
        f"{SANDBOX_DEFINED} Balance, credits used, credit type, status and recurring settings."
    ),
    responses={200: {"model": Success[CreditDetailsOut[RecurringOut]]}, **_ERRORS},
)
async def get_credits(request: Request, username: UsernamePath) -> Response:
    """A subaccount's balance and recurring settings."""

    def apply(state: SandboxState) -> ops.Outcome:
        return ops.credit_details(state, _username(username), recurring_out)

    return await execute(request, _call("get_credits", username, WireArgs(), apply))


@router.post(
    "/subaccounts/{username}/credits",
    summary="Add or remove credits",
    description=(
        f"{SANDBOX_DEFINED} `increase` moves credits from the master, `decrease` moves them back;"
        " either side lacking them is a 400. Not idempotent: a repeat moves credits again."
    ),
    responses={200: {"model": Success[CreditBalanceOut]}, **_ERRORS},
    openapi_extra=body_doc(CreditsBody),
)
async def change_credits(request: Request, username: UsernamePath) -> Response:
    """Move credits between the master and a subaccount."""
    args = await read_body(request)
    operation = ops.credits_operation(args.values)

    def apply(state: SandboxState) -> ops.Outcome:
        name = _username(username)
        body = parse(CreditsBody, args)
        return ops.change_credits(state, name, body.action, body.amount)

    return await execute(request, _call(operation, username, args, apply))


@router.put(
    "/subaccounts/{username}/recurring-credits",
    summary="Set recurring credits",
    description=f"{SANDBOX_DEFINED} Stores the allocation; the sandbox never tops up by itself.",
    responses={200: {"model": Success[RecurringOut]}, **_ERRORS},
    openapi_extra=body_doc(RecurringBody),
)
async def set_recurring(request: Request, username: UsernamePath) -> Response:
    """Set a subaccount's recurring credit allocation."""
    args = await read_body(request)

    def apply(state: SandboxState) -> ops.Outcome:
        name = _username(username)
        settings = parse(RecurringBody, args).settings()
        return ops.set_recurring(state, name, settings, recurring_out)

    return await execute(request, _call("set_recurring", username, args, apply))
