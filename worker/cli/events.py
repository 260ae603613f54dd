"""`send`: validate events from a file or stdin and enqueue them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from worker.cli.base import app, guard, load, open_runtime


@app.command()
def send(
    source: str = typer.Argument(..., help="A JSON or JSONL file of events, or - for stdin."),
) -> None:
    """Validate events and enqueue them (all or nothing)."""
    settings = load()
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    events = guard(lambda: list(_read_events(text)))
    runtime = open_runtime(settings)
    published = guard(lambda: runtime.publisher.publish_many(events))
    for item in published:
        typer.echo(json.dumps({"event_id": item.event_id, "key": item.key}))


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
