"""The sandbox over real HTTP (uvicorn on loopback): wire contract, rules, journal and faults.

These tests speak raw httpx on purpose: they pin the wire contract the project's client is
written against, without depending on that client.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_API_KEY
from tests.sandbox_support import (
    OTHER_PASSWORD,
    PASSWORD,
    START_BALANCE,
    data_of,
    error_of,
    grant_v6,
    make_v5,
    make_v6,
)
from tests.servers import ThreadedUvicorn
from worker.sandbox import SandboxAdmin, SandboxAdminError, create_app

# --- operations on both surfaces --------------------------------------------------------------


def test_v6_create_answers_201_with_the_subaccount(v6: httpx.Client) -> None:
    """v6 create answers 201 with the subaccount object and defaults credit_type to unlimited."""
    assert make_v6(v6, "alpha") == {
        "username": "alpha",
        "email": "alpha@example.com",
        "credit_type": "unlimited",
        "disabled": False,
    }


def test_v5_create_with_and_without_password(v5: httpx.Client, sandbox: SandboxAdmin) -> None:
    """v5 create answers 200; the password is required iff setpassword is "1"."""
    assert make_v5(v5, "nopass", credit_type="one_time_credit")["credit_type"] == "one_time_credit"
    body = {"username": "withpass", "email": "w@example.com", "setpassword": "1"}
    missing = v5.post("/subaccounts/createSubaccount", json=body)
    assert error_of(missing, 400)["detail"].startswith("password:")
    made = v5.post("/subaccounts/createSubaccount", json={**body, "password": PASSWORD})
    assert data_of(made)["username"] == "withpass"
    accounts = sandbox.state()["subaccounts"]
    assert (accounts["nopass"]["has_password"], accounts["withpass"]["has_password"]) == (
        False,
        True,
    )


def test_v6_patch_updates_fields(v6: httpx.Client) -> None:
    """PATCH with email/credit_type/password updates them (the sandbox-defined extension)."""
    make_v6(v6, "alpha")
    body = {
        "email": "new@example.org",
        "credit_type": "one_time_credit",
        "password": OTHER_PASSWORD,
    }
    data = data_of(v6.patch("/subaccounts/alpha", json=body))
    assert (data["email"], data["credit_type"]) == ("new@example.org", "one_time_credit")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"disabled": True, "email": "x@example.com"}, "disabled"), ({}, "body")],
)
def test_v6_patch_refuses_mixed_or_empty_bodies(
    v6: httpx.Client, body: dict[str, Any], field: str
) -> None:
    """PATCH may not mix `disabled` with other fields, nor change nothing."""
    make_v6(v6, "alpha")
    assert error_of(v6.patch("/subaccounts/alpha", json=body), 400)["detail"].startswith(field)


def test_v5_update_requires_matching_confirmation(v5: httpx.Client) -> None:
    """v5 update changes the email; confirm_password must equal new_password."""
    make_v5(v5, "alpha")
    body = {"username": "alpha", "new_password": PASSWORD, "confirm_password": OTHER_PASSWORD}
    mismatch = v5.post("/subaccounts/updateSubaccount", json=body)
    assert error_of(mismatch, 400)["detail"].startswith("confirm_password:")
    body = {"username": "alpha", "new_email": "n@example.org", "credit_type": "one_time_credit"}
    data = data_of(v5.post("/subaccounts/updateSubaccount", json=body))
    assert (data["email"], data["credit_type"]) == ("n@example.org", "one_time_credit")


def test_enable_and_disable_on_both_surfaces(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """Both surfaces disable and enable, journaled as `disable` and `enable`."""
    make_v6(v6, "alpha")
    assert data_of(v6.patch("/subaccounts/alpha", json={"disabled": True}))["disabled"] is True
    assert data_of(v5.patch("/subaccounts", json={"username": "alpha", "disabled": False})) == {
        "username": "alpha",
        "email": "alpha@example.com",
        "credit_type": "unlimited",
        "disabled": False,
    }
    data_of(v5.patch("/subaccounts", json={"username": "alpha", "disabled": True}))
    data_of(v6.patch("/subaccounts/alpha", json={"disabled": False}))
    ops = [(e["surface"], e["operation"]) for e in sandbox.journal()][1:]
    assert ops == [("v6", "disable"), ("v5", "enable"), ("v5", "disable"), ("v6", "enable")]


def test_credits_move_between_master_and_subaccount(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """Increase takes credits from the master, decrease gives them back, on both surfaces."""
    make_v6(v6, "alpha")
    assert data_of(grant_v6(v6, "alpha", 300)) == {"username": "alpha", "balance": 300}
    body = {"username": "alpha", "action": "decrease", "amount": 120}
    assert data_of(v5.post("/subaccounts/setsubaccountcredit", json=body))["balance"] == 180
    state = sandbox.state()
    assert state["master_balance"] == START_BALANCE - 180
    assert state["subaccounts"]["alpha"]["balance"] == 180


def test_credits_need_a_balance_on_the_giving_side(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """Removing more than the subaccount has, or granting more than the master has, is a 400."""
    make_v6(v6, "alpha")
    grant_v6(v6, "alpha", 10)
    short = error_of(grant_v6(v6, "alpha", 11, "decrease"), 400)
    assert short["detail"] == "amount: insufficient balance"
    sandbox.set_state({"master_balance": 5})
    poor = error_of(grant_v6(v6, "alpha", 6), 400)
    assert poor["detail"] == "amount: insufficient master balance"
    assert sandbox.state()["subaccounts"]["alpha"]["balance"] == 10


def test_delete_returns_credits_and_frees_the_username(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """Delete answers the returned credits, refunds the master, and the name can be reused."""
    make_v6(v6, "alpha")
    make_v6(v6, "bravo")
    grant_v6(v6, "alpha", 70)
    grant_v6(v6, "bravo", 30)
    deleted = v6.delete("/subaccounts/alpha")
    assert data_of(deleted) == {"username": "alpha", "returned_credits": 70}
    gone = v5.request("DELETE", "/subaccounts/delete", json={"username": "bravo"})
    assert data_of(gone) == {"username": "bravo", "returned_credits": 30}
    state = sandbox.state()
    assert (state["master_balance"], state["subaccounts"]) == (START_BALANCE, {})
    assert make_v6(v6, "alpha")["username"] == "alpha"


def test_disabled_subaccount_keeps_and_receives_credits(v6: httpx.Client) -> None:
    """Disabling keeps the balance, and a disabled subaccount can still be granted credits."""
    make_v6(v6, "alpha")
    grant_v6(v6, "alpha", 40)
    v6.patch("/subaccounts/alpha", json={"disabled": True})
    assert data_of(grant_v6(v6, "alpha", 2))["balance"] == 42
    details = data_of(v6.get("/subaccounts/alpha/credits"))
    assert (details["disabled"], details["balance"]) == (True, 42)


def test_repeated_grant_adds_twice(v6: httpx.Client) -> None:
    """Nothing is deduplicated: the same credit grant sent twice adds twice."""
    make_v6(v6, "alpha")
    grant_v6(v6, "alpha", 25)
    assert data_of(grant_v6(v6, "alpha", 25))["balance"] == 50


def test_recurring_and_credit_details_on_v6(v6: httpx.Client) -> None:
    """v6 recurring uses amount/period keys; credit details report them, the balance and used."""
    make_v6(v6, "alpha")
    body = {"amount": 500, "period": "monthly", "start_date": "2030-01-01", "end_date": None}
    recurring = data_of(v6.put("/subaccounts/alpha/recurring-credits", json=body))
    assert recurring == {**body, "status": "active"}
    details = data_of(v6.get("/subaccounts/alpha/credits"))
    assert details == {
        "username": "alpha",
        "email": "alpha@example.com",
        "credit_type": "unlimited",
        "disabled": False,
        "balance": 0,
        "used": 0,
        "recurring": recurring,
    }


def test_v5_recurring_spells_monthly_monhtly(v5: httpx.Client, sandbox: SandboxAdmin) -> None:
    """v5 takes and answers "monhtly" (sic), refuses "monthly", and stores it as monthly."""
    make_v5(v5, "alpha")
    body = {"username": "alpha", "recurring_credit": 90, "timeperiod": "monthly"}
    refused = v5.post("/setrecurringcreditddetails", json=body)
    assert error_of(refused, 400)["detail"].startswith("timeperiod:")
    body = {**body, "timeperiod": "monhtly", "status": "inactive", "start_date": "2030-02-01"}
    data = data_of(v5.post("/setrecurringcreditddetails", json=body))
    assert data == {
        "recurring_credit": 90,
        "timeperiod": "monhtly",
        "start_date": "2030-02-01",
        "end_date": None,
        "status": "inactive",
    }
    details = data_of(v5.get("/subaccounts/getcredit", params={"username": "alpha"}))
    assert (details["balance"], details["recurring"]) == (0, data)
    stored = sandbox.state()["subaccounts"]["alpha"]["recurring"]
    assert (stored["period"], stored["amount"]) == ("monthly", 90)


def test_v6_refuses_the_v5_spelling_and_reversed_dates(v6: httpx.Client) -> None:
    """v6 refuses "monhtly", and an end date before the start date."""
    make_v6(v6, "alpha")
    path = "/subaccounts/alpha/recurring-credits"
    sic = v6.put(path, json={"amount": 1, "period": "monhtly"})
    assert error_of(sic, 400)["detail"].startswith("period:")
    dates = {"amount": 1, "period": "daily", "start_date": "2030-02-01", "end_date": "2030-01-01"}
    assert error_of(v6.put(path, json=dates), 400)["detail"].startswith("end_date:")


@pytest.mark.parametrize(
    ("path", "key"),
    [("/v6/subaccounts", "v6"), ("/v5/subaccounts/getSubAccounts", "v5")],
)
def test_list_pages_in_creation_order(
    v6: httpx.Client, sandbox_server: ThreadedUvicorn, path: str, key: str
) -> None:
    """List skips `offset` subaccounts in creation order and reports the total."""
    for name in ("charlie", "alpha", "bravo"):
        make_v6(v6, name)
    headers = {"v6": {"Authorization": f"Bearer {TEST_API_KEY}"}, "v5": {"api_key": TEST_API_KEY}}
    url = f"{sandbox_server.url}{path}"
    page = data_of(httpx.get(url, params={"limit": 2, "offset": 1}, headers=headers[key]))
    assert [s["username"] for s in page["subaccounts"]] == ["alpha", "bravo"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    default = data_of(httpx.get(url, headers=headers[key]))
    assert (len(default["subaccounts"]), default["limit"], default["offset"]) == (3, 20, 0)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"offset": -1}],
)
def test_list_refuses_out_of_range_paging(v6: httpx.Client, params: dict[str, Any]) -> None:
    """limit outside 1..1000 or a negative offset is a 400 naming the parameter."""
    detail = error_of(v6.get("/subaccounts", params=params), 400)["detail"]
    assert detail.startswith(next(iter(params)))


# --- auth, master account, validation, 404/409 ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v6/subaccounts", {}),
        ("/v6/subaccounts", {"Authorization": "Bearer wrong-key"}),
        ("/v6/subaccounts", {"api_key": TEST_API_KEY}),
        ("/v5/subaccounts/getSubAccounts", {}),
        ("/v5/subaccounts/getSubAccounts", {"api_key": "wrong-key"}),
        ("/v5/subaccounts/getSubAccounts", {"Authorization": f"Bearer {TEST_API_KEY}"}),
    ],
)
def test_missing_or_wrong_key_is_401(
    sandbox_server: ThreadedUvicorn, sandbox: SandboxAdmin, path: str, headers: dict[str, str]
) -> None:
    """Each surface takes only its own auth header with the right key."""
    response = httpx.get(f"{sandbox_server.url}{path}", headers=headers)
    assert error_of(response, 401)["error"] == "Unauthorized"


def test_inactive_master_forbids_every_call(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """With the master inactive both surfaces answer 403 "You cannot use this feature"."""
    make_v6(v6, "alpha")
    sandbox.set_state({"master_active": False})
    for response in (v6.get("/subaccounts"), grant_v6(v6, "alpha", 1), v5.patch("/subaccounts")):
        assert error_of(response, 403)["error"] == "You cannot use this feature"
    assert sandbox.state()["subaccounts"]["alpha"]["balance"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "alpha", "email": "a@example.com", "password": "nodigitsatall"}, "password"),
        ({"username": "alpha", "email": "a@example.com", "password": "Short1"}, "password"),
        ({"username": "alpha", "email": "a@example.com"}, "password"),
        ({"username": "-bad", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "ab", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alpha", "email": "a@@example.com", "password": PASSWORD}, "email"),
        ({"username": "alpha", "email": "a@localhost", "password": PASSWORD}, "email"),
        (
            {"username": "alpha", "email": "a@x.io", "password": PASSWORD, "credit_type": "free"},
            "credit_type",
        ),
    ],
)
def test_invalid_create_names_the_field(
    v6: httpx.Client, sandbox: SandboxAdmin, body: dict[str, Any], field: str
) -> None:
    """A bad create is 400 "Invalid Parameters" with a detail naming the field; nothing is made."""
    refused = error_of(v6.post("/subaccounts", json=body), 400)
    assert refused["error"] == "Invalid Parameters"
    assert refused["detail"].startswith(f"{field}:"), refused
    assert sandbox.state()["subaccounts"] == {}


@pytest.mark.parametrize("amount", [0, -5, "10", 1.5, True, 1_000_000_001, None])
def test_invalid_amount_is_400(v6: httpx.Client, v5: httpx.Client, amount: Any) -> None:
    """Credits must be a positive JSON integer up to 1e9, on both surfaces."""
    make_v6(v6, "alpha")
    body = {"action": "increase", "amount": amount}
    assert error_of(grant_v6(v6, "alpha", amount), 400)["detail"].startswith("amount:")
    v5_response = v5.post("/subaccounts/setsubaccountcredit", json={"username": "alpha", **body})
    assert error_of(v5_response, 400)["detail"].startswith("amount:")


def test_malformed_json_is_400(v6: httpx.Client) -> None:
    """A body that is not a JSON object is a 400 naming the body."""
    refused = error_of(v6.post("/subaccounts", content=b"{not json"), 400)
    assert refused["detail"] == "body: malformed JSON"
    listed = error_of(v6.post("/subaccounts", json=[1, 2]), 400)
    assert listed["detail"] == "body: must be a JSON object"


def test_unknown_username_is_404(v6: httpx.Client, v5: httpx.Client) -> None:
    """Calls on a username that does not exist answer 404 "Subaccount does not exists" (sic)."""
    responses = [
        v6.delete("/subaccounts/ghost"),
        v6.get("/subaccounts/ghost/credits"),
        grant_v6(v6, "ghost", 1),
        v5.patch("/subaccounts", json={"username": "ghost", "disabled": True}),
        v5.get("/subaccounts/getcredit", params={"username": "ghost"}),
    ]
    for response in responses:
        assert error_of(response, 404)["error"] == "Subaccount does not exists"


def test_taken_username_is_409(v6: httpx.Client, v5: httpx.Client) -> None:
    """Creating a taken username answers 409 on either surface."""
    make_v6(v6, "alpha")
    again = v5.post(
        "/subaccounts/createSubaccount",
        json={"username": "alpha", "email": "b@example.com", "setpassword": "0"},
    )
    assert error_of(again, 409)["error"] == "Subaccount already exists"


def test_unknown_route_uses_the_error_envelope(v6: httpx.Client) -> None:
    """An unknown path answers 404 in the API's error envelope."""
    assert error_of(v6.get("/nowhere"), 404)["error"] == "Not Found"


# --- journal -------------------------------------------------------------------------------


def test_journal_names_operations_and_hides_passwords(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """Each state-changing call is journaled by name, with credit amounts and no password."""
    make_v6(v6, "alpha")
    v6.patch("/subaccounts/alpha", json={"password": OTHER_PASSWORD})
    v5.post(
        "/subaccounts/updateSubaccount",
        json={"username": "alpha", "new_password": PASSWORD, "confirm_password": PASSWORD},
    )
    grant_v6(v6, "alpha", 9)
    grant_v6(v6, "alpha", 4, "decrease")
    v6.put("/subaccounts/alpha/recurring-credits", json={"amount": 3, "period": "weekly"})
    v6.patch("/subaccounts/alpha", json={"disabled": True})
    v6.patch("/subaccounts/alpha", json={"disabled": False})
    v6.get("/subaccounts")
    v6.get("/subaccounts/alpha/credits")
    v6.delete("/subaccounts/alpha")
    v6.post("/subaccounts", json={"username": "bravo", "email": "b@x.io", "password": "weakpasswd"})
    entries = sandbox.journal()
    assert [e["operation"] for e in entries] == [
        "create", "update", "update", "add_credits", "remove_credits",
        "set_recurring", "disable", "enable", "delete", "create",
    ]  # fmt: skip
    assert [e["seq"] for e in entries] == list(range(1, 11))
    assert [e["amount"] for e in entries[3:5]] == [9, 4]
    assert entries[8]["amount"] == 5  # credits returned by the delete
    assert all(e["applied"] for e in entries[:9])
    assert (entries[9]["status"], entries[9]["applied"]) == (400, False)
    assert entries[0]["args"]["password"] == "***"
    dumped = json.dumps(entries) + json.dumps(sandbox.state())
    for secret in (PASSWORD, OTHER_PASSWORD, "weakpasswd"):
        assert secret not in dumped


def test_journal_entries_carry_the_contract_fields(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """An entry carries the contract's fields: surface, operation, status, fault, result."""
    make_v6(v6, "alpha")
    (entry,) = sandbox.journal()
    assert entry["time"].endswith("+00:00")
    assert {k: entry[k] for k in ("surface", "operation", "username", "status", "fault")} == {
        "surface": "v6",
        "operation": "create",
        "username": "alpha",
        "status": 201,
        "fault": None,
    }
    assert entry["result"]["username"] == "alpha"
    error_of(v6.delete("/subaccounts/ghost"), 404)
    assert sandbox.journal()[-1]["result"] == "Subaccount does not exists"


def test_journal_filters_by_operation_username_and_seq(
    v6: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """The journal can be filtered by operation, username and since_seq."""
    make_v6(v6, "alpha")
    make_v6(v6, "bravo")
    grant_v6(v6, "bravo", 1)
    assert [e["username"] for e in sandbox.journal(operation="create")] == ["alpha", "bravo"]
    assert [e["operation"] for e in sandbox.journal(username="bravo")] == ["create", "add_credits"]
    assert [e["seq"] for e in sandbox.journal(since_seq=1)] == [2, 3]


# --- faults --------------------------------------------------------------------------------


def test_error_next_answers_503_without_effect(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """error_next makes the next call a 503 "Server error", not applied; then calls succeed."""
    make_v6(v6, "alpha")
    sandbox.set_faults({"operations": {"add_credits": {"error_next": 1}}})
    assert error_of(grant_v6(v6, "alpha", 10), 503)["error"] == "Server error"
    assert sandbox.state()["subaccounts"]["alpha"]["balance"] == 0
    entry = sandbox.journal()[-1]
    assert (entry["fault"], entry["applied"], entry["status"], entry["amount"]) == (
        "error",
        False,
        503,
        10,
    )
    assert sandbox.faults()["operations"]["add_credits"]["error_next"] == 0
    assert data_of(grant_v6(v6, "alpha", 10))["balance"] == 10


def test_error_rate_is_reproducible_with_a_seed(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """The same seed gives the same pattern of injected errors."""
    config = {"seed": 7, "default": {"error_rate": 0.5, "error_status": 502}}

    def pattern() -> list[int]:
        sandbox.set_faults(config)
        return [v6.get("/subaccounts").status_code for _ in range(16)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 502}


def test_rate_limit_answers_429_with_retry_after(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """Over the configured rate, calls get 429 "Too Many Requests" and a Retry-After header."""
    sandbox.set_faults({"rate_limit": {"rps": 0.5, "retry_after_s": 3}})
    assert v6.get("/subaccounts").status_code == 200
    limited = v6.post("/subaccounts", json={"username": "alpha"})
    assert error_of(limited, 429)["error"] == "Too Many Requests"
    assert limited.headers["Retry-After"] == "3"
    entry = sandbox.journal()[-1]
    assert (entry["fault"], entry["status"], entry["applied"]) == ("rate_limited", 429, False)


def test_hang_times_out_the_client_without_effect(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """A hang keeps the client waiting past its read timeout and applies nothing."""
    sandbox.set_faults({"operations": {"create": {"hang_next": 1, "hang_s": 0.6}}})
    body = {"username": "alpha", "email": "a@example.com", "password": PASSWORD}
    with pytest.raises(httpx.ReadTimeout):
        v6.post("/subaccounts", json=body, timeout=httpx.Timeout(5.0, read=0.2))
    assert sandbox.state()["subaccounts"] == {}
    entry = sandbox.journal()[-1]
    assert (entry["fault"], entry["applied"], entry["status"]) == ("hang", False, None)


def test_hang_ends_by_closing_without_a_response(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """A client patient enough to outwait hang_s sees the connection close with no response."""
    sandbox.set_faults({"operations": {"list": {"hang_next": 1, "hang_s": 0.3}}})
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        v6.get("/subaccounts")
    assert time.monotonic() - started >= 0.3
    assert data_of(v6.get("/subaccounts"))["total"] == 0


@pytest.mark.parametrize("surface", ["v6", "v5"])
def test_drop_applies_then_closes_without_a_response(
    v6: httpx.Client, v5: httpx.Client, sandbox: SandboxAdmin, surface: str
) -> None:
    """A drop applies and journals the change, then the client sees no response at all."""
    make_v6(v6, "alpha")
    sandbox.set_faults({"operations": {"add_credits": {"drop_next": 1}}})
    body: dict[str, Any] = {"action": "increase", "amount": 8}
    client, path = (v6, "/subaccounts/alpha/credits")
    if surface == "v5":
        client, path, body = (v5, "/subaccounts/setsubaccountcredit", {**body, "username": "alpha"})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(path, json=body)
    entry = sandbox.journal()[-1]
    assert (entry["fault"], entry["applied"], entry["status"]) == ("drop", True, 200)
    assert entry["result"] == {"username": "alpha", "balance": 8}
    assert data_of(v6.get("/subaccounts/alpha/credits"))["balance"] == 8


def test_latency_delays_calls_at_least_the_configured_time(
    v6: httpx.Client, sandbox: SandboxAdmin
) -> None:
    """latency_ms delays the answer by at least that long."""
    sandbox.set_faults({"operations": {"list": {"latency_ms": 200}}})
    started = time.monotonic()
    data_of(v6.get("/subaccounts"))
    assert time.monotonic() - started >= 0.2


def test_faults_round_trip_and_reset(sandbox: SandboxAdmin) -> None:
    """PUT replaces the whole fault config and answers it; reset restores the start config."""
    config = {"seed": 3, "default": {"latency_ms": 5}, "operations": {"delete": {"drop_rate": 1}}}
    answered = sandbox.set_faults(config)
    assert answered == sandbox.faults()
    assert (answered["seed"], answered["default"]["latency_ms"]) == (3, 5)
    assert answered["operations"]["delete"]["drop_rate"] == 1
    assert answered["rate_limit"] == {"rps": None, "retry_after_s": 1}
    sandbox.reset()
    assert sandbox.faults()["operations"] == {}


@pytest.mark.parametrize(
    "config",
    [{"operations": {"bogus": {}}}, {"default": {"error_status": 418}}, {"seed": "x"}],
)
def test_invalid_fault_config_is_400(sandbox_server: ThreadedUvicorn, config: Any) -> None:
    """FastAPI's own validation errors come out as the API's 400 envelope."""
    response = httpx.put(f"{sandbox_server.url}/_sandbox/faults", json=config)
    assert error_of(response, 400)["error"] == "Invalid Parameters"


def test_start_faults_and_balance_survive_reset() -> None:
    """create_app's faults and master balance are what reset goes back to."""
    app = create_app(
        api_key=TEST_API_KEY,
        master_balance=50,
        faults={"operations": {"list": {"error_next": 1, "error_status": 500}}},
    )
    server = ThreadedUvicorn(app).start()
    try:
        headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
        with SandboxAdmin(server.url) as admin, httpx.Client(headers=headers) as client:
            url = f"{server.url}/v6/subaccounts"
            assert client.get(url).status_code == 500
            assert client.get(url).status_code == 200
            admin.reset()
            assert client.get(url).status_code == 500
            assert admin.state()["master_balance"] == 50
    finally:
        server.stop()


# --- admin, concurrency, OpenAPI -----------------------------------------------------------


def test_state_can_be_set_directly(v6: httpx.Client, sandbox: SandboxAdmin) -> None:
    """PUT /_sandbox/state upserts subaccounts and sets the master, without journaling."""
    state = sandbox.set_state(
        {
            "master_balance": 77,
            "subaccounts": {
                "alpha": {"email": "a@example.com", "balance": 12, "disabled": True},
                "bravo": {"email": "b@example.com", "recurring": {"amount": 1, "period": "daily"}},
            },
        }
    )
    assert state["master_balance"] == 77
    assert state["subaccounts"]["alpha"]["balance"] == 12
    assert state["subaccounts"]["bravo"]["recurring"]["period"] == "daily"
    assert data_of(v6.get("/subaccounts/alpha/credits"))["disabled"] is True
    assert sandbox.journal() == []
    with pytest.raises(SandboxAdminError, match="400"):
        sandbox.set_state({"subaccounts": {"alpha": {"password": PASSWORD}}})
    with pytest.raises(SandboxAdminError, match="email"):
        sandbox.set_state({"subaccounts": {"charlie": {"balance": 1}}})


def test_concurrent_grants_all_apply(v6: httpx.Client, sandbox_server: ThreadedUvicorn) -> None:
    """Grants sent concurrently from many threads all apply, none lost or merged."""
    make_v6(v6, "alpha")
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    statuses: list[int] = []

    def grant() -> None:
        with httpx.Client(base_url=f"{sandbox_server.url}/v6", headers=headers) as client:
            for _ in range(5):
                statuses.append(grant_v6(client, "alpha", 1).status_code)

    threads = [threading.Thread(target=grant) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40
    assert data_of(v6.get("/subaccounts/alpha/credits"))["balance"] == 40


def test_health(sandbox: SandboxAdmin) -> None:
    """The health route answers ok."""
    assert sandbox.health()


def test_openapi_describes_every_route(sandbox_server: ThreadedUvicorn) -> None:
    """/openapi.json lists every route, marks sandbox-defined ones, and tags the admin routes."""
    spec = httpx.get(f"{sandbox_server.url}/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert routes == {
        ("POST", "/v6/subaccounts"),
        ("GET", "/v6/subaccounts"),
        ("PATCH", "/v6/subaccounts/{username}"),
        ("DELETE", "/v6/subaccounts/{username}"),
        ("GET", "/v6/subaccounts/{username}/credits"),
        ("POST", "/v6/subaccounts/{username}/credits"),
        ("PUT", "/v6/subaccounts/{username}/recurring-credits"),
        ("POST", "/v5/subaccounts/createSubaccount"),
        ("POST", "/v5/subaccounts/updateSubaccount"),
        ("POST", "/v5/subaccounts/setsubaccountcredit"),
        ("POST", "/v5/setrecurringcreditddetails"),
        ("GET", "/v5/subaccounts/getSubAccounts"),
        ("PATCH", "/v5/subaccounts"),
        ("DELETE", "/v5/subaccounts/delete"),
        ("GET", "/v5/subaccounts/getcredit"),
        ("POST", "/_sandbox/reset"),
        ("GET", "/_sandbox/journal"),
        ("GET", "/_sandbox/faults"),
        ("PUT", "/_sandbox/faults"),
        ("GET", "/_sandbox/state"),
        ("PUT", "/_sandbox/state"),
        ("GET", "/_sandbox/sending"),
        ("PUT", "/_sandbox/sending"),
        ("POST", "/_sandbox/top_up"),
        ("GET", "/_sandbox/health"),
    }
    sandbox_defined = [
        ("patch", "/v6/subaccounts/{username}"),
        ("get", "/v6/subaccounts/{username}/credits"),
        ("post", "/v6/subaccounts/{username}/credits"),
        ("put", "/v6/subaccounts/{username}/recurring-credits"),
        ("get", "/v5/subaccounts/getcredit"),
    ]
    for method, path in sandbox_defined:
        assert "defined by the sandbox" in spec["paths"][path][method]["description"]
    for path, ops in spec["paths"].items():
        if path.startswith("/_sandbox"):
            assert all(op["tags"] == ["sandbox admin"] for op in ops.values())
    assert '"422"' not in json.dumps(spec["paths"])  # FastAPI's 422s come out as 400s
    create = spec["paths"]["/v6/subaccounts"]["post"]
    body_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body_schema["required"]) == {"username", "email", "password"}
