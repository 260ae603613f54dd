"""Console test helpers: users of each role, logged-in clients, and dead letters written the way
the pipeline writes them (the attempt store's own script)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from handlers import examples as f
from handlers.events import parse_event
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.outcomes import DeadLetter

TOKENS = {
    "viewer": "vw-5b1c9e77d2a04f3e8c61b0d9f2e7a145",
    "operator": "op-8f3a61c0b4e94d27a0c35b6f1d8e2079",
    "admin": "ad-2d9e4470aa3f4c1b9e0d7a6c5b8f3e21",
}
SECRET = "console-signing-secret-0f4b2a"
NAMES = {"viewer": "vera", "operator": "otto", "admin": "ada"}
TOKENS_SETTING = ",".join(f"{NAMES[role]}:{role}:{token}" for role, token in TOKENS.items())
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def same_origin(client: httpx.Client) -> dict[str, str]:
    """The headers a browser sends with a same-origin POST."""
    return {"Sec-Fetch-Site": "same-origin", "Origin": str(client.base_url).rstrip("/")}


def login(client: httpx.Client, role: str) -> str:
    """Log `client` in as the user of `role`; returns the session's CSRF token."""
    answer = client.post(
        "/login",
        data={"user": NAMES[role], "token": TOKENS[role], "next": "/"},
        headers=same_origin(client),
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/dead-letters")
    found = CSRF.search(page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def write_dead_letter(
    store: AttemptStore,
    client_id: str,
    *,
    n: int = 0,
    reason: str = "retries_exhausted",
    detail: str = "add_credits for subaccount 'x' failed (HTTP 503): unavailable",
    step: str | None = "add_credits",
    at_ms: int | None = None,
    event: dict[str, Any] | None = None,
    readings: dict[str, Any] | None = None,
) -> DeadLetter:
    """Dead-letter an invoice of `client_id` through the store's real script."""
    now = at_ms or int(time.time() * 1000)
    body = event or f.invoice_paid(client_id, f"inv-{client_id}-{n}", credits=100)
    key = parse_event(body).key
    letter = DeadLetter(
        key=key,
        event=body,
        reason=reason,
        detail=detail,
        attempts=3,
        first_failure_ms=now - 1000,
        last_failure_ms=now,
        step=step,
        readings=readings or {},
    )
    outcome = {
        "key": key,
        "event_id": body["id"],
        "client_id": client_id,
        "event_type": body["type"],
        "outcome": "dead_lettered",
        "reason": reason,
        "at_ms": now,
        "steps": [],
        "attempt": 3,
    }
    store.record_unlocked(key, outcome, letter.encode())
    return letter
