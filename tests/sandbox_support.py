"""Helpers of the sandbox's tests: raw httpx clients of each surface, envelope readers, a clock.

The wire tests speak raw httpx on purpose: they pin the wire contract the project's client is
written against, without depending on that client.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TEST_API_KEY

PASSWORD = "Sup3rSecretPw"
OTHER_PASSWORD = "An0therSecret"
START_BALANCE = 1_000_000_000


def v6_client(base_url: str) -> httpx.Client:
    """A raw client of the v6 surface of the sandbox at `base_url`, with the Bearer header."""
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    return httpx.Client(base_url=f"{base_url}/v6", headers=headers, timeout=5)


def v5_client(base_url: str) -> httpx.Client:
    """A raw client of the v5 surface of the sandbox at `base_url`, with the api_key header."""
    return httpx.Client(base_url=f"{base_url}/v5", headers={"api_key": TEST_API_KEY}, timeout=5)


class ManualClock:
    """A monotonic clock (seconds) that moves only when a test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def data_of(response: httpx.Response, status: int = 200) -> Any:
    """The `data` of a success envelope, after checking the status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error envelope, after checking the status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error"
    return body


def make_v6(v6: httpx.Client, username: str, **extra: Any) -> dict[str, Any]:
    """Create a subaccount through v6 and return its data."""
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    return data_of(v6.post("/subaccounts", json={**body, **extra}), 201)  # type: ignore[no-any-return]


def make_v5(v5: httpx.Client, username: str, **extra: Any) -> dict[str, Any]:
    """Create a subaccount through v5 (no password) and return its data."""
    body = {"username": username, "email": f"{username}@example.com", "setpassword": "0"}
    return data_of(v5.post("/subaccounts/createSubaccount", json={**body, **extra}))  # type: ignore[no-any-return]


def grant_v6(v6: httpx.Client, username: str, amount: int, action: str = "increase") -> Any:
    """Add (or remove) credits through v6; the raw response."""
    return v6.post(f"/subaccounts/{username}/credits", json={"action": action, "amount": amount})
