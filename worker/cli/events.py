"""`send`: validate events from a file or stdin and enqueue them.

All are validated before any is enqueued: the input is read once, in bounded memory, and every
valid event is spooled to a temporary file; only if none is invalid are they enqueued from the
spool, in chunks of one MULTI/EXEC each. So a typo in the last line leaves nothing half-sent,
and a Redis failure part-way is repaired by sending the same file again (the events already
enqueued are recognised by their source + id and recorded `duplicate`, never applied twice).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn

import typer

from handlers.errors import InvalidEvent
from worker.cli.base import app, escape_controls, load
from worker.cli.event_files import EventReader
from worker.errors import EXPECTED, BrokerUnavailable
from worker.ingress import sources
from worker.ingress.problems import MAX_REASONS
from worker.pipeline.publish import Publisher, Spool, event_limits

CHUNK_EVENTS = 1000
SEND_HELP = (
    "Validate events (a JSON array, one JSON object, or JSON Lines) and enqueue them."
    "\n\nEvery event is validated before any is enqueued: if one is invalid (named by its"
    " index and line), nothing is sent and the exit code is 2. The input streams through a"
    " temporary file, so memory stays bounded whatever its size; the events are then enqueued"
    " in atomic chunks of --chunk-size events (at most 1 MiB; one MULTI/EXEC each)."
    "\n\nIf Redis fails part-way (exit 1), send the same input again: the events already"
    " enqueued are recognised by their source + id and recorded duplicate, never applied twice."
    '\n\nPrints one JSON line per enqueued event: {"event_id": ..., "key": ...}.'
)


@app.command(help=SEND_HELP)
def send(
    source: str = typer.Argument(..., help="A JSON or JSONL file of events, or - for stdin."),
    allow_reserved_source: bool = typer.Option(
        False,
        "--allow-reserved-source",
        help="Accept events whose source is a webhook's (urn:subaccount-worker:*), e.g. to"
        " re-send a webhook's event by hand. Without it they are refused.",
    ),
    chunk_size: int = typer.Option(
        CHUNK_EVENTS, min=1, help="Events per atomic enqueue (one MULTI/EXEC each)."
    ),
) -> None:
    """Validate every event into a spool, then enqueue the spool in atomic chunks (SEND_HELP)."""
    settings = load()
    rule = None if allow_reserved_source else _reserved
    with Spool(event_limits(settings), rule, max_reasons=MAX_REASONS) as spool:
        with _opened(source) as stream:
            _validate(stream, spool, _shown(source))
        _check(spool, _shown(source))
        from worker.runtime import build_publisher  # the wiring loads only when sending

        with build_publisher(settings) as publisher:
            _enqueue(spool, publisher, chunk_size)


def _reserved(source: str) -> str | None:
    if not sources.is_reserved(source):
        return None
    return sources.reserved_reason(source) + " (or pass --allow-reserved-source)"


@contextlib.contextmanager
def _opened(source: str) -> Iterator[BinaryIO]:
    """The input as a binary stream; a path that cannot be read ends the command (exit 2)."""
    if source == "-":
        yield sys.stdin.buffer
        return
    path = Path(source)
    try:
        stream = path.open("rb")
    except IsADirectoryError:
        _fail(f"{source}: is a directory; give a JSON or JSONL file, or - for stdin")
    except FileNotFoundError:
        _fail(f"{source}: no such file")
    except OSError as exc:
        _fail(f"{source}: cannot be read ({exc.strerror})")
    with stream:
        yield stream


def _shown(source: str) -> str:
    return "stdin" if source == "-" else source


def _validate(stream: BinaryIO, spool: Spool, shown: str) -> None:
    """Read every item, spooling the valid events and keeping the reasons of the others."""
    try:
        for item in EventReader(stream):
            if item.error is not None:
                spool.refuse(item.label, [item.error])
            else:
                spool.add(item.value, item.label)
    except InvalidEvent as exc:  # the input cannot be read on (not UTF-8, an unclosed array)
        _fail(f"{shown}: " + "; ".join(exc.reasons))


def _check(spool: Spool, shown: str) -> None:
    """End the command (exit 2) if anything was invalid, or if there was nothing at all."""
    if spool.invalid:
        more = f"; ... and {spool.hidden} more" if spool.hidden else ""
        total = spool.invalid + spool.valid
        _fail(
            f"{shown}: {spool.invalid} of {total} events invalid, nothing was enqueued: "
            + "; ".join(spool.reasons)
            + more
        )
    if not spool.valid:
        _fail(f"{shown}: no events (the input is empty)")


def _enqueue(spool: Spool, publisher: Publisher, chunk_size: int) -> None:
    """Enqueue chunk by chunk, printing each chunk's events once it is on the queue."""
    done = 0
    try:
        for published in spool.enqueue(publisher, chunk_size):
            for item in published:
                typer.echo(json.dumps({"event_id": item.event_id, "key": item.key}))
            done += len(published)
    except BrokerUnavailable as exc:
        typer.echo(
            f"error: {exc}; {done} of {spool.valid} events were enqueued (in chunks of"
            f" {chunk_size}), the rest were not: send the same input again (what was"
            " enqueued is recognised by source + id and not applied twice)",
            err=True,
        )
        raise typer.Exit(1) from None
    except EXPECTED as exc:
        typer.echo(f"error: {escape_controls(str(exc))}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 2 (bad input)."""
    typer.echo(f"error: {escape_controls(message)}", err=True)
    raise typer.Exit(2)
