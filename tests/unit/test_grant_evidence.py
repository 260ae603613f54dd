"""The grant row of the resolution table (worker.pipeline.steps): judged by allocated = balance +
used when the surface reports usage, by the balance alone otherwise, net of our other grants."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.plan import AddCredits
from handlers.requests import CreditType
from worker.api.models import CreditDetails
from worker.pipeline.steps import (
    ALLOCATED,
    BALANCE_ONLY,
    Applied,
    NotApplied,
    OurGrants,
    Undecidable,
    judge_grant,
)

GRANT = AddCredits.model_validate(
    {"request": {"username": "acme-1", "amount": 90}, "business_key": "invoice:INV-1"}
)


def _details(balance: int, used: int | None) -> CreditDetails:
    kind = CreditType.ONE_TIME_CREDIT
    return CreditDetails(
        username="acme-1", email="a@example.com", credit_type=kind, balance=balance, used=used
    )


# Rows: (balance, used before) -> (balance, used after), our grants since, expected
@pytest.mark.parametrize(
    ("before", "after", "ours", "expected"),
    [
        ((100, 0), (190, 0), OurGrants(), Applied),  # nothing sent: both readings agree
        ((100, 0), (150, 40), OurGrants(), Applied),  # 40 sent meanwhile: allocated +90
        ((100, 0), (60, 40), OurGrants(), NotApplied),  # 40 sent, allocated unchanged
        ((100, 0), (175, 40), OurGrants(applied=25), Applied),  # + another grant of ours
        ((100, 0), (85, 40), OurGrants(applied=25), NotApplied),  # only ours moved it
        ((100, 0), (150, 40), OurGrants(undecided=1), Undecidable),  # ours still unknown
        ((100, 0), (150, 40), OurGrants(known=False), Undecidable),  # record incomplete
        ((100, 0), (145, 40), OurGrants(), Undecidable),  # moved by neither 0 nor 90
        ((100, None), (190, None), OurGrants(), Applied),  # no usage reported: balance
        ((100, None), (100, None), OurGrants(), NotApplied),
        ((100, None), (150, None), OurGrants(), Undecidable),  # sent meanwhile: never guessed
        ((100, 0), (150, None), OurGrants(), Undecidable),  # usage on one reading only
    ],
)
def test_a_grant_is_judged_by_allocated_net_of_our_grants(
    before: tuple[int, int | None],
    after: tuple[int, int | None],
    ours: OurGrants,
    expected: type[Any],
) -> None:
    evidence = {"balance_before": before[0], "used_before": before[1]}
    resolution = judge_grant(GRANT, evidence, _details(*after), ours)
    assert isinstance(resolution, expected)


def test_undecidable_readings_say_what_was_compared() -> None:
    with_usage = judge_grant(
        GRANT, {"balance_before": 100, "used_before": 0}, _details(145, 40), OurGrants()
    )
    assert isinstance(with_usage, Undecidable)
    assert with_usage.readings == {
        "balance_before": 100, "balance_after": 145, "used_before": 0, "used_after": 40,
        "amount": 90, "evidence": ALLOCATED,
    }  # fmt: skip
    without = judge_grant(GRANT, {"balance_before": 100}, _details(150, None), OurGrants())
    assert isinstance(without, Undecidable)
    assert without.readings == {
        "balance_before": 100, "balance_after": 150, "amount": 90, "evidence": BALANCE_ONLY,
    }  # fmt: skip
