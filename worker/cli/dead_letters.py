"""`dead-letters`: inspect, replay and purge dead letters."""

from __future__ import annotations

import json

import typer

from worker.cli.base import app, guard, load, open_runtime

dead = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)
app.add_typer(dead, name="dead-letters")


@dead.command("list")
def dead_list(
    reason: str | None = typer.Option(None, help="Only this reason code."),
    client: str | None = typer.Option(None, help="Only this client id."),
    event_type: str | None = typer.Option(None, "--type", help="Only this event type."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
) -> None:
    """List dead letters, newest first, one JSON object per line."""
    runtime = open_runtime(load())
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
    letter = open_runtime(load()).dead_letters.get(key)
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
    from worker.ops.replay import replay

    if resolve not in (None, "applied", "not_applied"):
        typer.echo("error: --resolve is 'applied' or 'not_applied'", err=True)
        raise typer.Exit(2)
    settings = load()
    rt = open_runtime(settings)
    published = guard(
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
    if not open_runtime(load()).dead_letters.purge(key):
        typer.echo(f"error: no dead letter {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"purged": key}))
