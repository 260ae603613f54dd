"""Records the attempt store reads back, including those written by earlier versions."""

from __future__ import annotations

import json

import redis

from worker import keys
from worker.pipeline.attempts import AttemptStore, Claim
from worker.pipeline.ledger import StepRecord, StepState


def _store(client: redis.Redis) -> AttemptStore:
    return AttemptStore(client, "saw", lock_ttl_ms=60_000, ledger_ttl_s=60, outcome_maxlen=100)


def test_a_finished_event_reads_as_finished_whichever_version_wrote_it(
    redis_client: redis.Redis,
) -> None:
    """Workers of this and the previous version may overlap in a rolling update."""
    store = _store(redis_client)
    earlier = {"key": "e1", "outcome": "applied", "reason": "", "at_ms": 1, "steps": {}}
    redis_client.hset(keys.ledger("saw", "e1"), "_outcome", json.dumps(earlier))
    redis_client.hset(keys.ledger("saw", "e2"), "_outcome", '{"outcome":"dead_lettered"}')
    redis_client.hset(keys.ledger("saw", "e4"), "_outcome", "duplicate")  # a bare word
    assert store.open("e1", "acme", "t1").outcome == "applied"
    assert store.open("e2", "acme", "t2").outcome == "dead_lettered"
    assert store.open("e4", "acme", "t4").outcome == "duplicate"
    assert store.open("e3", "acme", "t3").status == "locked"  # not finished: a fresh attempt


def _claim(store: AttemptStore, event_key: str, amount: int) -> Claim:
    """Open `event_key` for client acme, claim invoice INV-1 for `amount`, release the lease."""
    assert store.open(event_key, "acme", f"t-{event_key}").status == "locked"
    in_progress = StepRecord(StepState.IN_PROGRESS, f"t-{event_key}", 1)
    duplicate = StepRecord(
        StepState.DONE, f"t-{event_key}", 1, result={"duplicate_of": "__OWNER__"}
    )
    held, owner = store.begin_step(
        event_key, "acme", f"t-{event_key}", "add_credits", in_progress, "invoice:INV-1",
        duplicate, None, amount,
    )  # fmt: skip
    assert held
    store.release(event_key, "acme", f"t-{event_key}")
    return owner


def _step(client: redis.Redis, event_key: str) -> dict[str, object] | None:
    raw = client.hget(keys.ledger("saw", event_key), "add_credits")
    return json.loads(raw) if raw else None


def test_a_business_claim_records_its_amount_beside_the_owner(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    assert _claim(store, "e1", 40) == Claim("e1", 40)
    # the key itself holds the owner's event key alone, as every version writes and reads it
    assert redis_client.get(keys.business("saw", "invoice", "INV-1")) == b"e1"

    assert _claim(store, "e2", 40) == Claim("e1", 40)  # a second report, same amount
    assert _step(redis_client, "e2") == _step_of_duplicate("e2", "e1")
    assert _claim(store, "e3", 55) == Claim("e1", 40, conflict=True)  # the caller dead-letters
    assert _step(redis_client, "e3") is None  # and nothing is recorded for it


def test_a_claim_made_without_an_amount_is_a_plain_duplicate(redis_client: redis.Redis) -> None:
    """A claim by a worker that kept no amount (before 0.1.0) never reads as a conflict."""
    store = _store(redis_client)
    redis_client.set(keys.business("saw", "invoice", "INV-1"), "e1")
    assert _claim(store, "e2", 55) == Claim("e1", None)
    assert _step(redis_client, "e2") is not None


def test_clearing_a_step_gives_back_the_claim_and_its_amount(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    _claim(store, "e1", 40)
    store.clear_step("e1", "add_credits", "invoice:INV-1")
    assert redis_client.exists(keys.business("saw", "invoice", "INV-1")) == 0
    assert redis_client.exists(keys.business_amount("saw", "invoice", "INV-1")) == 0
    assert _claim(store, "e2", 55) == Claim("e2", 55)  # the next report claims it afresh


def _step_of_duplicate(event_key: str, owner: str) -> dict[str, object]:
    record = StepRecord(StepState.DONE, f"t-{event_key}", 1, result={"duplicate_of": owner})
    decoded: dict[str, object] = json.loads(record.encode())
    return decoded
