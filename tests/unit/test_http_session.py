"""The lean HTTP session under the API client: what it puts on the wire (httpx.MockTransport)."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from worker.api.http import USER_AGENT, HttpSession, proxy_for

TIMEOUT = httpx.Timeout(5.0, connect=1.5, read=7.0)


def _session(seen: list[httpx.Request], answer: httpx.Response | None = None) -> HttpSession:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer or httpx.Response(200, json={"data": {"ok": True}})

    return HttpSession(
        "http://api.test/v6/", timeout=TIMEOUT, transport=httpx.MockTransport(handler)
    )


def test_a_json_request_carries_body_headers_and_timeouts() -> None:
    seen: list[httpx.Request] = []
    session = _session(seen)
    session.set_headers({"Authorization": "Bearer k-123"})
    response = session.send("POST", "/subaccounts", body={"username": "acme-1", "n": 2})

    request = seen[0]
    assert str(request.url) == "http://api.test/v6/subaccounts"
    assert json.loads(request.content) == {"username": "acme-1", "n": 2}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.extensions["timeout"] == {"connect": 1.5, "read": 7.0, "write": 5.0, "pool": 5.0}
    assert response.json() == {"data": {"ok": True}}
    assert response.request is request  # error classification reads the method from it


def test_a_read_sends_no_body_and_encodes_its_query() -> None:
    seen: list[httpx.Request] = []
    _session(seen).send("GET", "/subaccounts/getcredit", params={"username": "a b&c", "limit": 5})

    request = seen[0]
    assert request.url.path == "/v6/subaccounts/getcredit"
    assert request.url.params == httpx.QueryParams({"username": "a b&c", "limit": "5"})
    assert request.content == b""
    assert "Content-Type" not in request.headers


def test_headers_set_later_reach_both_kinds_of_request() -> None:
    seen: list[httpx.Request] = []
    session = _session(seen)
    session.set_headers({"api_key": "k-456"})
    session.send("GET", "/x")
    session.send("POST", "/y", body={})
    assert [r.headers["api_key"] for r in seen] == ["k-456", "k-456"]


def test_a_redirect_is_returned_not_followed() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(302, headers={"Location": "http://elsewhere.test/"})
    response = _session(seen, answer).send("POST", "/subaccounts", body={"username": "acme-1"})
    assert response.status_code == 302
    assert len(seen) == 1


def test_transport_failures_surface_as_httpx_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    session = HttpSession("http://api.test", timeout=TIMEOUT, transport=httpx.MockTransport(refuse))
    with pytest.raises(httpx.ConnectError):
        session.send("GET", "/x")


def test_a_transport_error_carries_its_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    session = HttpSession("http://api.test", timeout=TIMEOUT, transport=httpx.MockTransport(refuse))
    with pytest.raises(httpx.ConnectError) as caught:
        session.send("POST", "/x", body={})
    assert caught.value.request.url == "http://api.test/x"


def test_compressed_answers_are_asked_for_and_decoded() -> None:
    seen: list[httpx.Request] = []
    body = gzip.compress(b'{"data": {"n": 1}}')
    answer = httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})
    response = _session(seen, answer).send("GET", "/x")
    assert seen[0].headers["Accept-Encoding"] == "gzip, deflate"
    assert response.json() == {"data": {"n": 1}}


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.test/v6", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://api.test/v6", None),
        ({"ALL_PROXY": "http://all:1"}, "http://api.test/v6", "http://all:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.test"}, "https://api.test/v6", None),
        ({}, "https://api.test/v6", None),
    ],
)
def test_the_environment_names_the_proxy_as_httpx_would(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected
