"""Shared parts of the operators' commands: exit codes, `--json` output, rich tables, options.

Exit codes scripts can trust: 0 ok, 1 something failed (Redis unreachable, a dead letter skipped
or missing), 2 usage or bad input. Errors are one line on stderr, never a traceback.
Every value that came from an event, a dead letter or an API goes to the terminal through
`plain` (text, never rich markup; control characters escaped), so `x[/]` or ESC bytes in a
subject can neither crash a view nor drive the operator's terminal. `--json` is unchanged.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

import redis
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from handlers.errors import InvalidEvent
from worker.cli.base import configure_logging, escape_controls, load
from worker.errors import ConfigError, SubaccountWorkerError
from worker.ops.filters import DeadLetterFilter, InvalidInput
from worker.pipeline.publish import Publisher
from worker.settings import Settings

T = TypeVar("T")
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

Reason = Annotated[str | None, typer.Option("--reason", help="Only this reason code.")]
Type = Annotated[str | None, typer.Option("--type", help="Only this event type.")]
Client = Annotated[str | None, typer.Option("--client", help="Only this client id (subject).")]
Since = Annotated[
    str | None, typer.Option("--since", help="Failed at or after: RFC 3339 or relative (2h).")
]
Until = Annotated[
    str | None, typer.Option("--until", help="Failed at or before: RFC 3339 or relative (15m).")
]
Status = Annotated[str | None, typer.Option("--status", help="HTTP status of the last error.")]
Step = Annotated[str | None, typer.Option("--step", help="Only dead letters stopped at this step.")]
Source = Annotated[str | None, typer.Option("--source", help="Only events of this source.")]
Search = Annotated[
    str | None,
    typer.Option(
        "--search",
        help="An event id, invoice id, business key or client (exact or prefix), or words of "
        "the detail (any case).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (stable fields: README).")]
Operator = Annotated[
    str | None, typer.Option("--operator", help="Who acts, for the audit (default: OS user).")
]


def run(fn: Callable[[], T]) -> T:
    """Run `fn`; bad input ends with exit 2, any other failure with exit 1, one line each."""
    try:
        return fn()
    except (InvalidInput, InvalidEvent, ConfigError) as exc:
        fail(str(exc), 2)
    except SubaccountWorkerError as exc:
        fail(str(exc), 1)
    except redis.RedisError as exc:
        fail(f"Redis failed ({type(exc).__name__}: {exc}); check SUBACCOUNT_WORKER_REDIS_URL", 1)


@dataclass(frozen=True)
class OpsRuntime:
    """What operators' commands need: Redis and the publisher (no API client, no broker)."""

    redis: redis.Redis
    publisher: Publisher


def open_ops(read_only: bool = False) -> tuple[Settings, OpsRuntime]:
    """Settings, logging (to stderr: stdout is for output), Redis and the publisher; a command
    that only reads says `read_only` and goes through REDIS_READ_URL's user when one is set."""
    from worker.runtime import redis_client

    settings = load()
    configure_logging(settings)
    client = redis_client(settings, settings.redis_read_url_or_default() if read_only else None)
    return settings, OpsRuntime(client, Publisher(client, settings))


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {escape_controls(message)}", err=True)
    raise typer.Exit(code)


def make_filter(
    reason: str | None,
    type_: str | None,
    client: str | None,
    since: str | None,
    until: str | None,
    status: str | None,
    step: str | None,
    source: str | None,
    search: str | None,
) -> DeadLetterFilter:
    return run(
        lambda: DeadLetterFilter.parse(
            reason=reason,
            type=type_,
            client=client,
            since=since,
            until=until,
            status=status,
            step=step,
            source=source,
            search=search,
        )
    )


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def plain(value: object, style: str = "") -> Text:
    """A value for the terminal: rich Text (never parsed as markup), controls escaped."""
    if isinstance(value, Text):
        return value
    return Text(escape_controls("" if value is None else str(value)), style=style)


def cells(*values: object) -> list[Text]:
    """`plain` of each value: a row for a table built elsewhere."""
    return [plain(v) for v in values]


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table whose every cell (and the title) is `plain` text."""
    grid = Table(title=None if title is None else plain(title), title_justify="left",
                 header_style="bold")  # fmt: skip
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*[plain(cell) for cell in row])
    return grid


def at(value: str | None) -> str:
    """An RFC 3339 time shortened for a table (seconds, no milliseconds)."""
    return (value or "")[:19].replace("T", " ")


def api_health(api: dict[str, Any]) -> Text | None:
    """`status`'s line on the API circuit breaker: nothing while the API is available; else
    since when it is unavailable, for which operations, the next probe and the last error."""
    circuits = api.get("circuits") or []
    if not circuits:
        return None
    ops = ", ".join(c["operation"] for c in circuits)
    probe = min(c["next_probe_in_s"] for c in circuits)
    line = Text(f"API unavailable since {at(api.get('unavailable_since'))} UTC: {ops}",
                style="bold red")  # fmt: skip
    line.append(f"\nevents needing it wait, no attempts spent; next probe in {probe} s")
    line.append(f"\nlast error: {circuits[0].get('last_error', '')}", style="dim")
    return line
