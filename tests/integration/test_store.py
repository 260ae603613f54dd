"""Records the attempt store reads back, including those written by earlier versions."""

from __future__ import annotations

import json

import redis

from worker import keys
from worker.store import AttemptStore, Claim


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
    assert store.open("e1", "acme", "t1").outcome == "applied"
    assert store.open("e2", "acme", "t2").outcome == "dead_lettered"
    assert store.open("e3", "acme", "t3").status == "locked"  # not finished: a fresh attempt


def test_a_business_claim_names_its_event_and_amount() -> None:
    assert Claim.decode("abc123 40") == Claim("abc123", 40)
    assert Claim.decode("abc123") == Claim("abc123", None)  # claimed before amounts were kept
