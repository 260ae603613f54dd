"""The API client against the sandbox served by uvicorn on loopback: both surfaces, every error."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import redis
from pydantic import SecretStr

from handlers.requests import (
    ChangeCredits,
    CreateSubaccount,
    CreditType,
    Period,
    Recurring,
    SetDisabled,
    SetRecurring,
    UpdateSubaccount,
)
from tests.conftest import TEST_API_KEY
from tests.servers import ThreadedUvicorn
from worker.api.client import SubaccountClient
from worker.api.http import HttpSession
from worker.api.models import ListPage
from worker.api.rate_limit import RateLimiter, RedisTokenBucket, Unlimited
from worker.errors import Ambiguous, Conflict, NotFound, Permanent, Transient
from worker.sandbox import SandboxAdmin
from worker.settings import ApiSurface

PASSWORD = "Str0ngPassw0rd"


def _client(
    server: ThreadedUvicorn,
    surface: ApiSurface,
    *,
    key: str = TEST_API_KEY,
    read_timeout: float = 5.0,
    limiter: RateLimiter | None = None,
) -> SubaccountClient:
    http = HttpSession(
        f"{server.url}/{surface.value}",
        timeout=httpx.Timeout(5.0, read=read_timeout),
    )
    return SubaccountClient(http, api_key=key, surface=surface, limiter=limiter)


@pytest.fixture(params=[ApiSurface.V5, ApiSurface.V6], ids=["v5", "v6"])
def api(
    request: pytest.FixtureRequest, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[SubaccountClient]:
    client = _client(sandbox_server, request.param)
    yield client
    client.close()


def _create(api: SubaccountClient, username: str = "acme-1") -> None:
    password = SecretStr(PASSWORD) if api.surface == ApiSurface.V6 else None
    api.create(
        CreateSubaccount(
            username=username,
            email="ops@acme.example",
            credit_type=CreditType.ONE_TIME_CREDIT,
            password=password,
        )
    )


def test_every_operation_round_trips(api: SubaccountClient, sandbox: SandboxAdmin) -> None:
    """All eight operations work on this surface and the journal records each state change."""
    _create(api)
    updated = api.update(UpdateSubaccount(username="acme-1", email="new@acme.example"))
    assert updated.email == "new@acme.example"
    assert api.change_credits(ChangeCredits(username="acme-1", amount=300)).balance == 300
    taken = api.change_credits(ChangeCredits(username="acme-1", action="decrease", amount=100))
    assert taken.balance == 200
    recurring = Recurring(amount=50, period=Period.MONTHLY, start_date="2026-02-01")  # type: ignore[arg-type]
    assert api.set_recurring(SetRecurring(username="acme-1", recurring=recurring)) == recurring
    assert api.set_disabled(SetDisabled(username="acme-1", disabled=True)).disabled is True
    details = api.get_credit_details("acme-1")
    assert (details.balance, details.disabled, details.recurring) == (200, True, recurring)
    _create(api, "acme-2")
    page = api.list_subaccounts(ListPage(limit=1, offset=1))
    assert page.total == 2
    assert [s.username for s in page.subaccounts] == ["acme-2"]
    assert api.delete("acme-1").returned_credits == 200
    ops = [(e["operation"], e["surface"]) for e in sandbox.journal() if e["applied"]]
    surface = api.surface.value
    assert ops == [
        (op, surface)
        for op in [
            "create",
            "update",
            "add_credits",
            "remove_credits",
            "set_recurring",
            "disable",
            "create",
            "delete",
        ]
    ]


def test_refusals_are_typed(api: SubaccountClient, sandbox: SandboxAdmin) -> None:
    """404, 409, 400 and a master account switched off each raise their own class."""
    with pytest.raises(NotFound):
        api.get_credit_details("nobody-here")
    _create(api)
    with pytest.raises(Conflict):
        _create(api)
    with pytest.raises(Permanent, match="HTTP 400"):
        api.change_credits(ChangeCredits(username="acme-1", action="decrease", amount=5))
    sandbox.set_state({"master_active": False})
    with pytest.raises(Permanent, match="You cannot use this feature"):
        api.list_subaccounts()


def test_wrong_key_is_permanent_and_never_quoted(
    sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> None:
    """A wrong key gets 401 → Permanent, and the key is not in the error text."""
    wrong = "wrong-key-5551234"
    with (
        _client(sandbox_server, ApiSurface.V6, key=wrong) as api,
        pytest.raises(Permanent) as caught,
    ):
        api.list_subaccounts()
    assert caught.value.status == 401
    assert wrong not in str(caught.value)


def test_server_errors_and_429_are_transient_with_retry_after(
    api: SubaccountClient, sandbox: SandboxAdmin
) -> None:
    """An injected 503 is Transient; a 429 carries the server's Retry-After in seconds."""
    sandbox.set_faults({"operations": {"list": {"error_next": 1, "error_status": 503}}})
    with pytest.raises(Transient) as caught:
        api.list_subaccounts()
    assert caught.value.status == 503
    sandbox.set_faults({"rate_limit": {"rps": 1, "retry_after_s": 3}})
    api.list_subaccounts()
    with pytest.raises(Transient) as limited:
        api.list_subaccounts()
    assert limited.value.status == 429
    assert limited.value.retry_after == 3.0


def test_commit_then_drop_is_ambiguous_while_the_effect_applied(
    api: SubaccountClient, sandbox: SandboxAdmin
) -> None:
    """The sandbox applies the grant and drops the connection: the client says Ambiguous."""
    _create(api)
    sandbox.set_faults({"operations": {"add_credits": {"drop_next": 1}}})
    with pytest.raises(Ambiguous) as caught:
        api.change_credits(ChangeCredits(username="acme-1", amount=25))
    assert "may have been applied" in str(caught.value)
    (entry,) = sandbox.journal(operation="add_credits")
    assert entry["applied"] is True
    assert entry["fault"] == "drop"
    assert api.get_credit_details("acme-1").balance == 25


def test_hang_is_ambiguous_for_writes_and_transient_for_reads(
    sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> None:
    """A call that never answers times out: Ambiguous for a write, Transient for a read."""
    with _client(sandbox_server, ApiSurface.V6, read_timeout=0.3) as api:
        _create(api)
        sandbox.set_faults({"default": {"hang_next": 2, "hang_s": 1.0}})
        with pytest.raises(Ambiguous):
            api.set_disabled(SetDisabled(username="acme-1", disabled=True))
        with pytest.raises(Transient):
            api.get_credit_details("acme-1")


def test_shared_rate_limiter_keeps_eight_callers_under_the_429_threshold(
    sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn, redis_client: redis.Redis
) -> None:
    """8 threads through one Redis bucket at 40/s never trip a sandbox limit of 50/s; without
    the bucket the same load does."""
    sandbox.set_faults({"rate_limit": {"rps": 50, "retry_after_s": 1}})

    def hammer(limiter: RateLimiter) -> list[int]:
        statuses: list[int] = []

        def caller() -> None:
            client = _client(sandbox_server, ApiSurface.V6, limiter=limiter)
            for _ in range(10):
                try:
                    client.list_subaccounts()
                    statuses.append(200)
                except Transient as exc:
                    statuses.append(exc.status or 0)
            client.close()

        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses

    limited = hammer(RedisTokenBucket(redis_client, "test:bucket", rate=40, burst=10))
    assert len(limited) == 80
    assert 429 not in limited
    sandbox.reset()
    sandbox.set_faults({"rate_limit": {"rps": 50, "retry_after_s": 1}})
    assert 429 in hammer(Unlimited())  # the control: the load does exceed the limit
