"""Finding a dead letter by what the operator knows: its invoice, event id, business key or
client (exactly or by prefix), or words of its detail; the list shows those columns."""

from __future__ import annotations

import json
import time

import redis

from handlers import examples as f
from handlers.events import parse_event
from tests.integration.ops_support import cli, cli_json
from worker import keys
from worker.ops.filters import DeadLetterFilter
from worker.ops.index import DeadLetterIndex
from worker.ops.listing import list_dead_letters
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.outcomes import DeadLetter


def _write(store: AttemptStore, event: dict[str, object], detail: str) -> str:
    key = parse_event(event).key
    now = int(time.time() * 1000)
    letter = DeadLetter(key, event, "retries_exhausted", detail, 8, now - 1000, now,
                        step="add_credits", grant_step="add_credits",
                        business_key=f"invoice:{event['data']['invoice_id']}")  # type: ignore[index]  # fmt: skip
    outcome = {"key": key, "event_id": event["id"], "client_id": event["subject"],
               "event_type": event["type"], "outcome": "dead_lettered",
               "reason": "retries_exhausted", "at_ms": now}  # fmt: skip
    store.record_unlocked(key, outcome, letter.encode())
    return key


def _found(client: redis.Redis, query: str) -> set[str]:
    page = list_dead_letters(client, "saw", DeadLetterFilter.parse(search=query), limit=None)
    assert page.total == len(page.items)  # the count agrees with what is listed
    return {item.invoice_id or "" for item in page.items}


def test_search_finds_by_invoice_event_business_key_client_and_detail_words(
    redis_url: str, redis_client: redis.Redis
) -> None:
    store = AttemptStore(redis_client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600,
                         outcome_maxlen=1000)  # fmt: skip
    events = {
        "INV-Y": f.invoice_paid("acme", "INV-Y", 40),
        "INV-Y2": f.invoice_paid("acme-eu", "INV-Y2", 50),
        "INV-Z": f.invoice_paid("zeta", "INV-Z", 60),
    }
    details = {
        "INV-Y": "8 attempts; last: add_credits failed (HTTP 503): Service Unavailable",
        "INV-Y2": "8 attempts; last: add_credits failed (HTTP 429): Too Many Requests",
        "INV-Z": "add_credits answered 400: Invalid credits",
    }
    keys_ = {inv: _write(store, event, details[inv]) for inv, event in events.items()}
    assert _found(redis_client, "INV-Y") == {"INV-Y", "INV-Y2"}  # exact and prefix
    assert _found(redis_client, "inv-y2") == {"INV-Y2"}  # any case
    assert _found(redis_client, "invoice:INV-Z") == {"INV-Z"}  # business key
    assert _found(redis_client, events["INV-Z"]["id"]) == {"INV-Z"}  # event id
    assert _found(redis_client, "acme") == {"INV-Y", "INV-Y2"}  # client prefix
    assert _found(redis_client, "too many") == {"INV-Y2"}  # words of the detail
    assert _found(redis_client, "http 503") == {"INV-Y"}
    assert _found(redis_client, "nothing-like-it") == set()

    listed = cli(redis_url, "dead-letters", "list", "--search", "INV-Y2")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[1]
    for column in ("event", "type", "client", "invoice", "credits", "reason", "tries"):
        assert column in header
    assert "INV-Y2" in listed.stdout
    assert "1 of 1 shown" in listed.stdout
    (row,) = cli_json(redis_url, "dead-letters", "list", "--search", "INV-Y2")
    expected = ("INV-Y2", 50, "invoice:INV-Y2")
    assert (row["invoice_id"], row["credits"], row["business_key"]) == expected

    # A purge and a replay take a dead letter out of every search entry: nothing stale remains.
    cli_json(redis_url, "dead-letters", "purge", keys_["INV-Z"], "--yes")
    cli_json(redis_url, "dead-letters", "replay", keys_["INV-Y"], "--yes")
    assert _found(redis_client, "INV") == {"INV-Y2"}
    lex = [m.decode() for m in redis_client.zrange(keys.dead_letter_ix("saw", "lex", "all"), 0, -1)]
    assert all(keys_["INV-Y2"] in member for member in lex)
    assert not redis_client.exists(keys.dead_letter_ix("saw", "word", "invalid"))
    assert not redis_client.exists(keys.dead_letter_ix("saw", "word", "503"))


def test_an_index_made_by_older_code_is_completed_for_search(redis_client: redis.Redis) -> None:
    """Index entries written before search existed (no words, no identifiers) are redone once,
    however old the dead letter: search finds it."""
    store = AttemptStore(redis_client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600,
                         outcome_maxlen=1000)  # fmt: skip
    key = _write(store, f.invoice_paid("old", "INV-OLD", 5), "add_credits failed (HTTP 503)")
    index = DeadLetterIndex(redis_client, "saw")
    index.sync()
    # As the previous code left it: its own entries only, and a mark far past the letter.
    at = int(redis_client.zscore(keys.dead_letter_index("saw"), key) or 0)
    old = {"reason": "retries_exhausted", "type": "invoice.paid", "client": "old",
           "cluster": "x", "at": at}  # fmt: skip
    redis_client.hset(keys.dead_letter_ix_of("saw"), key, json.dumps(old))
    redis_client.delete(keys.dead_letter_ix("saw", "lex", "all"))
    redis_client.delete(keys.dead_letter_ix_mark("saw") + ":version")
    redis_client.set(keys.dead_letter_ix_mark("saw"), int(time.time() * 1000) + 86_400_000)
    assert _found(redis_client, "INV-OLD") == {"INV-OLD"}
