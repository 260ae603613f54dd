"""The two public API surfaces as pure translations: typed request ⇄ HTTP request / wire data.

v5 follows the official SDK (`api_key` header, `/subaccounts/createSubaccount`, `monhtly` sic);
v6 follows the v6 REST reference's paths (`Authorization: Bearer`). Operations v6 lacks (credits,
recurring, credit details, update fields) use the sandbox's definitions, see docs/api.md.
Credit details carry `used` (credits consumed by sending) where the surface reports it: the
sandbox defines it on both surfaces; a surface without it reads as None (unknown), never 0.
No I/O here: the client sends what these functions build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from handlers.requests import (
    ChangeCredits,
    CreateSubaccount,
    Period,
    Recurring,
    SetDisabled,
    SetRecurring,
    UpdateSubaccount,
)
from worker.api.models import ListPage
from worker.settings import ApiSurface


@dataclass(frozen=True)
class HttpRequest:
    """What to send: method, path relative to the base URL, JSON body and query parameters."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_read(self) -> bool:
        return self.method == "GET"


class Surface(Protocol):
    """Builds requests and reads recurring settings for one API surface."""

    name: ApiSurface

    def auth_headers(self, api_key: str) -> dict[str, str]: ...
    def create(self, req: CreateSubaccount) -> HttpRequest: ...
    def update(self, req: UpdateSubaccount) -> HttpRequest: ...
    def change_credits(self, req: ChangeCredits) -> HttpRequest: ...
    def set_recurring(self, req: SetRecurring) -> HttpRequest: ...
    def get_credit_details(self, username: str) -> HttpRequest: ...
    def list_subaccounts(self, page: ListPage) -> HttpRequest: ...
    def set_disabled(self, req: SetDisabled) -> HttpRequest: ...
    def delete(self, username: str) -> HttpRequest: ...
    def read_recurring(self, data: dict[str, Any]) -> Recurring: ...
    def read_used(self, data: dict[str, Any]) -> int | None: ...


def _date(value: object) -> str | None:
    return value.isoformat() if value is not None else None  # type: ignore[attr-defined]


def _status(active: bool) -> str:
    return "active" if active else "inactive"


class V6:
    """The v6 REST surface (docs/api.md), plus the sandbox-defined routes it lacks."""

    name = ApiSurface.V6

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def create(self, req: CreateSubaccount) -> HttpRequest:
        body: dict[str, Any] = {
            "username": req.username,
            "email": req.email,
            "credit_type": req.credit_type.value,
        }
        if req.password is not None:
            body["password"] = req.password.get_secret_value()
        return HttpRequest("POST", "/subaccounts", json=body)

    def update(self, req: UpdateSubaccount) -> HttpRequest:
        body: dict[str, Any] = {}
        if req.email is not None:
            body["email"] = req.email
        if req.credit_type is not None:
            body["credit_type"] = req.credit_type.value
        if req.password is not None:
            body["password"] = req.password.get_secret_value()
        return HttpRequest("PATCH", _user_path(req.username), json=body)

    def change_credits(self, req: ChangeCredits) -> HttpRequest:
        body = {"action": req.action, "amount": req.amount}
        return HttpRequest("POST", _user_path(req.username, "/credits"), json=body)

    def set_recurring(self, req: SetRecurring) -> HttpRequest:
        rec = req.recurring
        body = {
            "amount": rec.amount,
            "period": rec.period.value,
            "start_date": _date(rec.start_date),
            "end_date": _date(rec.end_date),
            "status": _status(rec.active),
        }
        return HttpRequest("PUT", _user_path(req.username, "/recurring-credits"), json=body)

    def get_credit_details(self, username: str) -> HttpRequest:
        return HttpRequest("GET", _user_path(username, "/credits"))

    def list_subaccounts(self, page: ListPage) -> HttpRequest:
        return HttpRequest(
            "GET", "/subaccounts", params={"limit": page.limit, "offset": page.offset}
        )

    def set_disabled(self, req: SetDisabled) -> HttpRequest:
        return HttpRequest("PATCH", _user_path(req.username), json={"disabled": req.disabled})

    def delete(self, username: str) -> HttpRequest:
        return HttpRequest("DELETE", _user_path(username))

    def read_recurring(self, data: dict[str, Any]) -> Recurring:
        return Recurring(
            amount=data["amount"],
            period=Period(data["period"]),
            start_date=data.get("start_date"),
            end_date=data.get("end_date"),
            active=data.get("status", "active") == "active",
        )

    def read_used(self, data: dict[str, Any]) -> int | None:
        return _used(data)


# The SDK's enum spells monthly "monhtly"; we map both ways at this boundary only.
_V5_PERIOD = {Period.DAILY: "daily", Period.WEEKLY: "weekly", Period.MONTHLY: "monhtly"}
_V5_PERIOD_BACK = {wire: period for period, wire in _V5_PERIOD.items()}


class V5:
    """The v5 surface of the official `pepipost` SDK, plus the sandbox's credit-details route."""

    name = ApiSurface.V5

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"api_key": api_key}

    def create(self, req: CreateSubaccount) -> HttpRequest:
        body: dict[str, Any] = {
            "username": req.username,
            "email": req.email,
            "credit_type": req.credit_type.value,
            "setpassword": "1" if req.password is not None else "0",
        }
        if req.password is not None:
            body["password"] = req.password.get_secret_value()
        return HttpRequest("POST", "/subaccounts/createSubaccount", json=body)

    def update(self, req: UpdateSubaccount) -> HttpRequest:
        body: dict[str, Any] = {"username": req.username}
        if req.email is not None:
            body["new_email"] = req.email
        if req.credit_type is not None:
            body["credit_type"] = req.credit_type.value
        if req.password is not None:
            body["new_password"] = body["confirm_password"] = req.password.get_secret_value()
        return HttpRequest("POST", "/subaccounts/updateSubaccount", json=body)

    def change_credits(self, req: ChangeCredits) -> HttpRequest:
        body = {"username": req.username, "action": req.action, "amount": req.amount}
        return HttpRequest("POST", "/subaccounts/setsubaccountcredit", json=body)

    def set_recurring(self, req: SetRecurring) -> HttpRequest:
        rec = req.recurring
        body = {
            "username": req.username,
            "recurring_credit": rec.amount,
            "timeperiod": _V5_PERIOD[rec.period],
            "start_date": _date(rec.start_date),
            "end_date": _date(rec.end_date),
            "status": _status(rec.active),
        }
        return HttpRequest("POST", "/setrecurringcreditddetails", json=body)

    def get_credit_details(self, username: str) -> HttpRequest:
        return HttpRequest("GET", "/subaccounts/getcredit", params={"username": username})

    def list_subaccounts(self, page: ListPage) -> HttpRequest:
        params = {"limit": page.limit, "offset": page.offset}
        return HttpRequest("GET", "/subaccounts/getSubAccounts", params=params)

    def set_disabled(self, req: SetDisabled) -> HttpRequest:
        body = {"username": req.username, "disabled": req.disabled}
        return HttpRequest("PATCH", "/subaccounts", json=body)

    def delete(self, username: str) -> HttpRequest:
        return HttpRequest("DELETE", "/subaccounts/delete", json={"username": username})

    def read_recurring(self, data: dict[str, Any]) -> Recurring:
        return Recurring(
            amount=data["recurring_credit"],
            period=_V5_PERIOD_BACK[data["timeperiod"]],
            start_date=data.get("start_date"),
            end_date=data.get("end_date"),
            active=data.get("status", "active") == "active",
        )

    def read_used(self, data: dict[str, Any]) -> int | None:
        return _used(data)


def _used(data: dict[str, Any]) -> int | None:
    """Credits used by sending, from credit details; None when not reported (or not a count)."""
    used = data.get("used")
    return used if type(used) is int and used >= 0 else None


def _user_path(username: str, suffix: str = "") -> str:
    return f"/subaccounts/{quote(username, safe='')}{suffix}"


def surface_for(name: ApiSurface) -> Surface:
    """The translation for the configured surface."""
    return V5() if name == ApiSurface.V5 else V6()
