"""The attacks of issue 23 on a console under a real uvicorn on loopback: a forged proxy header,
another Host, brute-forced logins and Bearer tokens, and a cookie copied before logout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import structlog

import worker.console.app
import worker.console.guard
from tests.console.support import NAMES, TOKENS, login, same_origin
from tests.servers import RedisServer, ThreadedUvicorn
from worker.console import create_app
from worker.console.auth import SESSION_COOKIE
from worker.settings import load_settings

HEADER = "X-Forwarded-User"
PROXY_SECRET = "proxy-shared-secret-3f9a1c7e5b"
Serve = Callable[..., str]


@pytest.fixture
def serve(redis_server: RedisServer, redis_url: str) -> Iterator[Serve]:
    """Start a console with these settings (uvicorn's own proxy handling off, as `serve` runs
    it); returns its URL."""
    started: list[tuple[ThreadedUvicorn, object]] = []

    def start(**settings: object) -> str:
        values: dict[str, object] = {"redis_url": redis_server.url, "console_secret": "k" * 32}
        app = create_app(load_settings(**{**values, **settings}))
        server = ThreadedUvicorn(app, proxy_headers=False).start()
        started.append((server, app))
        return server.url

    yield start
    for server, app in started:
        server.stop()
        app.state.services.close()  # type: ignore[attr-defined]


def sso(serve: Serve, proxies: str, **more: object) -> str:
    return serve(
        console_trusted_user_header=HEADER,
        console_trusted_roles="boss:admin,*:viewer",
        console_trusted_proxies=proxies,
        **more,
    )


# --- 1. the trusted header ------------------------------------------------------------------
def test_a_forged_header_from_outside_the_proxy_list_is_nobody(serve: Serve) -> None:
    """Before: `X-Forwarded-User: boss` from any client was admin. Now only the proxy's
    addresses (here 10.0.0.0/8; the test connects from 127.0.0.1) are believed."""
    url = sso(serve, "10.0.0.0/8")
    forged = {HEADER: "boss", "X-Forwarded-For": "10.0.0.7"}
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/status", headers=forged).status_code == 401
        assert client.get("/", headers=forged).status_code == 303  # to the login page
        preview = client.post(
            "/dead-letters/preview",
            data={"action": "purge", "scope": "matching"},
            headers={**forged, "Sec-Fetch-Site": "same-origin"},
        )
        assert preview.status_code == 401


def test_the_header_from_the_proxy_needs_its_shared_secret(serve: Serve) -> None:
    url = sso(serve, "127.0.0.1/32", console_proxy_secret=PROXY_SECRET)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/status", headers={HEADER: "boss"}).status_code == 401
        wrong = {HEADER: "boss", "X-Console-Proxy-Secret": "guess"}
        assert client.get("/api/status", headers=wrong).status_code == 401
        right = {HEADER: "boss", "X-Console-Proxy-Secret": PROXY_SECRET}
        assert client.get("/api/status", headers=right).status_code == 200


def test_token_login_is_off_behind_the_proxy(serve: Serve) -> None:
    url = sso(serve, "127.0.0.1/32", console_tokens=f"ada:admin:{TOKENS['admin']}")
    with httpx.Client(base_url=url, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {TOKENS['admin']}"}
        assert client.get("/api/status", headers=bearer).status_code == 401
        answer = client.post(
            "/login",
            data={"user": "ada", "token": TOKENS["admin"]},
            headers=same_origin(client),
        )
        assert answer.status_code == 401
        assert SESSION_COOKIE not in answer.cookies


def test_a_header_user_gets_a_session_with_its_own_csrf_token(serve: Serve) -> None:
    """Before: one CSRF token per header user, forever. Now each session has its own, and the
    session ends when the proxy names someone else."""
    url = sso(serve, "127.0.0.1/32")
    tokens = []
    for _ in range(2):
        with httpx.Client(base_url=url, timeout=10, headers={HEADER: "boss"}) as client:
            page = client.get("/dead-letters")
            assert page.status_code == 200
            assert SESSION_COOKIE in client.cookies
            tokens.append(page.text.split('name="csrf" value="')[1].split('"')[0])
            client.headers[HEADER] = "eve"  # same cookie, another user from the proxy
            assert "Preview purge" not in client.get("/dead-letters").text
    assert tokens[0] != tokens[1]


def test_another_host_is_refused_but_health_answers(serve: Serve) -> None:
    """DNS rebinding: a page on evil.example resolving to the console sends Host: evil.example."""
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']}")
    bearer = {"Authorization": f"Bearer {TOKENS['admin']}"}
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/status", headers=bearer).status_code == 200
        rebound = client.get("/api/status", headers={**bearer, "Host": "evil.example"})
        assert rebound.status_code == 400
        assert "ALLOWED_HOSTS" in rebound.text
        assert client.get("/healthz", headers={"Host": "10.1.2.3:8090"}).status_code == 200
    named = serve(
        console_tokens=f"ada:admin:{TOKENS['admin']}", console_allowed_hosts=".example.com"
    )
    with httpx.Client(base_url=named, timeout=10) as client:
        host = {"Host": "console.example.com"}
        assert client.get("/api/status", headers={**bearer, **host}).status_code == 200
        assert client.get("/api/status", headers=bearer).status_code == 400


# --- 2. login limits ------------------------------------------------------------------------
def post_login(client: httpx.Client, user: str, token: str, **headers: str) -> httpx.Response:
    return client.post(
        "/login", data={"user": user, "token": token}, headers={**same_origin(client), **headers}
    )


def test_failed_logins_earn_a_wait_then_429_with_retry_after(serve: Serve) -> None:
    """Before: 300 wrong tokens in 0.6 s. Now 3 tries, then 1 s, 2 s, 4 s ... (429 meanwhile,
    even with the right token: an attempt during the wait is not checked)."""
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']}")
    with httpx.Client(base_url=url, timeout=10) as client:
        codes = [post_login(client, "ada", f"guess-{n}").status_code for n in range(3)]
        assert codes == [401, 401, 401]
        throttled = post_login(client, "ada", TOKENS["admin"])
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 2


def test_the_wait_is_per_address_and_per_user(serve: Serve) -> None:
    """From a trusted proxy, X-Forwarded-For names the client: other addresses guessing the
    same user are held back by the user's count; the address's count holds for other users."""
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']},vera:viewer:{TOKENS['viewer']}")
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(3):  # three addresses, one user
            xff = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert post_login(client, "ada", "wrong", **xff).status_code == 401
        fresh = {"X-Forwarded-For": "203.0.113.99"}
        assert post_login(client, "ada", TOKENS["admin"], **fresh).status_code == 429
        assert post_login(client, "vera", TOKENS["viewer"], **fresh).status_code == 303
        busy = {"X-Forwarded-For": "203.0.113.0"}
        for _ in range(2):  # that address's third and fourth failures, on another name
            post_login(client, "nobody", "wrong", **busy)
        assert post_login(client, "vera", TOKENS["viewer"], **busy).status_code == 429


def test_a_forged_forwarded_for_from_outside_the_proxies_is_ignored(serve: Serve) -> None:
    """An attacker who connects directly cannot rotate addresses with X-Forwarded-For."""
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']}", console_trusted_proxies="10.0.0.0/8")
    with httpx.Client(base_url=url, timeout=10) as client:
        codes = [
            post_login(client, f"u{n}", "x", **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code
            for n in range(4)
        ]
    assert codes == [401, 401, 401, 429]


def test_bearer_failures_on_the_api_are_limited_too(serve: Serve) -> None:
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']}")
    with httpx.Client(base_url=url, timeout=10) as client:
        codes = [
            client.get("/api/status", headers={"Authorization": f"Bearer nope-{n}"}).status_code
            for n in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        answer = client.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert answer.status_code == 429
        assert int(answer.headers["retry-after"]) >= 1
        assert "try again in" in answer.json()["error"]


def test_refused_logins_are_logged_with_address_and_user_never_the_token(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve(console_tokens=f"ada:admin:{TOKENS['admin']}")
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(worker.console.app, "log", structlog.get_logger("console-test"))
        monkeypatch.setattr(worker.console.guard, "log", structlog.get_logger("console-test"))
        with httpx.Client(base_url=url, timeout=10) as client:
            post_login(client, "ada", "wrong-token-7e3a")
            client.get("/api/status", headers={"Authorization": "Bearer wrong-bearer-5c1d"})
    refused = [e for e in logs if e["event"] == "console_login_refused"]
    assert [(e["client"], e["user"]) for e in refused] == [("127.0.0.1", "ada")]
    assert [e["client"] for e in logs if e["event"] == "console_bearer_refused"] == ["127.0.0.1"]
    dumped = json.dumps(logs, default=str)
    assert "wrong-token-7e3a" not in dumped
    assert "wrong-bearer-5c1d" not in dumped


# --- 3. revocable sessions ------------------------------------------------------------------
def test_a_copied_cookie_is_refused_after_logout(
    as_role: Callable[[str], tuple[httpx.Client, str]],
) -> None:
    """Before: the cookie of a logged-out session worked for 8 h. Now logout ends it in Redis."""
    client, _ = as_role("viewer")
    copied = client.cookies[SESSION_COOKIE]
    with httpx.Client(base_url=client.base_url, timeout=10) as thief:
        thief.cookies.set(SESSION_COOKIE, copied)
        assert thief.get("/api/status").status_code == 200
        assert client.post("/logout", headers=same_origin(client)).status_code == 303
        assert thief.get("/api/status").status_code == 401
        assert thief.get("/dead-letters").status_code == 303


def test_an_admin_logs_a_user_out_everywhere(
    as_role: Callable[[str], tuple[httpx.Client, str]],
) -> None:
    laptop, _ = as_role("viewer")
    phone, _ = as_role("viewer")
    admin, csrf = as_role("admin")
    bystander, _ = as_role("operator")
    viewer = NAMES["viewer"]
    refused = laptop.post(f"/api/users/{viewer}/sessions/end", headers=same_origin(laptop))
    assert refused.status_code == 403  # a viewer may not
    ended = admin.post(
        f"/api/users/{viewer}/sessions/end",
        headers={**same_origin(admin), "X-CSRF-Token": csrf},
    )
    assert ended.json() == {"user": viewer, "ended": 2}
    assert laptop.get("/api/status").status_code == 401
    assert phone.get("/api/status").status_code == 401
    assert bystander.get("/api/status").status_code == 200
    login(laptop, "viewer")  # and may log in again
    assert laptop.get("/api/status").status_code == 200
