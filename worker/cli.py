"""The `subaccount-worker` command line: run the worker, ingress and sandbox; send and replay.

Every command reads settings from `SUBACCOUNT_WORKER_*`; a bad setting ends the command with one
line naming the variable (exit 2), never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer

from worker.errors import SubaccountWorkerError
from worker.settings import Settings, load_settings

app = typer.Typer(
    help="Turns CRM and billing events into Netcore email Subaccount API calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dead = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)
app.add_typer(dead, name="dead-letters")

T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run `fn`; turn our errors into one line on stderr and exit code 2."""
    try:
        return fn()
    except SubaccountWorkerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _settings(**overrides: Any) -> Settings:
    return _guard(lambda: load_settings(**overrides))


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8025, help="Port to listen on."),
    api_key: str = typer.Option(
        "", envvar="SUBACCOUNT_WORKER_API_KEY", help="The API key the sandbox accepts."
    ),
    faults: Path | None = typer.Option(None, help="JSON file with the initial fault config."),
    access_log: bool = typer.Option(True, help="Log every request (uvicorn's access log)."),
) -> None:
    """Serve the Subaccount API sandbox (v5 under /v5, v6 under /v6, admin under /_sandbox)."""
    from worker.sandbox import serve

    if not api_key:
        typer.echo("error: give --api-key or set SUBACCOUNT_WORKER_API_KEY", err=True)
        raise typer.Exit(2)
    config = json.loads(faults.read_text()) if faults else None
    serve(host, port, api_key, config, access_log=access_log)


@app.command()
def worker(
    processes: int = typer.Option(0, help="Worker processes (default: settings)."),
    threads: int = typer.Option(0, help="Threads per process (default: settings)."),
    module: str = typer.Option(
        "worker.actors", help="Module declaring the broker and actor (wrap ours to add middleware)."
    ),
) -> None:
    """Run the event consumers: Dramatiq processes loading `worker.actors`, kept running."""
    from worker import supervisor

    settings = _settings()
    _guard(settings.require_api_key)
    _configure_logging(settings)
    procs = processes or settings.worker_processes
    code = supervisor.run(settings, procs, threads or settings.worker_threads, module)
    raise typer.Exit(code)


@app.command()
def ingress(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Serve the HTTP ingress for billing events, Stripe webhooks and CRM webhooks."""
    from worker.ingress import serve

    settings = _settings()
    _configure_logging(settings)
    serve(settings, host, port)


@app.command()
def send(
    source: str = typer.Argument(..., help="A JSON or JSONL file of events, or - for stdin."),
) -> None:
    """Validate events and enqueue them (all or nothing)."""
    settings = _settings()
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    events = _guard(lambda: list(_read_events(text)))
    runtime = _runtime(settings)
    published = _guard(lambda: runtime.publisher.publish_many(events))
    for item in published:
        typer.echo(json.dumps({"event_id": item.event_id, "key": item.key}))


@app.command()
def demo() -> None:
    """Start a private Redis, the sandbox and a worker; send a client's story; show the journal."""
    from worker.demo import run

    _guard(run)


@app.command("check-config")
def check_config() -> None:
    """Validate the settings and print them (secrets hidden)."""
    settings = _settings()
    shown = json.loads(settings.model_dump_json())
    shown["redis_url"] = settings.redis_url_for_display()
    typer.echo(json.dumps(shown, indent=2))


@dead.command("list")
def dead_list(
    reason: str | None = typer.Option(None, help="Only this reason code."),
    client: str | None = typer.Option(None, help="Only this client id."),
    event_type: str | None = typer.Option(None, "--type", help="Only this event type."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
) -> None:
    """List dead letters, newest first, one JSON object per line."""
    runtime = _runtime(_settings())
    letters = runtime.dead_letters.list(
        reason=reason, client_id=client, event_type=event_type, limit=limit
    )
    for letter in letters:
        summary = {
            "key": letter.key,
            "reason": letter.reason,
            "client_id": letter.client_id,
            "type": letter.event_type,
            "step": letter.step,
            "attempts": letter.attempts,
            "detail": letter.detail,
        }
        typer.echo(json.dumps(summary))


@dead.command("show")
def dead_show(key: str = typer.Argument(..., help="Dead letter key.")) -> None:
    """Print one dead letter in full."""
    letter = _runtime(_settings()).dead_letters.get(key)
    if letter is None:
        typer.echo(f"error: no dead letter {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(json.loads(letter.encode()), indent=2))


@dead.command("replay")
def dead_replay(
    key: str = typer.Argument(..., help="Dead letter key."),
    resolve: str | None = typer.Option(
        None, help="For ambiguous_outcome: 'applied' or 'not_applied', after checking by hand."
    ),
) -> None:
    """Put a dead letter's event back on the queue; completed steps are not redone."""
    from worker.replay import replay

    if resolve not in (None, "applied", "not_applied"):
        typer.echo("error: --resolve is 'applied' or 'not_applied'", err=True)
        raise typer.Exit(2)
    settings = _settings()
    rt = _runtime(settings)
    published = _guard(
        lambda: replay(
            rt.redis,
            rt.publisher,
            rt.dead_letters,
            settings.key_prefix,
            key,
            resolve=resolve,  # type: ignore[arg-type]
        )
    )
    typer.echo(json.dumps({"replayed": published.key, "message_id": published.message_id}))


@dead.command("purge")
def dead_purge(key: str = typer.Argument(..., help="Dead letter key.")) -> None:
    """Delete a dead letter for good."""
    if not _runtime(_settings()).dead_letters.purge(key):
        typer.echo(f"error: no dead letter {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"purged": key}))


def _read_events(text: str) -> Iterator[Any]:
    """A JSON array, a single JSON object, or JSON Lines."""
    stripped = text.strip()
    if stripped.startswith("["):
        yield from json.loads(stripped)
        return
    try:
        yield json.loads(stripped)
    except json.JSONDecodeError:
        for line in stripped.splitlines():
            if line.strip():
                yield json.loads(line)


def _runtime(settings: Settings) -> Any:
    from worker.runtime import build_runtime

    return build_runtime(settings)


def _configure_logging(settings: Settings) -> None:
    from worker.log import configure_logging

    configure_logging(settings)


if __name__ == "__main__":  # pragma: no cover
    app()
