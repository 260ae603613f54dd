"""`status`, `events show`, `clients show`, `audit list`: what operators read, from Redis alone."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live

from worker.cli import ops_render as r
from worker.cli.base import app
from worker.ops.audit import list_audit
from worker.ops.filters import check_limit, parse_time
from worker.ops.status import Status, read_status
from worker.ops.timeline import ClientStory, EventStory, TimelineItem, client_story, event_story

events = typer.Typer(help="Look up events.", no_args_is_help=True)
clients = typer.Typer(help="Look up clients.", no_args_is_help=True)
audit = typer.Typer(help="Operators' actions.", no_args_is_help=True)
app.add_typer(events, name="events")
app.add_typer(clients, name="clients")
app.add_typer(audit, name="audit")


@app.command()
def status(
    as_json: r.Json = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")] = False,
) -> None:
    """Queue, in flight, workers, dead letters, recent outcomes, running jobs (from Redis)."""
    settings, rt = r.open_ops(read_only=True)

    def read() -> Status:
        return r.run(lambda: read_status(rt.redis, settings.key_prefix, settings.queue_name,
                                         settings.heartbeat_timeout_ms,
                                         keyspace=rt.publisher.keyspace))  # fmt: skip

    if as_json:
        r.print_json(read().to_json())
        return

    def view() -> Any:
        return _status_view(read())

    if not watch:
        r.out.print(view())
        return
    stop = threading.Event()
    with Live(view(), console=r.out, auto_refresh=False) as live:
        try:
            while not stop.wait(2.0):
                live.update(view(), refresh=True)
        except KeyboardInterrupt:
            pass


def _status_view(s: Status) -> Any:
    """Figure per line (fits 80 columns): queue, workers, dead letters, then the breakdowns."""
    age = "-" if s.oldest_queued_age_s is None else f"{s.oldest_queued_age_s:.1f} s"
    figures = [
        ("queued (ready)", s.queued),
        ("delayed (retries, waits for onboarding)", s.delayed),
        ("in flight", s.in_flight),
        ("workers alive / gone", f"{s.workers} / {s.workers_gone}"),
        ("oldest ready message", age),
        ("dead letters", s.dead_letters_total),
        ("oldest dead letter", r.at(s.oldest_dead_letter_at) or "-"),
    ]
    queue = r.table(f"Status at {r.at(s.at)} UTC", ("figure", "value"), figures)
    dead_rows = sorted(s.dead_letters.items(), key=lambda kv: -kv[1])
    dead = r.table("Dead letters", ("reason", "count"), dead_rows)
    outcomes = r.table("Outcomes, last hour", ("outcome", "count"),
                       sorted(s.outcomes_last_hour.items(), key=lambda kv: -kv[1]))  # fmt: skip
    parts: list[Any] = [queue, dead, outcomes]
    if (api := r.api_health(s.api)) is not None:
        parts.insert(0, api)
    if s.jobs_running:
        rows = [(j["id"], j["action"], j["operator"], f"{j['done'] + j['skipped']}/{j['planned']}")
                for j in s.jobs_running]  # fmt: skip
        parts.append(r.table("Jobs running", ("job", "action", "operator", "progress"), rows))
    return Group(*parts)


@events.command("show")
def events_show(
    event_id: Annotated[str, typer.Argument(help="The CloudEvent id.")],
    source: Annotated[str | None, typer.Option(help="The event's source, if ids repeat.")] = None,
    as_json: r.Json = False,
) -> None:
    """One event: envelope, ledger steps and results, outcomes, dead letter, replays."""
    settings, rt = r.open_ops(read_only=True)
    story = r.run(lambda: event_story(rt.redis, settings.key_prefix, event_id, source))
    if as_json:
        r.print_json(story.to_json())
        return
    _print_event(story)


def _print_event(story: EventStory) -> None:
    r.out.print(r.plain(f"event {story.event_id}", "bold")
                + r.plain(f" ({story.type}) client {story.client_id}"))  # fmt: skip
    attempts = "-" if story.attempts is None else story.attempts
    r.out.print(
        r.plain(
            f"key {story.key}; ended: {story.finished or '-'}; attempts: {attempts}; "
            f"replays: {story.replays}"
        )
    )
    steps = [(s.name, s.state, r.at(s.at), s.owner, s.result or "") for s in story.steps]
    r.out.print(r.table("Ledger", ("step", "state", "at", "by", "result"), steps))
    r.out.print(_timeline_table("Outcomes", story.outcomes))
    if story.dead_letter:
        d = story.dead_letter
        r.out.print(r.plain(f"dead letter: {d.reason} at step {d.step or '-'}: {d.detail}"))
    if story.envelope:
        r.print_json(story.envelope)


@clients.command("show")
def clients_show(
    client_id: Annotated[str, typer.Argument(help="The client id (the events' subject).")],
    limit: Annotated[int, typer.Option(help="Timeline lines shown (table only).")] = 50,
    as_json: r.Json = False,
) -> None:
    """What is known of a client, and its timeline (newest first)."""
    r.run(lambda: check_limit(limit))
    settings, rt = r.open_ops(read_only=True)
    story = r.run(lambda: client_story(rt.redis, settings.key_prefix, client_id))
    if as_json:
        r.print_json(story.to_json())
        return
    _print_client(story, limit)


def _print_client(story: ClientStory, limit: int) -> None:
    state = story.state or {}
    fields = ", ".join(f"{k}={v}" for k, v in state.items() if v is not None and k != "client_id")
    r.out.print(r.plain(f"client {story.client_id}", "bold")
                + r.plain(f": {fields or 'nothing recorded yet'}"))  # fmt: skip
    title = f"Timeline ({len(story.timeline)}, from the {story.source})"
    r.out.print(_timeline_table(title, story.timeline[:limit]))
    if story.dead_letters:
        listed = ", ".join(f"{d.id} ({d.reason})" for d in story.dead_letters[:10])
        r.out.print(r.plain(f"{len(story.dead_letters)} dead letters now: {listed}"))


def _timeline_table(title: str, items: list[TimelineItem]) -> Any:
    rows = [
        (r.at(i.time), i.event_id, i.type, i.outcome, i.reason,
         ", ".join(f"{k}:{v}" for k, v in i.steps.items()), i.replay or "",
         i.invoice_id or "", i.amount or "", i.operator or "")
        for i in items
    ]  # fmt: skip
    columns = ("time", "event", "type", "outcome", "reason", "steps", "replay", "invoice",
               "amount", "operator")  # fmt: skip
    return r.table(title, columns, rows)


@audit.command("list")
def audit_list(
    since: r.Since = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: r.Json = False,
) -> None:
    """Operators' actions (replay, purge, resolve, import, cancel), newest first."""
    r.run(lambda: check_limit(limit))
    since_ms = (
        r.run(lambda: parse_time(since, int(time.time() * 1000), "--since")) if since else None
    )
    settings, rt = r.open_ops(read_only=True)
    entries = r.run(
        lambda: list_audit(rt.redis, settings.key_prefix, since_ms=since_ms, limit=limit)
    )
    if as_json:
        r.print_json([e.to_json() for e in entries])
        return
    rows = [
        (r.at(e.at), e.action, e.operator, e.job_id or "", e.count,
         ", ".join(f"{k}={v}" for k, v in e.filter.items()),
         ", ".join(f"{k}={v}" for k, v in e.result.items()))
        for e in entries
    ]  # fmt: skip
    r.out.print(
        r.table("Audit", ("at", "action", "operator", "job", "ids", "filter", "result"), rows)
    )
