"""Records the attempt store writes and reads back."""

from __future__ import annotations

import json

import redis

from handlers.outcomes import Outcome, Reason
from worker import keys
from worker.ops.dead_letters import DeadLetters
from worker.pipeline.attempts import AttemptStore, BeginStep, Claim, ClaimStatus
from worker.pipeline.ledger import OUTCOME_FIELD, StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter


def _store(client: redis.Redis) -> AttemptStore:
    return AttemptStore(client, "saw", lock_ttl_ms=60_000, ledger_ttl_s=60, outcome_maxlen=100)


def test_a_finished_event_reads_as_finished_with_its_outcome(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    redis_client.hset(keys.ledger("saw", "e2"), OUTCOME_FIELD, '{"outcome":"dead_lettered"}')
    assert store.open("e2", "acme", "t2").outcome == Outcome.DEAD_LETTERED
    assert store.open("e3", "acme", "t3").status == "locked"  # not finished: a fresh attempt


def _claim(store: AttemptStore, event_key: str, amount: int) -> Claim:
    """Open `event_key` for client acme, claim invoice INV-1 for `amount`, release the lease."""
    assert store.open(event_key, "acme", f"t-{event_key}").status == "locked"
    in_progress = StepRecord(StepState.IN_PROGRESS, f"t-{event_key}", 1)
    begin = BeginStep(
        event_key, "acme", f"t-{event_key}", "add_credits", in_progress, "invoice:INV-1", amount
    )
    held, owner = store.begin_step(begin)
    assert held
    store.release(event_key, "acme", f"t-{event_key}")
    return owner


def _step(client: redis.Redis, event_key: str) -> dict[str, object] | None:
    raw = client.hget(keys.ledger("saw", event_key), "add_credits")
    return json.loads(raw) if raw else None


def _granted(client: redis.Redis, event_key: str) -> None:
    """Record `event_key`'s grant as done, as its attempt does once the API answered."""
    done = StepRecord(StepState.DONE, f"t-{event_key}", 2, result={"balance": 40})
    client.hset(keys.ledger("saw", event_key), "add_credits", done.encode())


def _finished(client: redis.Redis, event_key: str, reason: Reason | None = None) -> None:
    """Mark `event_key` finished (dead-lettered with `reason`, when given)."""
    client.hset(keys.ledger("saw", event_key), OUTCOME_FIELD, '{"outcome":"dead_lettered"}')
    if reason:
        letter = DeadLetter(event_key, {}, reason, "", 1, 1, 1, "add_credits", {},
                            "add_credits", "invoice:INV-1")  # fmt: skip
        client.hset(keys.dead_letters("saw"), event_key, letter.encode())
        client.zadd(keys.dead_letter_index("saw"), {event_key: 1})


def _owner(client: redis.Redis) -> bytes | None:
    return client.get(keys.business("saw", "invoice", "INV-1"))


def test_a_business_claim_records_its_amount_beside_the_owner(redis_client: redis.Redis) -> None:
    store = _store(redis_client)
    assert _claim(store, "e1", 40) == Claim("e1", 40)
    # the key itself holds the owner's event key alone; the amount is beside it
    assert _owner(redis_client) == b"e1"
    _granted(redis_client, "e1")

    duplicate = Claim("e1", 40, ClaimStatus.DUPLICATE)
    assert _claim(store, "e2", 40) == duplicate  # a second report, same amount
    assert _step(redis_client, "e2") == _step_of_duplicate("e2", "e1")
    conflict = Claim("e1", 40, ClaimStatus.CONFLICT)
    assert _claim(store, "e3", 55) == conflict  # the caller dead-letters
    assert _step(redis_client, "e3") is None  # and nothing is recorded for it


def test_a_claim_whose_amount_record_is_missing_reads_as_a_conflict(
    redis_client: redis.Redis,
) -> None:
    """Every claim records its amount; without it, nothing proves the two reports agree."""
    store = _store(redis_client)
    redis_client.set(keys.business("saw", "invoice", "INV-1"), "e1")
    assert _claim(store, "e2", 55) == Claim("e1", None, ClaimStatus.CONFLICT)
    assert _step(redis_client, "e2") is None


def test_a_second_report_waits_while_the_holder_may_still_grant(redis_client: redis.Redis) -> None:
    """In progress, or proven not applied and waiting for its retry: the holder keeps the key
    and another report of the invoice is neither granted nor recorded as a duplicate."""
    store = _store(redis_client)
    _claim(store, "e1", 40)  # in progress
    assert _claim(store, "e2", 40) == Claim("e1", 40, ClaimStatus.PENDING)
    store.clear_step("e1", "add_credits")  # proven not applied; e1 will send it again
    assert _claim(store, "e2", 40) == Claim("e1", 40, ClaimStatus.PENDING)
    assert _step(redis_client, "e2") is None
    assert _owner(redis_client) == b"e1"


def test_an_undecided_holder_that_was_dead_lettered_holds_the_key_by_name(
    redis_client: redis.Redis,
) -> None:
    store = _store(redis_client)
    _claim(store, "e1", 40)
    _finished(redis_client, "e1", Reason.AMBIGUOUS_OUTCOME)  # its grant left in progress
    assert _claim(store, "e2", 40) == Claim("e1", 40, ClaimStatus.HELD, "ambiguous_outcome")
    assert _step(redis_client, "e2") is None
    assert _owner(redis_client) == b"e1"


def test_a_finished_holder_whose_grant_never_took_effect_is_taken_over(
    redis_client: redis.Redis,
) -> None:
    """The holder gave up after its grant was proven not applied (its key left behind, as a
    worker killed between the two writes would leave it): the next report claims the key."""
    store = _store(redis_client)
    _claim(store, "e1", 40)
    store.clear_step("e1", "add_credits")
    _finished(redis_client, "e1", Reason.RETRIES_EXHAUSTED)
    assert _claim(store, "e2", 55) == Claim("e2", 55)
    assert _owner(redis_client) == b"e2"
    assert _step(redis_client, "e2") is not None  # in progress: e2 sends the grant


def test_releasing_a_claim_gives_it_back_only_when_the_grant_never_took_effect(
    redis_client: redis.Redis,
) -> None:
    store = _store(redis_client)
    _claim(store, "e1", 40)  # in progress: it may have taken effect
    assert not store.release_claim("e1", "add_credits", "invoice:INV-1")
    _granted(redis_client, "e1")  # done: it took effect
    assert not store.release_claim("e1", "add_credits", "invoice:INV-1")
    assert not store.release_claim("e2", "add_credits", "invoice:INV-1")  # not e2's to give
    store.clear_step("e1", "add_credits")  # (as if proven not applied)
    assert store.release_claim("e1", "add_credits", "invoice:INV-1")
    assert redis_client.exists(keys.business("saw", "invoice", "INV-1")) == 0
    assert redis_client.exists(keys.business_amount("saw", "invoice", "INV-1")) == 0
    assert _claim(store, "e2", 55) == Claim("e2", 55)  # the next report claims it afresh


def test_purging_a_dead_letter_gives_back_the_invoice_its_grant_never_applied(
    redis_client: redis.Redis,
) -> None:
    """Purge frees the business key a dead letter held without effect, and only then."""
    store = _store(redis_client)
    dead = DeadLetters(redis_client, "saw")
    _claim(store, "e1", 40)
    _finished(redis_client, "e1", Reason.AMBIGUOUS_OUTCOME)
    assert dead.purge("e1")
    assert _owner(redis_client) == b"e1"  # in progress: undecided, so still held
    store.clear_step("e1", "add_credits")
    _finished(redis_client, "e1", Reason.RETRIES_EXHAUSTED)
    assert dead.purge("e1")
    assert _owner(redis_client) is None
    assert dead.count() == 0


def _step_of_duplicate(event_key: str, owner: str) -> dict[str, object]:
    record = StepRecord(StepState.DONE, f"t-{event_key}", 1, result={"duplicate_of": owner})
    decoded: dict[str, object] = json.loads(record.encode())
    return decoded
