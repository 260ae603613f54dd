"""Dead letters carry their own truth, and business keys outlive the ledger: replays after the
ledger's TTL (a real, short `LEDGER_TTL_S`), after export → import into a fresh Redis, and a
backfill of an invoice after the TTL, each judged by the sandbox's journal over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers import parse_event, username_for
from handlers.outcomes import Outcome, Reason
from handlers.plan import AddCredits
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import (
    leave_grant_in_progress,
    parsed_plan_steps,
    pipeline_settings,
    running_pipeline,
    wait_for_outcomes,
)
from tests.servers import RedisServer, ThreadedUvicorn, wait_until
from worker import keys
from worker.ops.dead_letters import DeadLetters
from worker.ops.export import export_to, import_from
from worker.ops.filters import DeadLetterFilter
from worker.ops.plans import plan, select
from worker.ops.replay import replay
from worker.pipeline.attempts import AttemptStore, BeginStep, ClaimStatus, Finish
from worker.pipeline.ledger import StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter, outcome_record
from worker.pipeline.results import AttemptInfo
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

TTL_S = 1  # the ledger's, and the owner keys', time to live: a real expiry, waited for
RECURRING = {"amount": 50, "period": "monthly"}


@pytest.fixture
def short_ttl(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """The pipeline with a one-second ledger and one attempt per event (a 503 dead-letters)."""
    with running_pipeline(_settings(redis_url, sandbox_server)) as runtime:
        yield runtime


def _settings(redis_url: str, sandbox_server: ThreadedUvicorn) -> Any:
    return pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY,
        ledger_ttl_s=TTL_S, retry_max_attempts=1,
    )  # fmt: skip


def _applied(sandbox: SandboxAdmin, client: str) -> list[str]:
    journal = sandbox.journal(username=username_for(client))
    return [entry["operation"] for entry in journal if entry["applied"]]


def _outcomes_of(client: redis.Redis, event_id: str) -> list[str]:
    entries = client.xrange(keys.outcomes("saw"))
    return [
        fields[b"outcome"].decode() for _id, fields in entries
        if fields.get(b"event_id") == event_id.encode()
    ]  # fmt: skip


def _dead_letter_at_set_recurring(
    runtime: Runtime, sandbox: SandboxAdmin, client: redis.Redis, name: str
) -> tuple[dict[str, Any], str]:
    """Onboard `name` with credits and recurring credits, the recurring call failing: the
    onboarding is dead-lettered after its create and its grant; then wait for its ledger (and
    the invoice owner keys) to expire. Returns the event and its dead letter's key."""
    sandbox.set_faults({"operations": {"set_recurring": {"error_rate": 1.0}}})
    onboard = f.onboarded(name, credits=100, recurring=RECURRING)
    runtime.publisher.publish(onboard)
    assert wait_for_outcomes(client, [onboard["id"]])[onboard["id"]]["outcome"] == "dead_lettered"
    (letter,) = runtime.dead_letters.list()
    assert letter.step == "set_recurring"
    assert _applied(sandbox, name) == ["create", "add_credits"]
    wait_until(lambda: not client.exists(keys.ledger("saw", letter.key)), what="ledger expiry")
    sandbox.set_faults({})
    return onboard, letter.key


def test_a_replay_after_the_ledger_expired_repeats_no_done_step(
    short_ttl: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """An onboarding dead-lettered at set_recurring, replayed after its ledger expired: no
    second create, the onboarding credits granted once, the recurring credits set."""
    onboard, key = _dead_letter_at_set_recurring(short_ttl, sandbox, redis_client, "ttl-ivy")
    (item,) = plan(redis_client, "saw", select(redis_client, "saw", ids=[key])).items
    assert (item.steps_done, item.calls, item.credits) == (["add_credits", "create"],
                                                           ["set_recurring"], 0)  # fmt: skip
    replay(short_ttl.redis, short_ttl.publisher, short_ttl.dead_letters, "saw", key)
    wait_until(lambda: _outcomes_of(redis_client, onboard["id"])[-1:] == ["applied"],
               what="the replay's outcome")  # fmt: skip
    assert _applied(sandbox, "ttl-ivy") == ["create", "add_credits", "set_recurring"]


def test_a_replay_after_export_and_import_into_a_fresh_redis_repeats_no_done_step(
    short_ttl: Runtime,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """The same dead letter exported, imported into a Redis that never saw it, and replayed
    there: the onboarding credits are still granted once."""
    client = "ttl-compass"  # its business key looks secret-named ("pass"): exported as it is
    onboard, key = _dead_letter_at_set_recurring(short_ttl, sandbox, redis_client, client)
    export = tmp_path / "dead.jsonl"
    assert export_to(redis_client, "saw", DeadLetterFilter(), export, "test") == 1
    fresh = RedisServer().start()
    try:
        with running_pipeline(_settings(fresh.url, sandbox_server)) as other:
            assert import_from(other.redis, "saw", export, "test").imported == 1
            replay(other.redis, other.publisher, other.dead_letters, "saw", key)
            wait_until(lambda: _outcomes_of(other.redis, onboard["id"]) == ["applied"],
                       what="the replay's outcome")  # fmt: skip
            kept = other.redis.hget(keys.business_keys("saw", client), f"onboarding:{client}")
    finally:
        fresh.cleanup()
    assert _applied(sandbox, client) == ["create", "add_credits", "set_recurring"]
    assert kept == f"{key} 100".encode()  # the import put the dead letter's hold back


def test_an_invoice_backfilled_after_the_ledger_expired_is_a_duplicate(
    short_ttl: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """An invoice granted, its ledger and owner keys expired, then reported again (the same
    event, and under another event id): both `duplicate`, one grant."""
    wait_for_outcomes(redis_client, [_publish(short_ttl, f.onboarded("ttl-kim"))])
    paid = f.invoice_paid("ttl-kim", "INV-Q1", 40)
    assert wait_for_outcomes(redis_client, [_publish(short_ttl, paid)])[paid["id"]]["outcome"] == (
        "applied"
    )
    owner = keys.business("saw", "invoice", "INV-Q1")
    wait_until(lambda: not redis_client.exists(owner), what="the invoice's owner key expiry")
    backfill = f.invoice_paid("ttl-kim", "INV-Q1", 40)
    for event, before in ((paid, ["applied"]), (backfill, [])):
        _publish(short_ttl, event)
        wait_until(lambda e=event, n=len(before): len(_outcomes_of(redis_client, e["id"])) > n,
                   what="the report's outcome")  # fmt: skip
        assert _outcomes_of(redis_client, event["id"]) == [*before, "duplicate"]
    assert _applied(sandbox, "ttl-kim").count("add_credits") == 1


def _publish(runtime: Runtime, event: dict[str, Any]) -> str:
    runtime.publisher.publish(event)
    return str(event["id"])


def test_an_undecided_grant_stays_held_by_its_dead_letter_after_the_ttl_until_purged(
    redis_client: redis.Redis,
) -> None:
    """A grant dead-lettered undecided keeps its invoice after the ledger and the owner keys
    expired: another report of it is `held`, not granted; purging the dead letter frees it."""
    store = AttemptStore(redis_client, "saw", lock_ttl_ms=5000, ledger_ttl_s=TTL_S,
                         outcome_maxlen=100)  # fmt: skip
    first = f.invoice_paid("hold", "INV-H", 30)
    key = leave_grant_in_progress(store, first, {"balance": 0})
    (grant,) = parsed_plan_steps(parse_event(first))
    assert isinstance(grant, AddCredits)
    now = int(time.time() * 1000)
    letter = DeadLetter(key, first, Reason.AMBIGUOUS_OUTCOME, "no answer", 1, now, now,
                        step="add_credits", grant_step="add_credits",
                        business_key=grant.business_key)  # fmt: skip
    record = outcome_record(key, first, Outcome.DEAD_LETTERED, "ambiguous_outcome",
                            AttemptInfo(), now)  # fmt: skip
    assert store.open(key, "hold", "worker-1").status == "locked"
    assert store.finish(key, "hold", "worker-1", Finish(record, None, letter.encode(), grant), now)
    owner = keys.business("saw", "invoice", "INV-H")
    wait_until(lambda: not redis_client.exists(owner, keys.ledger("saw", key)), what="expiry")

    second = parse_event(f.invoice_paid("hold", "INV-H", 30))

    def claim() -> ClaimStatus:
        assert store.open(second.key, "hold", "worker-2").status == "locked"
        begin = BeginStep(second.key, "hold", "worker-2", "add_credits",
                          StepRecord(StepState.IN_PROGRESS, "worker-2", now),
                          grant.business_key, 30)  # fmt: skip
        held, found = store.begin_step(begin)
        store.release(second.key, "hold", "worker-2")
        assert held
        return found.status

    assert claim() == ClaimStatus.HELD
    stored = DeadLetters(redis_client, "saw").get(key)
    assert stored is not None
    assert stored.holds == {"invoice:INV-H": f"{key} 30 held"}
    assert StepRecord.decode(stored.ledger["add_credits"]).state == StepState.IN_PROGRESS
    assert DeadLetters(redis_client, "saw").purge(key)
    assert claim() == ClaimStatus.CLAIMED
