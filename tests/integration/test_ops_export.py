"""Export, import and purge of dead letters through the CLI, against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from handlers import examples as f
from tests.integration.ops_support import cli, cli_json, write_dead_letter
from worker.ops.dead_letters import DeadLetters
from worker.pipeline.attempts import AttemptStore


def _store(client: redis.Redis) -> AttemptStore:
    return AttemptStore(client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600, outcome_maxlen=1000)


def test_export_purge_import_round_trip(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Exported dead letters (secrets redacted) come back as they were after a purge; importing
    twice adds nothing; the summary and the audit follow."""
    store = _store(redis_client)
    secret = {**f.invoice_paid("acme", "INV-1", 5), "api_key": "sk-live-123"}
    keys_ = [write_dead_letter(store, secret, "retries_exhausted")]
    keys_ += [write_dead_letter(store, f.invoice_paid(f"c{n}", f"INV-{n + 2}", 5), "client_unknown")
              for n in range(3)]  # fmt: skip
    out = tmp_path / "dead.jsonl"
    assert cli_json(redis_url, "dead-letters", "export", str(out)) == {
        "exported": 4,
        "file": str(out),
    }
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["key"] for line in lines} == set(keys_)
    assert "sk-live-123" not in out.read_text()

    purged = cli_json(redis_url, "dead-letters", "purge", "--all", "--yes")
    assert purged["purged"] == 4
    assert DeadLetters(redis_client, "saw").count() == 0
    assert cli_json(redis_url, "dead-letters", "summary") == {
        "total": 0,
        "clusters": [],
        "next_steps": {},
    }

    assert cli_json(redis_url, "dead-letters", "import", str(out)) == {"imported": 4, "present": 0}
    assert cli_json(redis_url, "dead-letters", "import", str(out)) == {"imported": 0, "present": 4}
    summary = cli_json(redis_url, "dead-letters", "summary")
    assert {(c["reason"], c["count"]) for c in summary["clusters"]} == {
        ("retries_exhausted", 1),
        ("client_unknown", 3),
    }
    assert DeadLetters(redis_client, "saw").counts_by_reason() == {
        "retries_exhausted": 1,
        "client_unknown": 3,
    }
    actions = [e["action"] for e in cli_json(redis_url, "audit", "list")]
    assert actions == ["import", "import", "purge", "purge_started", "export"]


def test_a_bad_import_file_is_named_and_nothing_is_written(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A line that is not a dead letter: exit 2 naming the line; an empty file: exit 2."""
    bad = tmp_path / "bad.jsonl"
    good = {"key": "a", "event": {}, "reason": "retries_exhausted", "detail": "", "attempts": 1,
            "first_failure_ms": 1, "last_failure_ms": 1}  # fmt: skip
    bad.write_text(json.dumps(good) + "\nnot json\n")
    done = cli(redis_url, "dead-letters", "import", str(bad))
    assert done.returncode == 2
    assert "line 2" in done.stderr
    assert DeadLetters(redis_client, "saw").count() == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert cli(redis_url, "dead-letters", "import", str(empty)).returncode == 2
    assert cli(redis_url, "dead-letters", "import", str(tmp_path / "missing.jsonl")).returncode == 2


def test_list_pages_and_counts_what_matches(redis_url: str, redis_client: redis.Redis) -> None:
    """`--limit` and `--offset` page newest first; the table says how many of how many."""
    store = _store(redis_client)
    for n in range(7):
        write_dead_letter(store, f.invoice_paid("acme", f"INV-{n}", 5), "retries_exhausted")
    write_dead_letter(store, f.invoice_paid("other", "INV-X", 5), "retries_exhausted")
    first = cli_json(redis_url, "dead-letters", "list", "--client", "acme", "--limit", "3")
    second = cli_json(redis_url, "dead-letters", "list", "--client", "acme", "--limit", "3",
                      "--offset", "3")  # fmt: skip
    assert len(first) == len(second) == 3
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    table = cli(redis_url, "dead-letters", "list", "--client", "acme", "--limit", "3")
    assert "3 of 7 shown" in table.stdout
