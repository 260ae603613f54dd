"""`subaccount-worker send` as an operator runs it: a subprocess, real Redis, real files.

Bad input ends in one line naming the problem (and the line or index) and exit 2, never a
traceback; nothing is enqueued unless every event is valid; large inputs stream in bounded memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from handlers import examples as factories
from tests.cli_support import CLI_PREFIX, cli_env, run_cli
from tests.ingress_support import queued_events
from tests.servers import free_port
from worker.settings import Settings, load_settings


def settings_for(redis_url: str) -> Settings:
    return load_settings(redis_url=redis_url, key_prefix=CLI_PREFIX)


def jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, one line on stderr starting `error:` and holding every fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


GOOD = factories.suspended("C1")
# Rows: (what the file holds, fragments the one-line error must name)
BAD_INPUTS = [
    (b"hello, world\n", ["[0] (line 1) not valid JSON"]),  # plain text
    (bytes(range(256)) * 4, ["not UTF-8 text (byte 128)"]),  # a binary file
    (b"[" + json.dumps(GOOD).encode() + b",\n" + json.dumps(GOOD).encode()[:40],
     ["[1] (line 2) not valid JSON"]),  # an array cut short inside an item
    (b"[" + json.dumps(GOOD).encode() + b",\n", ["line 2: the array is not closed"]),
    (jsonl([GOOD, GOOD]) + b'{"specversion": "1.0", oops\n' + jsonl([GOOD]),
     ["1 of 4 events invalid", "[2] (line 3) not valid JSON"]),  # a bad JSONL line, named
    (b'{"credits": 1' + b"0" * 100_000 + b"}\n",
     ["[0] (line 1) not valid JSON (a number too long)"]),  # a 100,000-digit integer
    (b"[" * 100_000 + b"]" * 100_000, ["not valid JSON (nested too deeply)"]),  # deep nesting
    (jsonl([GOOD, factories.invoice_paid("C1", "INV-1", "100")]),  # type: ignore[arg-type]
     ["[1] (line 2) data.credits: must be a JSON integer"]),  # strict types (issue 10.2)
    (jsonl([factories.invoice_paid("C1", "INV-1", 10_000_001)]),
     ["data.credits: 10000001 is above the maximum of 10000000 credits per grant"]),
    (json.dumps([GOOD, GOOD]).encode() + b" trailing", ["unexpected text after the array"]),
]  # fmt: skip


@pytest.mark.parametrize(("content", "fragments"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_nothing_enqueued(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, content: bytes, fragments: list[str]
) -> None:
    """Each kind of bad input: exit 2, one line naming the problem and where; queue untouched."""
    path = tmp_path / "events"
    path.write_bytes(content)
    result = run_cli(cli_env(redis_url), "send", str(path))
    assert_one_line_error(result, *fragments)
    assert result.stdout == ""
    assert queued_events(redis_client, settings_for(redis_url)) == []


def test_a_missing_file_and_a_directory_are_named(redis_url: str, tmp_path: Path) -> None:
    """Paths that are not readable files: one line naming the path and why."""
    missing = run_cli(cli_env(redis_url), "send", str(tmp_path / "nope.jsonl"))
    directory = run_cli(cli_env(redis_url), "send", str(tmp_path))
    assert_one_line_error(missing, "nope.jsonl: no such file")
    assert_one_line_error(directory, "is a directory")


@pytest.mark.parametrize("content", [b"  \n\n", b"[ ]\n"])
def test_an_empty_input_says_so(redis_url: str, tmp_path: Path, content: bytes) -> None:
    """No events at all is not a success: exit 2, saying the input is empty."""
    path = tmp_path / "empty.json"
    path.write_bytes(content)
    assert_one_line_error(run_cli(cli_env(redis_url), "send", str(path)), "no events")
    assert_one_line_error(run_cli(cli_env(redis_url), "send", "-", stdin=content), "stdin:")


def test_reasons_are_capped_with_a_count_of_the_rest(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """5,000 bad events: 50 reasons on the one line, then '... and 4950 more'."""
    bad = [factories.invoice_paid("C1", f"INV-{i}", "1") for i in range(5000)]  # type: ignore[arg-type]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(bad))
    result = run_cli(cli_env(redis_url), "send", str(path))
    assert_one_line_error(
        result, "5000 of 5000 events invalid", "[49] (line 50)", "... and 4950 more"
    )
    assert "[50] (line 51)" not in result.stderr
    assert len(result.stderr) < 20_000
    assert queued_events(redis_client, settings_for(redis_url)) == []


def test_one_bad_event_at_the_end_enqueues_nothing(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """All are validated before any is enqueued, even across many chunks."""
    events = [factories.suspended(f"C{i}") for i in range(2500)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(events) + b'{"type": "client.exploded"}\n')
    result = run_cli(cli_env(redis_url), "send", "--chunk-size", "100", str(path))
    assert_one_line_error(result, "[2500] (line 2501) type: unknown event type")
    assert queued_events(redis_client, settings_for(redis_url)) == []


# Rows: (how the events are written)
LAYOUTS = [
    lambda events: json.dumps(events).encode(),  # a JSON array
    lambda events: json.dumps(events, indent=2).encode(),  # a pretty-printed array
    jsonl,  # JSON Lines
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_valid_inputs_are_enqueued_in_order(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, layout: Any
) -> None:
    """Array, pretty array, JSON Lines: every event enqueued in order, one JSON line each."""
    events = [factories.onboarded("C1"), factories.suspended("C1"), factories.churned("C2")]
    path = tmp_path / "events"
    path.write_bytes(layout(events))
    result = run_cli(cli_env(redis_url), "send", "--chunk-size", "2", str(path))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["event_id"] for p in printed] == [e["id"] for e in events]
    queued = queued_events(redis_client, settings_for(redis_url))
    assert [q["id"] for q in queued] == [e["id"] for e in events]


def test_one_pretty_printed_object_from_stdin(redis_url: str, redis_client: redis.Redis) -> None:
    """A single object over several lines, on stdin, is one event."""
    event = factories.onboarded("C1")
    result = run_cli(cli_env(redis_url), "send", "-", stdin=json.dumps(event, indent=2).encode())
    assert result.returncode == 0, result.stderr
    [queued] = queued_events(redis_client, settings_for(redis_url))
    assert queued["id"] == event["id"]


def test_redis_unreachable_is_exit_1_saying_what_was_enqueued(tmp_path: Path) -> None:
    """Something failed (not bad input): exit 1, one line saying how many were enqueued."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl([factories.suspended("C1")]))
    result = run_cli(cli_env(f"redis://127.0.0.1:{free_port()}/0"), "send", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "0 of 1 events were enqueued" in result.stderr
    assert "send the same input again" in result.stderr


def test_a_large_input_streams_in_bounded_memory(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """32 MB of JSON Lines (~8 KB events) costs the process under 8 MB more than one event."""
    path = tmp_path / "large.jsonl"
    count = 0
    with path.open("wb") as out:
        while out.tell() < 32_000_000:
            event = factories.event("client.suspended", f"C{count % 100}", {"reason": "r" * 900})
            out.write(json.dumps({**event, "padding": "p" * 7000}).encode() + b"\n")
            count += 1
    small = tmp_path / "small.jsonl"
    small.write_bytes(jsonl([factories.suspended("C1")]))
    env = cli_env(redis_url)

    baseline_kb = peak_rss_kb(env, small)
    large_kb = peak_rss_kb(env, path)

    assert len(queued_events(redis_client, settings_for(redis_url))) == count + 1
    assert large_kb - baseline_kb < 8 * 1024, (baseline_kb, large_kb)


def peak_rss_kb(env: dict[str, str], path: Path) -> int:
    """Run `send PATH` and return that child's peak resident set size (KiB, from wait4)."""
    argv = [sys.executable, "-m", "worker.cli", "send", str(path)]
    with subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        stderr = proc.stderr.read()  # to EOF, i.e. until the child exits
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr
    return usage.ru_maxrss


def test_sandbox_faults_file_errors_are_one_line(tmp_path: Path) -> None:
    """`sandbox --faults FILE` with a bad file: one line naming the file and problem, exit 2."""
    env = {**cli_env("redis://unused"), "SUBACCOUNT_WORKER_API_KEY": "k"}
    not_json = tmp_path / "faults.json"
    not_json.write_text("{")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"operations": {"add_credits": {"error_rate": "often"}}}')
    for path, fragment in [
        (not_json, "faults.json: file: Invalid JSON"),
        (wrong, "operations.add_credits.error_rate"),
        (tmp_path, "Is a directory"),
    ]:
        result = run_cli(env, "sandbox", "--port", "0", "--faults", str(path), timeout_s=30)
        assert_one_line_error(result, fragment)
