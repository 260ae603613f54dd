"""The wire format both surfaces share: envelopes, output objects, and reading request arguments.

Success: `{"status": "success", "data": {...}}`; error: `{"status": "error", "error": "...",
"detail": "..."}`. Recurring settings use the v6 keys here; v5 renames them in its own module.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from worker.sandbox.failures import ApiFailure
from worker.sandbox.fields import CreditTypeName, RecurringStatus, WireArgs
from worker.sandbox.model import Recurring
from worker.sandbox.state import Account

T = TypeVar("T")


class ErrorBody(BaseModel):
    """An error answer on both surfaces."""

    status: Literal["error"] = "error"
    error: str
    detail: str | None = None


class Success(BaseModel, Generic[T]):
    """A success answer on both surfaces."""

    status: Literal["success"] = "success"
    data: T


class SubaccountOut(BaseModel):
    """A subaccount as both surfaces return it."""

    username: str
    email: str
    credit_type: CreditTypeName
    disabled: bool


class RecurringOut(BaseModel):
    """Recurring credit allocation, v6 keys (defined by the sandbox)."""

    amount: int
    period: Literal["daily", "weekly", "monthly"]
    start_date: dt.date | None
    end_date: dt.date | None
    status: RecurringStatus


R = TypeVar("R", bound=BaseModel)


class CreditDetailsOut(SubaccountOut, Generic[R]):
    """Balance, credits used and recurring settings of a subaccount (defined by the sandbox)."""

    balance: int
    used: int = Field(
        description="credits consumed by sending mail so far (defined by the sandbox); "
        "balance + used changes only when credits are granted or deducted"
    )
    recurring: R | None


class CreditBalanceOut(BaseModel):
    """A subaccount's balance after credits moved (defined by the sandbox)."""

    username: str
    balance: int


class DeletedOut(BaseModel):
    """A deleted subaccount and the credits returned to the master (defined by the sandbox)."""

    username: str
    returned_credits: int


class ListOut(BaseModel):
    """A page of subaccounts in creation order; `offset` is how many were skipped."""

    subaccounts: list[SubaccountOut]
    total: int
    limit: int
    offset: int


def subaccount_out(account: Account) -> SubaccountOut:
    """The wire view of a subaccount."""
    return SubaccountOut(
        username=account.username,
        email=account.email,
        credit_type=account.credit_type.value,
        disabled=account.disabled,
    )


def recurring_out(recurring: Recurring) -> RecurringOut:
    """The v6 wire view of recurring settings."""
    return RecurringOut(
        amount=recurring.amount,
        period=recurring.period.value,
        start_date=recurring.start_date,
        end_date=recurring.end_date,
        status="active" if recurring.active else "inactive",
    )


def dump(data: BaseModel) -> dict[str, Any]:
    """`data` as JSON-ready values, nested objects by their actual type."""
    return data.model_dump(mode="json", serialize_as_any=True)


def success(data: BaseModel, status: int = 200) -> JSONResponse:
    """The success envelope around `data`."""
    return JSONResponse({"status": "success", "data": dump(data)}, status)


def error_body(failure: ApiFailure) -> dict[str, str]:
    """The error envelope's JSON for `failure` (no `detail` key when there is none)."""
    body = {"status": "error", "error": failure.error}
    if failure.detail is not None:
        body["detail"] = failure.detail
    return body


def failure_response(failure: ApiFailure) -> JSONResponse:
    """The error envelope with the failure's status and headers."""
    return JSONResponse(error_body(failure), failure.status, headers=failure.headers)


async def read_body(request: Request) -> WireArgs:
    """The JSON object in the body (empty body: no arguments), or why it is not one."""
    raw = await request.body()
    if not raw.strip():
        return WireArgs()
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return WireArgs(problem="body: malformed JSON")
    if not isinstance(value, dict):
        return WireArgs(problem="body: must be a JSON object")
    return WireArgs(value)


def read_query(request: Request) -> WireArgs:
    """The query parameters as arguments (the last value of a repeated one wins)."""
    return WireArgs(dict(request.query_params))


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give."""
    about = {
        400: 'Invalid Parameters; `detail` is "<field>: <why>"',
        401: "Unauthorized: missing or wrong API key",
        403: "You cannot use this feature: the master account is inactive",
        404: "Subaccount does not exists (sic)",
        409: "Subaccount already exists (defined by the sandbox)",
        429: "Too Many Requests, with Retry-After (when rate limiting is configured)",
        500: "Server error (injected faults answer 500, 502 or 503 without applying)",
    }
    return {code: {"model": ErrorBody, "description": about[code]} for code in codes}


def api_errors(*extra: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error entries of an API route: those every call can get, plus `extra`."""
    return error_responses(400, 401, 403, *extra, 429, 500)
