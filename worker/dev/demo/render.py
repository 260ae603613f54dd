"""Printing the story with rich: a chapter at a time, then the final state and the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from worker.dev.demo.scene import Chapter, Check, Scene
from worker.dev.demo.summary import Summary

STYLES = {
    "applied": "green",
    "duplicate": "cyan",
    "superseded": "cyan",
    "ignored": "yellow",
    "dead_lettered": "red",
}


def console() -> Console:
    """A console 100 columns wide when not on a terminal (logs and CI keep their layout)."""
    probe = Console()
    return Console(highlight=False, width=None if probe.is_terminal else 100)


def table(*columns: str) -> Table:
    """A borderless table with dim headers, the style of every table of the story."""
    t = Table(box=None, padding=(0, 2), show_edge=False, header_style="dim")
    for column in columns:
        t.add_column(column)
    return t


def chapter(out: Console, scene: Scene, ch: Chapter) -> None:
    """One chapter: its title, why it matters, what happened, the API calls, the checks."""
    out.print()
    out.rule(f"[bold]{ch.title}[/]", align="left")
    out.print(Text(ch.intro, style="italic"))
    for extra in ch.extra:
        out.print(extra)
    if ch.rows:
        rows = table("what arrived", "door", "outcome", "why")
        for row in ch.rows:
            rows.add_row(
                row.what, row.door, Text(row.outcome, STYLES.get(row.outcome, "")), row.why
            )
        out.print(rows)
    out.print(Text("API calls: ", style="dim") + Text(calls_line(scene, ch.calls)))
    for note in ch.notes:
        out.print(Text("→ " + note))
    _checks(out, ch.checks)


def calls_line(scene: Scene, calls: Sequence[dict[str, Any]]) -> str:
    """The chapter's state-changing calls, the same call counted (`add_credits acme 503 x3`)."""
    if not calls:
        return "none"
    counts = Counter((c["operation"], scene.who(c["username"]), c["status"]) for c in calls)
    return ", ".join(
        f"{operation} {who} {status}" + (f" x{count}" if count > 1 else "")
        for (operation, who, status), count in counts.items()
    )


def _checks(out: Console, checks: Sequence[Check]) -> None:
    for check in checks:
        mark = Text("  ✓ ", "green") if check.ok else Text("  ✗ ", "bold red")
        detail = "" if check.ok or not check.detail else f" ({check.detail})"
        out.print(mark + Text(check.name + detail))


def final(out: Console, summary: Summary) -> None:
    """The subaccounts as the API reads them, the grants the journal counts, the dead letters."""
    out.print()
    out.rule("[bold]Where the story ends[/]", align="left")
    table = Table(title="Subaccounts, read back from the API", title_justify="left", box=None,
                  padding=(0, 2), header_style="dim")  # fmt: skip
    for name in ("client", "username", "status", "balance", "used", "grants in the journal"):
        table.add_column(name, justify="right" if name in ("balance", "used") else "left")
    for line in summary.accounts:
        status = "deleted" if not line.exists else ("disabled" if line.disabled else "enabled")
        style = {"enabled": "green", "deleted": "dim", "disabled": "red"}[status]
        grants = "+".join(f"{amount:,}" for amount in line.granted) or "-"
        once = sorted(line.granted) == sorted(line.expected)
        table.add_row(
            line.client_id,
            line.username,
            Text(status, style),
            f"{line.balance:,}" if line.balance is not None else "-",
            f"{line.used:,}",
            Text(grants) + (Text(" each once", "green") if once else Text(" unexpected", "red")),
        )
    out.print(table)
    dead = summary.dead_letters
    listing = ", ".join(
        f"{d['event']['data'].get('invoice_id', d['key'])} ({d['reason']})" for d in dead
    )
    out.print(Text(f"Dead letters left: {len(dead)}" + (f": {listing}" if dead else "")))
    _checks(out, summary.chapter.checks)


def verdict(out: Console, checks: Sequence[Check], seconds: float, logs: str) -> None:
    """How many expectations held, which did not, how long it took, where the logs are."""
    failed = [c for c in checks if not c.ok]
    out.print()
    if failed:
        out.print(Text(f"✗ {len(failed)} of {len(checks)} expectations failed:", "bold red"))
        for check in failed:
            out.print(Text(f"  - {check.name}: {check.detail}", "red"))
    else:
        out.print(
            Text(f"✓ all {len(checks)} expectations held", "bold green")
            + Text(f" in {seconds:.1f} s")
        )
    out.print(Text(f"Server logs: {logs}", "dim"))
