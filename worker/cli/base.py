"""The command line's shared parts: the typer app, error handling and settings loading.

Each command group lives in a module of its own (`worker.cli.run`, `worker.cli.events`,
`worker.cli.dead_letters`, ...) and registers on `app`; `worker.cli` imports them all.
"""

from __future__ import annotations

import re
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


# C0 and C1 controls (ESC, OSC, BEL, CR, ...), DEL, zero-width and bidirectional overrides.
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`)."""
    return CONTROLS.sub(_escape_one, text)


def _escape_one(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def guard(fn: Callable[[], T]) -> T:
    """Run `fn`; turn our errors into one line on stderr and exit code 2."""
    try:
        return fn()
    except EXPECTED as exc:
        typer.echo(f"error: {escape_controls(str(exc))}", err=True)
        raise typer.Exit(2) from None


def load(**overrides: Any) -> Settings:
    """The settings from the environment; a bad one ends the command with one line (exit 2)."""
    return guard(lambda: load_settings(**overrides))


def configure_logging(settings: Settings) -> None:
    from worker.log import configure_logging as configure

    configure(settings)
