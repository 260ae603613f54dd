"""Every page and API route for each role, the 401/403 paths and the CSRF refusals, against the
console under uvicorn on a real Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest
import redis

from tests.console.support import SECRET, TOKENS, same_origin, write_dead_letter
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.outcomes import DeadLetter

Login = Callable[[str], tuple[httpx.Client, str]]
ROLES = ["viewer", "operator", "admin"]
PAGES = ["/", "/dead-letters", "/dead-letters?reason=retries_exhausted", "/credits", "/audit"]
PAGES += ["/clients/acme", "/api/status", "/api/dead-letters", "/api/dead-letters?client=acme"]


@pytest.fixture
def seeded(store: AttemptStore) -> list[DeadLetter]:
    """Three dead letters of client acme (one ambiguous), as the worker writes them."""
    letters = [write_dead_letter(store, "acme", n=n) for n in range(2)]
    readings = {"balance_before": 100, "balance_after": 150, "amount": 100}
    letters.append(
        write_dead_letter(store, "acme", n=9, reason="ambiguous_outcome", readings=readings)
    )
    return letters


def event_path(letter: DeadLetter) -> str:
    return f"/events/{letter.event['id']}?source={letter.event['source']}"


@pytest.mark.parametrize("role", ROLES)
def test_every_page_and_read_api_answers_each_role(
    as_role: Login, seeded: list[DeadLetter], role: str
) -> None:
    client, _ = as_role(role)
    for path in [*PAGES, event_path(seeded[0])]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])


@pytest.mark.parametrize("role", ROLES)
def test_the_json_api_takes_a_bearer_token(
    anonymous: httpx.Client, seeded: list[DeadLetter], role: str
) -> None:
    auth = {"Authorization": f"Bearer {TOKENS[role]}"}
    status = anonymous.get("/api/status", headers=auth)
    assert status.status_code == 200
    assert status.json()["dead_letters"] == {"retries_exhausted": 2, "ambiguous_outcome": 1}
    listed = anonymous.get("/api/dead-letters?reason=ambiguous_outcome", headers=auth).json()
    assert [item["id"] for item in listed] == [seeded[2].key]
    assert {"id", "event_id", "reason", "type", "subject", "attempts", "detail"} <= set(listed[0])


def test_a_bad_filter_or_limit_is_422_saying_what_to_fix(anonymous: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    assert anonymous.get("/api/dead-letters?limit=abc", headers=auth).status_code == 422
    bad = anonymous.get("/api/dead-letters?since=yesterday", headers=auth)
    assert bad.status_code == 422
    assert "RFC 3339" in bad.json()["error"]


def test_no_credentials_is_401_on_the_api_and_a_login_redirect_on_pages(
    anonymous: httpx.Client,
) -> None:
    for path in ["/api/status", "/api/dead-letters"]:
        answer = anonymous.get(path)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.post("/api/replays", json={"ids": ["x"]}).status_code == 401
    page = anonymous.get("/dead-letters")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/dead-letters"
    wrong = anonymous.get("/api/status", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401


def test_health_needs_no_credentials(anonymous: httpx.Client) -> None:
    assert anonymous.get("/healthz").text == "ok"


def test_a_bad_token_cannot_log_in(anonymous: httpx.Client) -> None:
    answer = anonymous.post(
        "/login", data={"token": "nope", "next": "/"}, headers=same_origin(anonymous)
    )
    assert answer.status_code == 401
    assert "saw_console" not in answer.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_strict_and_expiring(anonymous: httpx.Client) -> None:
    answer = anonymous.post(
        "/login",
        data={"user": "vera", "token": TOKENS["viewer"], "next": "/"},
        headers=same_origin(anonymous),
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age=" in cookie
    assert answer.headers["location"] == "/"


def test_login_only_redirects_inside_the_console(anonymous: httpx.Client) -> None:
    answer = anonymous.post(
        "/login",
        data={"user": "vera", "token": TOKENS["viewer"], "next": "//evil.example/x"},
        headers=same_origin(anonymous),
    )
    assert answer.headers["location"] == "/"


def test_a_viewer_gets_403_on_every_change(
    as_role: Login, anonymous: httpx.Client, seeded: list[DeadLetter]
) -> None:
    client, csrf = as_role("viewer")
    form = {"csrf": csrf, "ids": seeded[0].key, "action": "replay"}
    for path in ["/dead-letters/preview", "/dead-letters/confirm", "/jobs/j1/cancel"]:
        assert client.post(path, data=form, headers=same_origin(client)).status_code == 403, path
    bearer = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    answer = anonymous.post("/api/replays", json={"ids": [seeded[0].key]}, headers=bearer)
    assert answer.status_code == 403
    assert "viewer" in answer.json()["error"]


def test_an_operator_may_not_purge(as_role: Login, seeded: list[DeadLetter]) -> None:
    client, csrf = as_role("operator")
    form = {"csrf": csrf, "ids": seeded[0].key, "action": "purge"}
    answer = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert answer.status_code == 403
    assert (
        client.post(
            "/credits/fix/preview", data={"csrf": csrf}, headers=same_origin(client)
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, "cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "same-site"),
        ({"Origin": "http://evil.example"}, "another origin"),
        ({}, "without Origin"),
    ],
)
def test_a_change_from_another_site_is_refused(
    as_role: Login, seeded: list[DeadLetter], headers: dict[str, str], why: str
) -> None:
    client, csrf = as_role("admin")
    form = {"csrf": csrf, "ids": seeded[0].key, "action": "replay"}
    answer = client.post(
        "/dead-letters/preview", data=form, headers={"HX-Request": "true", **headers}
    )
    assert answer.status_code == 403
    assert why in answer.text


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_change_without_the_sessions_csrf_token_is_refused(
    as_role: Login, seeded: list[DeadLetter], token: str | None
) -> None:
    client, _ = as_role("admin")
    form = {"ids": seeded[0].key, "action": "replay"}
    if token is not None:
        form["csrf"] = token
    answer = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert answer.status_code == 403
    assert "CSRF" in answer.text


def test_another_sessions_csrf_token_is_refused(as_role: Login, seeded: list[DeadLetter]) -> None:
    admin, _ = as_role("admin")
    _, other_csrf = as_role("operator")
    form = {"csrf": other_csrf, "ids": seeded[0].key, "action": "replay"}
    answer = admin.post("/dead-letters/preview", data=form, headers=same_origin(admin))
    assert answer.status_code == 403


def test_a_cross_site_script_with_a_bearer_token_is_refused(anonymous: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKENS['admin']}", "Sec-Fetch-Site": "cross-site"}
    answer = anonymous.post("/api/replays", json={"ids": ["x"]}, headers=headers)
    assert answer.status_code == 403


def test_no_secret_in_any_response(
    as_role: Login, anonymous: httpx.Client, seeded: list[DeadLetter]
) -> None:
    """Tokens and the signing secret never appear in a page, an API answer or a header."""
    secrets = [*TOKENS.values(), SECRET]
    answers = [anonymous.get("/login"), anonymous.get("/api/status")]
    for role in ROLES:
        client, _csrf = as_role(role)
        answers += [client.get(path) for path in [*PAGES, event_path(seeded[0])]]
        answers.append(
            client.post("/dead-letters/preview", data={"csrf": "x"}, headers=same_origin(client))
        )
    for answer in answers:
        blob = answer.text + str(answer.headers)
        for secret in secrets:
            assert secret not in blob, answer.request.url


def test_every_answer_carries_a_csp_without_inline_script(as_role: Login) -> None:
    client, _ = as_role("admin")
    for path in ["/", "/dead-letters", "/credits", "/audit", "/clients/acme"]:
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        scripts = re.findall(r"<script\b([^>]*)>", answer.text)
        assert scripts, path
        assert all("src=" in attrs for attrs in scripts), path
        assert not re.search(r"\son[a-z]+=", answer.text), path  # no inline handlers
        assert "style=" not in answer.text, path  # no inline style (style-src 'self')


def test_a_filter_typo_is_a_visible_error_not_an_empty_list(
    as_role: Login, seeded: list[DeadLetter], anonymous: httpx.Client
) -> None:
    """`reason=client-unknown` (a typo of client_unknown): the page says what the valid values
    are (422), it does not show "0 matching" as if all were well; the API answers the same."""
    client, _ = as_role("viewer")
    page = client.get("/dead-letters?reason=client-unknown")
    assert page.status_code == 422
    assert "data-filter-error" in page.text
    assert "did you mean client_unknown?" in page.text
    typo = client.get("/dead-letters?type=invoice_paid", headers={"HX-Request": "true",
                      "HX-Target": "results"})  # fmt: skip
    assert typo.status_code == 422
    assert "invoice.paid" in typo.text
    auth = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    api = anonymous.get("/api/dead-letters?step=addcredits", headers=auth)
    assert api.status_code == 422
    assert "add_credits" in api.json()["error"]


def test_the_credits_page_puts_low_and_drifting_first_and_pages(
    as_role: Login, redis_client: redis.Redis
) -> None:
    """120 subaccounts, two low (one critical) and one drifting, all with long runways but the
    low ones: page 1 starts with the drifting one, then critical, then warning; 50 a page."""
    from handlers.requests import CreditType
    from worker.credits.rule import AlertState, Level
    from worker.credits.store import CreditsStore, Snapshot

    credits = CreditsStore(redis_client, "saw")
    pipe = credits.redis.pipeline()
    for n in range(120):
        balance = {7: 50, 90: 800}.get(n, 100_000 + n)
        snap = Snapshot(username=f"u{n:03}", client_id=f"c{n}", balance=balance,
                        credit_type=CreditType.ONE_TIME_CREDIT, disabled=False,
                        read_at=1.0, runway_s=1000.0 * (200 - n))  # fmt: skip
        credits.add_snapshot(pipe, snap)
        level = {7: Level.CRITICAL, 90: Level.WARNING}.get(n, Level.OK)
        credits.set_alert(pipe, snap.username, AlertState(level=level, alert_id="cl_x"))
    drift = {"kind": "missing", "client_id": "c60", "username": "u060", "first_seen": 1.0}
    pipe.hset("saw:credits:drift", "missing:u060", json.dumps(drift))
    pipe.execute()
    viewer, _ = as_role("viewer")
    first = viewer.get("/credits").text
    order = re.findall(r"<td>(u\d{3})</td>", first)
    assert order[:3] == ["u060", "u007", "u090"]
    assert 'data-last-balance="u060">last balance 100' in first  # the missing one's money
    assert len(order) == 50
    assert "page 1 of 3" in first
    assert 'href="/credits?page=2"' in first
    third = re.findall(r"<td>(u\d{3})</td>", viewer.get("/credits?page=3").text)
    assert len(third) == 20


def test_an_event_page_says_attempts_not_zero_deliveries(
    as_role: Login, seeded: list[DeadLetter]
) -> None:
    """A dead-lettered event tried 3 times: the page says 3 attempts and that it ended
    dead-lettered before any step was done (not "deliveries 0", not "never started")."""
    client, _ = as_role("viewer")
    page = client.get(event_path(seeded[0])).text
    assert 'data-event="attempts">3<' in page
    assert "deliveries so far" not in page
    assert "never started" not in page
    assert "ended <strong>dead_lettered</strong> after 3 attempt(s)" in page
