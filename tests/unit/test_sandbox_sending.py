"""Mail sending in the sandbox, driven by a clock the tests move by hand (no threads, no sleeps).

What must hold: enabled `one_time_credit` subaccounts consume `elapsed * rate` emails in total,
spread evenly with a seeded remainder; disabled and unlimited ones send nothing; a subaccount at
0 cannot send (refused, counted); `balance + used` changes only with grants and deductions.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.sandbox_support import ManualClock
from worker.sandbox.model import CreditType
from worker.sandbox.sending import Sending, SendingConfig
from worker.sandbox.state import SandboxState


def _world(*balances: int) -> tuple[SandboxState, Sending, ManualClock]:
    """A state with one `one_time_credit` subaccount per balance (s0, s1, ...), sending stopped."""
    clock = ManualClock(1000.0)
    state = SandboxState(1_000_000)
    for index, balance in enumerate(balances):
        state.create(f"s{index}", f"s{index}@example.com", CreditType.ONE_TIME_CREDIT, None)
        if balance:
            state.change_credits(f"s{index}", "increase", balance)
    return state, Sending(clock), clock


def _start(state: SandboxState, sending: Sending, rate: float, seed: int | None = 1) -> None:
    sending.configure(state, SendingConfig(emails_per_s=rate, seed=seed))


def _used(state: SandboxState) -> dict[str, tuple[int, int]]:
    return {a.username: (a.balance, a.used) for a in state.snapshot()[2]}


def test_elapsed_time_times_rate_is_spread_evenly() -> None:
    """10 emails/s for 2 s over 4 senders: 20 emails, 5 each; balance + used unchanged."""
    state, sending, clock = _world(100, 100, 100, 100)
    _start(state, sending, 10)
    clock.now += 2
    sending.advance(state)
    assert _used(state) == {f"s{i}": (95, 5) for i in range(4)}
    assert (sending.status().sent, sending.status().refused) == (20, 0)


def test_the_remainder_is_drawn_with_the_seed() -> None:
    """7 emails over 3 senders: 2 each and one extra, to a sender the seed decides, every time."""

    def run(seed: int) -> dict[str, tuple[int, int]]:
        state, sending, clock = _world(50, 50, 50)
        _start(state, sending, 7, seed)
        clock.now += 1
        sending.advance(state)
        return _used(state)

    first = run(seed=42)
    assert sorted(used for _, used in first.values()) == [2, 2, 3]
    assert run(seed=42) == first
    assert len({tuple(run(seed).items()) for seed in range(20)}) > 1  # the seed decides


def test_fractions_carry_over_between_advances() -> None:
    """At 1 email/s, three advances of 0.4 s send one email (after 1.2 s), not zero."""
    state, sending, clock = _world(10)
    _start(state, sending, 1)
    for _ in range(3):
        clock.now += 0.4
        sending.advance(state)
    assert _used(state) == {"s0": (9, 1)}


def test_disabled_and_unlimited_subaccounts_send_nothing() -> None:
    """Only enabled one_time_credit subaccounts are senders; the others keep their balance."""
    state, sending, clock = _world(30, 30, 30)
    state.set_disabled("s1", True)
    state.update("s2", credit_type=CreditType.UNLIMITED)
    _start(state, sending, 5)
    clock.now += 2
    sending.advance(state)
    assert _used(state) == {"s0": (20, 10), "s1": (30, 0), "s2": (30, 0)}


def test_a_subaccount_at_zero_cannot_send_and_refusals_are_counted() -> None:
    """A share beyond the balance is refused: 2 credits and a share of 5 → 2 sent, 3 refused."""
    state, sending, clock = _world(2, 0)
    _start(state, sending, 10)
    clock.now += 1
    sending.advance(state)
    assert _used(state) == {"s0": (0, 2), "s1": (0, 0)}
    status = sending.status()
    assert (status.sent, status.refused) == (2, 8)


def test_grants_raise_the_balance_not_used() -> None:
    """balance + used moves only with grants and deductions, whatever was sent meanwhile."""
    state, sending, clock = _world(100)
    _start(state, sending, 3)
    clock.now += 5
    sending.advance(state)
    state.change_credits("s0", "increase", 40)
    clock.now += 5
    sending.advance(state)
    state.change_credits("s0", "decrease", 10)
    ((balance, used),) = _used(state).values()
    assert (balance, used) == (100 - 30 + 40 - 10, 30)
    assert balance + used == 130


def test_zero_stops_and_a_restart_does_not_charge_the_pause() -> None:
    """Rate 0 stops; time spent stopped is not sent when sending starts again."""
    state, sending, clock = _world(100)
    _start(state, sending, 2)
    clock.now += 1
    _start(state, sending, 0)  # the second of sending at 2/s is accounted first
    clock.now += 100
    sending.advance(state)
    assert _used(state) == {"s0": (98, 2)}
    _start(state, sending, 2)
    clock.now += 1
    sending.advance(state)
    assert _used(state) == {"s0": (96, 4)}
    assert sending.status().sent == 4


def test_no_senders_sends_nothing_and_reset_clears() -> None:
    """Without senders nothing happens; reset stops sending and zeroes the counters."""
    state, sending, clock = _world()
    _start(state, sending, 50, seed=9)
    clock.now += 10
    sending.advance(state)
    assert (sending.status().sent, sending.status().refused) == (0, 0)
    sending.reset()
    assert sending.status().model_dump() == {
        "emails_per_s": 0,
        "seed": None,
        "sent": 0,
        "refused": 0,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"emails_per_s": True},
        {"emails_per_s": "5"},
        {"emails_per_s": -1},
        {"emails_per_s": float("inf")},
        {"emails_per_s": 1, "seed": 1.5},
        {"emails_per_s": 1, "seed": False},
        {"emails_per_s": 1, "burst": 3},
        {},
    ],
)
def test_the_config_is_strict(body: dict[str, object]) -> None:
    """Rates are non-negative finite numbers, seeds integers; nothing else is accepted."""
    with pytest.raises(ValidationError):
        SendingConfig.model_validate(body)
