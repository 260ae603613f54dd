"""The sandbox accepts what the v6 seed and the official v5 SDK send (issue 10, item 7).

Each test pins one refusal that used to turn a faithful client away: the seed's own example
password on v6, the SDK's recurring `status` flag forms, a 405 naming only one allowed method,
patterns missing from the OpenAPI schema, and a boolean taken as a fault count.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.sandbox_support import (
    data_of,
    error_of,
    make_v5,
    make_v6,
)
from tests.servers import ThreadedUvicorn
from worker.sandbox import SandboxAdmin

SEED_PASSWORD = "securepassword123"  # the v6 reference's create example


# --- passwords: v6 has its own policy, v5 keeps the SDK's ----------------------------------------


def test_v6_create_accepts_the_seed_example(v6: httpx.Client) -> None:
    """The v6 reference's own create example (lower case and digits only) is a 201."""
    body = {
        "username": "subaccount1",
        "email": "subaccount1@example.com",
        "password": SEED_PASSWORD,
        "credit_type": "one_time_credit",
    }
    created = data_of(v6.post("/subaccounts", json=body), 201)
    assert (created["username"], created["credit_type"]) == ("subaccount1", "one_time_credit")


def test_v6_patch_accepts_the_seed_example_password(v6: httpx.Client) -> None:
    """Changing a password through v6 applies the same v6 policy as create."""
    make_v6(v6, "alpha")
    assert data_of(v6.patch("/subaccounts/alpha", json={"password": SEED_PASSWORD}))


@pytest.mark.parametrize("password", ["abcdefgh", "12345678", "abc1234", "!@#$%^&*"])
def test_v6_still_refuses_weak_passwords(v6: httpx.Client, password: str) -> None:
    """v6 wants at least 8 characters with a letter and a digit."""
    body = {"username": "alpha", "email": "alpha@example.com", "password": password}
    refused = error_of(v6.post("/subaccounts", json=body), 400)
    assert refused["detail"].startswith("password:")
    assert password not in refused["detail"]


def test_v5_keeps_the_sdk_policy(v5: httpx.Client) -> None:
    """v5 (SDK: upper, lower and digit) still refuses the v6 example, on create and update."""
    body = {"username": "alpha", "email": "alpha@example.com", "setpassword": "1"}
    create = v5.post("/subaccounts/createSubaccount", json={**body, "password": SEED_PASSWORD})
    assert "upper-case" in error_of(create, 400)["detail"]
    make_v5(v5, "alpha")
    update = {"username": "alpha", "new_password": SEED_PASSWORD, "confirm_password": SEED_PASSWORD}
    assert error_of(v5.post("/subaccounts/updateSubaccount", json=update), 400)


# --- recurring status: the SDK's "flag to enable or disable" -----------------------------------

FLAGS = [("1", "active"), ("0", "inactive"), (True, "active"), (False, "inactive")]
FLAGS += [("active", "active"), ("inactive", "inactive")]


@pytest.mark.parametrize(("flag", "stored"), FLAGS)
def test_v5_recurring_status_takes_each_flag_form(
    v5: httpx.Client, sandbox: SandboxAdmin, flag: Any, stored: str
) -> None:
    """`"1"/"0"`, `true/false` and `active/inactive` all set it; answers say active/inactive."""
    make_v5(v5, "alpha")
    body = {"username": "alpha", "recurring_credit": 5, "timeperiod": "daily", "status": flag}
    assert data_of(v5.post("/setrecurringcreditddetails", json=body))["status"] == stored
    assert sandbox.state()["subaccounts"]["alpha"]["recurring"]["status"] == stored


@pytest.mark.parametrize(("flag", "stored"), FLAGS)
def test_v6_recurring_status_takes_each_flag_form(v6: httpx.Client, flag: Any, stored: str) -> None:
    """v6 (defined by the sandbox) takes the same forms as v5."""
    make_v6(v6, "alpha")
    body = {"amount": 5, "period": "weekly", "status": flag}
    assert data_of(v6.put("/subaccounts/alpha/recurring-credits", json=body))["status"] == stored


@pytest.mark.parametrize("flag", [1, 0, "true", "yes", "enabled", None, "Active"])
def test_recurring_status_refuses_other_forms(v6: httpx.Client, flag: Any) -> None:
    """Anything else is a 400 naming `status` (integers included: JSON 1 is not the SDK's "1")."""
    make_v6(v6, "alpha")
    body = {"amount": 5, "period": "weekly", "status": flag}
    refused = v6.put("/subaccounts/alpha/recurring-credits", json=body)
    assert error_of(refused, 400)["detail"].startswith("status:")


# --- 405 names every method of the path --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v6/subaccounts", {"GET", "POST"}),
        ("POST", "/v6/subaccounts/alpha", {"PATCH", "DELETE"}),
        ("PUT", "/v6/subaccounts/alpha/credits", {"GET", "POST"}),
        ("GET", "/v6/subaccounts/alpha/recurring-credits", {"PUT"}),
        ("GET", "/v5/subaccounts", {"PATCH"}),
        ("DELETE", "/_sandbox/faults", {"GET", "PUT"}),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    sandbox_server: ThreadedUvicorn, method: str, path: str, allowed: set[str]
) -> None:
    """The Allow header of a 405 lists all the methods the path serves, not just the first."""
    response = httpx.request(method, f"{sandbox_server.url}{path}")
    assert error_of(response, 405)
    assert set(response.headers["allow"].split(", ")) == allowed


# --- OpenAPI: the username and email rules are in the schema ------------------------------------


def _body_schema(spec: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


@pytest.mark.parametrize(
    ("value", "field", "valid"),
    [
        ("subaccount1", "username", True),
        ("a.b_c-d", "username", True),
        ("ab", "username", False),
        ("-alpha", "username", False),
        ("x" * 65, "username", False),
        ("alpha@example.com", "email", True),
        ("alpha@example", "email", False),
        ("alpha@.example.com", "email", False),
        ("alpha@example..com", "email", False),
        ("al pha@example.com", "email", False),
        ("a@b@example.com", "email", False),
    ],
)
def test_openapi_patterns_agree_with_the_api(
    v6: httpx.Client, sandbox_server: ThreadedUvicorn, value: str, field: str, valid: bool
) -> None:
    """Both surfaces publish `pattern`s for username and email, and the API enforces just them."""
    spec = httpx.get(f"{sandbox_server.url}/openapi.json").json()
    v6_props = _body_schema(spec, "/v6/subaccounts")["properties"]
    v5_props = _body_schema(spec, "/v5/subaccounts/createSubaccount")["properties"]
    path_params = spec["paths"]["/v6/subaccounts/{username}"]["delete"]["parameters"]
    path_pattern = next(p["schema"]["pattern"] for p in path_params if p["name"] == "username")
    pattern = v6_props[field]["pattern"]
    assert v5_props[field]["pattern"] == pattern
    assert field == "email" or path_pattern == pattern
    assert bool(re.search(pattern, value)) is valid
    body = {"username": "alpha", "email": "alpha@example.com", "password": "Passw0rd1"}
    answer = v6.post("/subaccounts", json={**body, field: value})
    assert answer.status_code == (201 if valid else 400), answer.text


# --- fault counts are strict integers ----------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"default": {"fail_after_commit_next": False}},
        {"default": {"error_next": True}},
        {"operations": {"create": {"drop_next": 1.0}}},
        {"default": {"hang_next": "1"}},
        {"default": {"latency_ms": "5"}},
        {"default": {"error_rate": True}},
        {"rate_limit": {"retry_after_s": True}},
        {"seed": False},
    ],
)
def test_fault_config_refuses_booleans_and_strings_as_numbers(
    sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn, config: dict[str, Any]
) -> None:
    """`fail_after_commit_next: false` and the like are 400s, and the config stays as it was."""
    before = sandbox.faults()
    response = httpx.put(f"{sandbox_server.url}/_sandbox/faults", json=config)
    assert error_of(response, 400)["error"] == "Invalid Parameters"
    assert sandbox.faults() == before


def test_fault_config_takes_integers_where_it_wants_numbers(sandbox: SandboxAdmin) -> None:
    """Integers are fine for rates, latencies and the rps (JSON has no separate float)."""
    config = {"rate_limit": {"rps": 50}, "default": {"latency_ms": 5, "error_rate": 0}}
    answered = sandbox.set_faults({**config, "operations": {"list": {"error_next": 2}}})
    assert (answered["default"]["latency_ms"], answered["rate_limit"]["rps"]) == (5, 50)
    assert answered["operations"]["list"]["error_next"] == 2
