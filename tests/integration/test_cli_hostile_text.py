"""Hostile text through every operators' view: a subject `x[/]` (rich markup that used to crash
`dead-letters list` with MarkupError), a `[link=...]` that used to become a clickable link, and
ESC/OSC/BEL bytes in ids and details that used to reach the terminal raw. Every view must print
them as plain text with the controls escaped (`\\x1b`); `--json` stays the same JSON."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis
import structlog
from typer.testing import CliRunner

import worker.log
from handlers import examples as f
from tests.cli_support import CLI_PREFIX, cli_env
from tests.console.support import write_dead_letter
from worker.cli import app, ops_render
from worker.credits.store import CreditsStore, Snapshot
from worker.runtime import build_store
from worker.settings import load_settings

SUBJECT = "x[/]"
LINK = "[link=https://evil.example]click[/link]"
ESC = "\x1b[2J\x1b]0;pwned\x07"  # clear the screen, set the window title
OSC_LINK = "\x1b]8;;https://evil.example\x1b\\here\x1b]8;;\x1b\\"  # a planted hyperlink
EVENT_ID = f"ev-{OSC_LINK}"
INVOICE = f"inv-{ESC}"
OPERATOR = f"mallory{ESC}[bold]"
USERNAME = f"user{ESC}{LINK}"
RAW = ("\x1b", "\x07", "\x9b")


@pytest.fixture(autouse=True)
def keep_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands run in this process: their logs go to a sink that stays open (not the
    runner's streams, closed after each command), and the logging setup is restored after."""
    sink = io.StringIO()
    real = worker.log.configure_logging
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(worker.log, "configure_logging", lambda s, **_: real(s, stream=sink))
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def env(redis_url: str, redis_client: redis.Redis) -> dict[str, str]:
    """Dead letters, a client timeline and a credits snapshot, all with hostile text."""
    settings = load_settings(redis_url=redis_url, key_prefix=CLI_PREFIX)
    store = build_store(settings, redis_client)
    hostile = {**f.invoice_paid(SUBJECT, INVOICE, credits=10), "id": EVENT_ID}
    write_dead_letter(store, SUBJECT, event=hostile, detail=f"HTTP 503 {LINK} {ESC}")
    linked = f.invoice_paid(LINK, "inv-2", credits=5)
    write_dead_letter(store, LINK, event=linked, reason="retries_exhausted", step="add_credits")
    credits = CreditsStore(redis_client, CLI_PREFIX)
    pipe = redis_client.pipeline()
    snap = Snapshot(
        username=USERNAME,
        client_id=SUBJECT,
        balance=5,
        credit_type="one_time_credit",
        disabled=False,
        read_at=time.time(),
    )
    credits.add_snapshot(pipe, snap)
    credits.log_alert(
        pipe,
        snap.username,
        {"at": time.time(), "change": "raised", "level": "critical", "alert_id": LINK,
         "balance": 5, "notified": True},
    )  # fmt: skip
    pipe.execute()
    return {**cli_env(redis_url), "COLUMNS": "400"}  # wide: no cell folded in two


def views(letter_id: str) -> list[list[str]]:
    return [
        ["status"],
        ["dead-letters", "list"],
        ["dead-letters", "summary"],
        ["dead-letters", "replay", "--client", SUBJECT, "--dry-run"],
        ["events", "show", EVENT_ID],
        ["dead-letters", "replay", letter_id, "--yes", "--operator", OPERATOR],
        ["dead-letters", "jobs"],
        ["clients", "show", SUBJECT],
        ["clients", "show", LINK],
        ["audit", "list"],
        ["credits", "list"],
        ["credits", "show", USERNAME],
    ]


def test_every_view_prints_hostile_text_as_plain_escaped_text(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_render.out, "width", 400)
    runner = CliRunner()
    listed = runner.invoke(app, ["dead-letters", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)
    assert {d["subject"] for d in letters} == {SUBJECT, LINK}  # JSON: the values as they are
    hostile_id = next(d["id"] for d in letters if d["subject"] == SUBJECT)
    shown = ""
    for args in views(hostile_id):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert not any(c in result.output for c in RAW), (args, result.output)
        shown += result.output
    assert SUBJECT in shown  # shown as the text it is, not swallowed as markup
    assert "[link=https://evil.example]click[/link]" in shown
    assert "\\x1b]0;pwned\\x07" in shown  # the controls, escaped
    assert "\\x1b]8;;https://evil.example" in shown
    assert "mallory\\x1b[2J" in shown  # the operator's name in the jobs and the audit


def test_json_output_keeps_the_values_exactly(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["events", "show", EVENT_ID, "--json"], env=env)
    assert result.exit_code == 0, result.output
    story = json.loads(result.stdout)
    assert story["event_id"] == EVENT_ID
    assert story["client_id"] == SUBJECT
    assert "\x1b" not in result.stdout  # JSON escapes it as \u001b, as before
