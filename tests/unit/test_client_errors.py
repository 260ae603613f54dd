"""How the API client classifies answers and failures (httpx.MockTransport: no network)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from handlers.requests import ChangeCredits, CreateSubaccount
from worker.api.client import SubaccountClient, parse_retry_after
from worker.api.http import HttpSession
from worker.errors import (
    Ambiguous,
    ApiError,
    Conflict,
    MalformedResponse,
    NotFound,
    Permanent,
    Transient,
)
from worker.settings import ApiSurface

KEY = "unit-key-abcdef123456"
PASSWORD = "Sup3rSecretPass"
TIMEOUT = httpx.Timeout(5.0)


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> SubaccountClient:
    return SubaccountClient(_session("v6", handler), api_key=KEY, surface=ApiSurface.V6)


def _session(version: str, handler: Callable[[httpx.Request], httpx.Response]) -> HttpSession:
    transport = httpx.MockTransport(handler)
    return HttpSession(f"http://api.test/{version}", timeout=TIMEOUT, transport=transport)


def _answer(status: int, body: object = None, **headers: str) -> SubaccountClient:
    return _client(lambda request: httpx.Response(status, json=body, headers=headers))


def _grant(client: SubaccountClient) -> None:
    client.change_credits(ChangeCredits(username="acme-1", amount=5))


# Rows: (status, body, expected error class)
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "Invalid Parameters"}, Permanent),
        (401, {"error": "Unauthorized"}, Permanent),
        (403, {"error": "You cannot use this feature"}, Permanent),
        (404, {"error": "Subaccount does not exists"}, NotFound),
        (409, {"error": "Subaccount already exists"}, Conflict),
        (400, {"error": "Username already exists"}, Conflict),  # a 400 that means taken
        (429, {"error": "Too Many Requests"}, Transient),
        (500, {"error": "Server error"}, Transient),
        (503, None, Transient),
        (504, None, Ambiguous),  # a gateway gave up: the backend may have applied it
    ],
)
def test_status_codes_map_to_error_classes(status: int, body: object, expected: type) -> None:
    """Each non-2xx answer becomes exactly the error class the worker decides on."""
    with pytest.raises(expected) as caught:
        _grant(_answer(status, body))
    assert type(caught.value) is expected
    assert "acme-1" in str(caught.value)
    assert "add_credits" in str(caught.value)


def test_retry_after_is_carried() -> None:
    """A 429's Retry-After reaches the caller in seconds."""
    with pytest.raises(Transient) as caught:
        _grant(_answer(429, {"error": "Too Many Requests"}, **{"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0


def test_retry_after_accepts_http_dates() -> None:
    """Retry-After may be an HTTP date; it becomes seconds from now, never negative."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    "body",
    [b"<html>bad gateway</html>", b'{"status": "success"}', b'{"data": {"username": 1}}', b"[]"],
)
def test_malformed_success_on_a_write_is_ambiguous(body: bytes) -> None:
    """A 2xx we cannot read on a write may have been applied: MalformedResponse, not KeyError."""
    client = _client(lambda request: httpx.Response(200, content=body))
    with pytest.raises(MalformedResponse):
        _grant(client)


def test_malformed_success_on_a_read_is_transient() -> None:
    """A read that answers garbage changed nothing: it can simply be tried again."""
    client = _client(lambda request: httpx.Response(200, content=b"not json"))
    with pytest.raises(Transient):
        client.get_credit_details("acme-1")


def test_connect_failure_is_transient_and_read_timeout_is_ambiguous() -> None:
    """Not sent → Transient; sent without answer → Ambiguous (writes) or Transient (reads)."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(Transient):
        _grant(_client(refuse))
    with pytest.raises(Ambiguous):
        _grant(_client(hang))
    with pytest.raises(Transient):
        _client(hang).get_credit_details("acme-1")


def test_error_text_never_holds_the_key_or_password() -> None:
    """A server that echoes the request back cannot make an error quote secrets."""

    def echo(request: httpx.Request) -> httpx.Response:
        detail = f"{request.headers.get('Authorization')} {request.content.decode()}"
        return httpx.Response(400, json={"error": "Invalid Parameters", "detail": detail})

    req = CreateSubaccount(username="acme-1", email="a@b.co", password=SecretStr(PASSWORD))
    with pytest.raises(ApiError) as caught:
        _client(echo).create(req)
    text = str(caught.value) + repr(caught.value)
    assert "Invalid Parameters" in text
    assert KEY not in text
    assert PASSWORD not in text


def test_v5_speaks_the_sdk_dialect() -> None:
    """v5 sends the api_key header and spells monthly 'monhtly' as the SDK does."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = {"username": "acme-1", "recurring_credit": 9, "timeperiod": "monhtly"}
        return httpx.Response(200, json={"status": "success", "data": data})

    client = SubaccountClient(_session("v5", record), api_key=KEY, surface=ApiSurface.V5)
    from handlers.requests import Period, Recurring, SetRecurring

    rec = client.set_recurring(
        SetRecurring(username="acme-1", recurring=Recurring(amount=9, period=Period.MONTHLY))
    )
    assert rec.period == Period.MONTHLY
    assert seen[0].url.path == "/v5/setrecurringcreditddetails"
    assert seen[0].headers["api_key"] == KEY
    assert b'"monhtly"' in seen[0].content
    assert client.surface == ApiSurface.V5
