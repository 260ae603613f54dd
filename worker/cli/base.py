"""The command line's shared parts: the typer app, error handling and settings loading.

Each command group lives in a module of its own (`worker.cli.run`, `worker.cli.events`,
`worker.cli.dead_letters`, ...) and registers on `app`; `worker.cli` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from worker.errors import EXPECTED
from worker.settings import Settings, load_settings

app = typer.Typer(
    help="Turns CRM and billing events into Netcore email Subaccount API calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")


def guard(fn: Callable[[], T]) -> T:
    """Run `fn`; turn our errors into one line on stderr and exit code 2."""
    try:
        return fn()
    except EXPECTED as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def load(**overrides: Any) -> Settings:
    """The settings from the environment; a bad one ends the command with one line (exit 2)."""
    return guard(lambda: load_settings(**overrides))


def configure_logging(settings: Settings) -> None:
    from worker.log import configure_logging as configure

    configure(settings)
