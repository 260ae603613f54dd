"""Drift injected by hand: someone else changes subaccounts behind the worker's back.

Tests of reconciliation need the remote state to drift without the journal showing an API call
of ours. `PUT /_sandbox/state` does each kind: disable/enable, delete (`null`), change the credit
type, create an unmanaged subaccount; the public API then shows the drift.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.sandbox_support import (
    START_BALANCE,
    data_of,
    error_of,
    grant_v6,
    make_v6,
    v6_client,
)
from tests.servers import ThreadedUvicorn
from worker.sandbox import SandboxAdmin, SandboxAdminError


@pytest.fixture
def v6(sandbox_server: ThreadedUvicorn, sandbox: SandboxAdmin) -> Iterator[httpx.Client]:
    """A raw v6 client on a freshly reset sandbox, with subaccount alpha holding 40 credits."""
    with v6_client(sandbox_server.url) as client:
        make_v6(client, "alpha", credit_type="one_time_credit")
        data_of(grant_v6(client, "alpha", 40))
        yield client


def _journal_length(sandbox: SandboxAdmin) -> int:
    return len(sandbox.journal())


def test_disable_enable_and_credit_type_drift(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """Disabling and changing the credit type by hand show in the API, not in the journal."""
    before = _journal_length(sandbox)
    sandbox.set_state({"subaccounts": {"alpha": {"disabled": True, "credit_type": "unlimited"}}})
    details = data_of(v6.get("/subaccounts/alpha/credits"))
    assert (details["disabled"], details["credit_type"], details["balance"]) == (
        True,
        "unlimited",
        40,
    )
    sandbox.set_state({"subaccounts": {"alpha": {"disabled": False}}})
    assert data_of(v6.get("/subaccounts/alpha/credits"))["disabled"] is False
    assert _journal_length(sandbox) == before


def test_delete_by_hand_returns_the_credits(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """`null` deletes a subaccount as the API would (credits back to the master), unjournaled."""
    before = _journal_length(sandbox)
    state = sandbox.set_state({"subaccounts": {"alpha": None}})
    assert "alpha" not in state["subaccounts"]
    assert state["master_balance"] == START_BALANCE
    assert error_of(v6.get("/subaccounts/alpha/credits"), 404)
    assert _journal_length(sandbox) == before
    make_v6(v6, "alpha")  # the username is free again


def test_deleting_an_unknown_subaccount_changes_nothing(
    v6: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """All or nothing: deleting a missing subaccount is a 400, and nothing else applies."""
    with pytest.raises(SandboxAdminError, match="ghost"):
        sandbox.set_state({"subaccounts": {"alpha": {"disabled": True}, "ghost": None}})
    assert data_of(v6.get("/subaccounts/alpha/credits"))["disabled"] is False


def test_an_unmanaged_subaccount_appears_in_the_list(
    v6: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """A subaccount created by hand is listed and usable like any other, without a journal entry."""
    before = _journal_length(sandbox)
    sandbox.set_state(
        {"subaccounts": {"stranger": {"email": "s@example.com", "credit_type": "one_time_credit"}}}
    )
    listed = data_of(v6.get("/subaccounts"))
    assert [s["username"] for s in listed["subaccounts"]] == ["alpha", "stranger"]
    assert data_of(grant_v6(v6, "stranger", 5))["balance"] == 5
    assert _journal_length(sandbox) == before + 1  # only the grant, an API call
