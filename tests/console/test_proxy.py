"""Behind a proxy: cookies are Secure when the proxy says TLS, and an SSO proxy's trusted header
names the user (mapped to a role) instead of a token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.console.support import TOKENS, same_origin
from tests.servers import RedisServer, ThreadedUvicorn, free_port
from worker.console import create_app
from worker.settings import load_settings

HEADER = "X-Forwarded-User"


@pytest.fixture
def sso(redis_server: RedisServer, redis_url: str) -> Iterator[str]:
    settings = load_settings(
        redis_url=redis_server.url,
        console_trusted_user_header=HEADER,
        console_trusted_roles="ana@example.com:admin,*:viewer",
        console_trusted_proxies="127.0.0.1/32",
        console_secret="sso-signing-secret",
    )
    app = create_app(settings)
    server = ThreadedUvicorn(app).start()
    yield server.url
    server.stop()
    app.state.services.close()


def test_the_session_cookie_is_secure_behind_tls(anonymous: httpx.Client) -> None:
    headers = {**same_origin(anonymous), "X-Forwarded-Proto": "https"}
    answer = anonymous.post(
        "/login", data={"user": "vera", "token": TOKENS["viewer"]}, headers=headers
    )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_the_trusted_header_names_the_user_and_its_role(sso: str) -> None:
    with httpx.Client(base_url=sso, timeout=10) as client:
        assert client.get("/dead-letters").status_code == 303  # no header: log in
        admin = client.get("/dead-letters", headers={HEADER: "ana@example.com"})
        assert admin.status_code == 200
        assert "ana@example.com" in admin.text
        assert "Preview purge" in admin.text
        viewer = client.get("/dead-letters", headers={HEADER: "bob@example.com"})
        assert "Preview replay" not in viewer.text
        form = {"ids": "x", "action": "replay", "csrf": "x"}
        refused = client.post(
            "/dead-letters/preview",
            data=form,
            headers={HEADER: "bob@example.com", "Sec-Fetch-Site": "same-origin"},
        )
        assert refused.status_code == 403
        assert client.get("/login").status_code == 200  # no token form: behind SSO
        assert 'name="token"' not in client.get("/login").text


def test_redis_down_is_a_503_that_says_so() -> None:
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        console_tokens=f"ana:admin:{TOKENS['admin']}",
    )
    app = create_app(settings)
    server = ThreadedUvicorn(app).start()
    try:
        auth = {"Authorization": f"Bearer {TOKENS['admin']}"}
        answer = httpx.get(f"{server.url}/api/status", headers=auth, timeout=10)
        assert answer.status_code == 503
        assert "Redis did not answer" in answer.json()["error"]
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        assert (health.status_code, health.text) == (503, "redis unreachable")
        assert httpx.get(f"{server.url}/livez", timeout=10).text == "ok"
    finally:
        server.stop()
        app.state.services.close()
