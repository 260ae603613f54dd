"""Mail sending over real HTTP: `/_sandbox/sending`, and `used` in credit details and state.

Most tests run a private sandbox whose clock they move by hand, so every figure is exact; one
runs the shared sandbox on the real clock and waits for the balance to fall.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_API_KEY
from tests.sandbox_support import (
    ManualClock,
    data_of,
    error_of,
    grant_v6,
    make_v6,
    v5_client,
    v6_client,
)
from tests.servers import ThreadedUvicorn, wait_until
from worker.sandbox import SandboxAdmin, create_app


@pytest.fixture(scope="module")
def clocked() -> Iterator[tuple[ThreadedUvicorn, ManualClock]]:
    """A sandbox under uvicorn whose sending clock is a ManualClock."""
    clock = ManualClock()
    server = ThreadedUvicorn(create_app(api_key=TEST_API_KEY, clock=clock)).start()
    yield server, clock
    server.stop()


@pytest.fixture
def admin(clocked: tuple[ThreadedUvicorn, ManualClock]) -> Iterator[SandboxAdmin]:
    """Admin handle on the clocked sandbox, reset for this test."""
    with SandboxAdmin(clocked[0].url) as handle:
        handle.reset()
        yield handle


@pytest.fixture
def clock(clocked: tuple[ThreadedUvicorn, ManualClock]) -> ManualClock:
    return clocked[1]


@pytest.fixture
def v6(clocked: tuple[ThreadedUvicorn, ManualClock], admin: SandboxAdmin) -> Iterator[httpx.Client]:
    with v6_client(clocked[0].url) as client:
        yield client


@pytest.fixture
def v5(clocked: tuple[ThreadedUvicorn, ManualClock], admin: SandboxAdmin) -> Iterator[httpx.Client]:
    with v5_client(clocked[0].url) as client:
        yield client


def _senders(v6: httpx.Client, *names: str, credits: int = 100) -> None:
    for name in names:
        make_v6(v6, name, credit_type="one_time_credit")
        data_of(grant_v6(v6, name, credits))


def _credits(v6: httpx.Client, name: str) -> tuple[int, int]:
    details = data_of(v6.get(f"/subaccounts/{name}/credits"))
    return details["balance"], details["used"]


def test_sending_round_trips_and_reset_stops_it(admin: SandboxAdmin) -> None:
    """PUT answers what GET reads back; counters start at 0; reset stops and clears."""
    answered = admin.set_sending(12.5, seed=4)
    assert answered == {"emails_per_s": 12.5, "seed": 4, "sent": 0, "refused": 0}
    assert admin.sending() == answered
    assert admin.set_sending(3)["seed"] is None
    admin.reset()
    assert admin.sending() == {"emails_per_s": 0, "seed": None, "sent": 0, "refused": 0}


@pytest.mark.parametrize(
    "body",
    [
        {"emails_per_s": True},
        {"emails_per_s": "10"},
        {"emails_per_s": -0.5},
        {"emails_per_s": 1, "seed": "7"},
        {"emails_per_s": 1, "per_account": True},
        {"seed": 1},
    ],
)
def test_bad_sending_bodies_are_400(
    clocked: tuple[ThreadedUvicorn, ManualClock], admin: SandboxAdmin, body: dict[str, Any]
) -> None:
    """Strict numbers only; a refused body changes nothing."""
    admin.set_sending(2, seed=1)
    response = httpx.put(f"{clocked[0].url}/_sandbox/sending", json=body)
    assert error_of(response, 400)["error"] == "Invalid Parameters"
    assert admin.sending()["emails_per_s"] == 2


def test_credit_details_report_used_on_both_surfaces(
    v6: httpx.Client, v5: httpx.Client, admin: SandboxAdmin, clock: ManualClock
) -> None:
    """10 emails/s for 3 s over two senders: 15 each; both surfaces and the state say so."""
    _senders(v6, "alpha", "bravo")
    admin.set_sending(10, seed=3)
    clock.now += 3
    assert _credits(v6, "alpha") == (85, 15)
    v5_details = data_of(v5.get("/subaccounts/getcredit", params={"username": "bravo"}))
    assert (v5_details["balance"], v5_details["used"]) == (85, 15)
    accounts = admin.state()["subaccounts"]
    assert {name: a["used"] for name, a in accounts.items()} == {"alpha": 15, "bravo": 15}
    assert admin.sending() == {"emails_per_s": 10, "seed": 3, "sent": 30, "refused": 0}


def test_balance_plus_used_moves_only_with_grants_and_deductions(
    v6: httpx.Client, admin: SandboxAdmin, clock: ManualClock
) -> None:
    """A grant raises the balance, not used; sending lowers the balance and raises used."""
    _senders(v6, "alpha")
    admin.set_sending(4)
    clock.now += 5
    assert _credits(v6, "alpha") == (80, 20)
    assert data_of(grant_v6(v6, "alpha", 50))["balance"] == 130  # 20 sent before the grant
    clock.now += 5
    assert data_of(grant_v6(v6, "alpha", 10, "decrease"))["balance"] == 100
    balance, used = _credits(v6, "alpha")
    assert (balance, used, balance + used) == (100, 40, 140)


def test_disabled_and_empty_subaccounts_do_not_send(
    v6: httpx.Client, admin: SandboxAdmin, clock: ManualClock
) -> None:
    """A disabled sender keeps its credits; one at 0 refuses its share, counted."""
    _senders(v6, "alpha", "bravo")
    make_v6(v6, "empty", credit_type="one_time_credit")
    data_of(v6.patch("/subaccounts/bravo", json={"disabled": True}))
    admin.set_sending(6, seed=1)
    clock.now += 1
    assert [_credits(v6, name) for name in ("alpha", "bravo", "empty")] == [
        (97, 3),
        (100, 0),
        (0, 0),
    ]
    assert (admin.sending()["sent"], admin.sending()["refused"]) == (3, 3)


def test_the_same_seed_tells_the_same_story(
    v6: httpx.Client, admin: SandboxAdmin, clock: ManualClock
) -> None:
    """Two runs with one seed and one sequence of requests consume identically."""

    def run() -> list[tuple[int, int]]:
        admin.reset()
        _senders(v6, "alpha", "bravo", "charlie")
        admin.set_sending(5, seed=11)
        for _ in range(4):
            clock.now += 0.5
            v6.get("/subaccounts")  # any request advances the sending
        return [_credits(v6, name) for name in ("alpha", "bravo", "charlie")]

    first = run()
    assert sum(used for _, used in first) == 10  # 4 * 0.5 s * 5/s
    assert all(balance + used == 100 for balance, used in first)
    assert run() == first


def test_state_can_set_used(v6: httpx.Client, admin: SandboxAdmin) -> None:
    """PUT /_sandbox/state sets `used` like any other field; credit details then report it."""
    _senders(v6, "alpha")
    state = admin.set_state({"subaccounts": {"alpha": {"used": 7, "balance": 3}}})
    assert (state["subaccounts"]["alpha"]["used"], state["subaccounts"]["alpha"]["balance"]) == (
        7,
        3,
    )
    assert _credits(v6, "alpha") == (3, 7)
    refused = httpx.put(
        f"{admin.base_url}/_sandbox/state", json={"subaccounts": {"alpha": {"used": -1}}}
    )
    assert error_of(refused, 400)


def test_sending_on_the_real_clock(sandbox_server: ThreadedUvicorn, sandbox: SandboxAdmin) -> None:
    """On the real clock balances fall by themselves between readings; nothing is lost."""
    with v6_client(sandbox_server.url) as v6:
        _senders(v6, "alpha", "bravo", credits=1000)
        sandbox.set_sending(2000, seed=5)
        wait_until(lambda: _credits(v6, "alpha")[0] < 1000, what="alpha to send mail")
        sandbox.set_sending(0)
        readings = [_credits(v6, name) for name in ("alpha", "bravo")]
    assert all(balance + used == 1000 for balance, used in readings)
    assert sandbox.sending()["sent"] == sum(used for _, used in readings) > 0
