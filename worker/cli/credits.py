"""Commands of the credits work: `monitor`, `credits list|show|refresh`, `reconcile`.

They render what `worker.credits.service` and `worker.credits.reconcile` return: rich tables by
default, stable JSON with `--json` (documented in the README's "Credits" section).
"""

from __future__ import annotations

import json
import signal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.base import app, configure_logging, escape_controls, guard, load
from worker.cli.ops_render import cells, plain
from worker.settings import Settings

credits_app = typer.Typer(
    help="Credit balances, runways and low-credit alerts from snapshots.", no_args_is_help=True
)
app.add_typer(credits_app, name="credits")


def _redis(settings: Settings, read_only: bool = False) -> Any:
    """The command's Redis client; a read-only command uses REDIS_READ_URL's user if set."""
    from worker.runtime import redis_client

    return redis_client(settings, settings.redis_read_url_or_default() if read_only else None)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {escape_controls(message)}", err=True)
    return typer.Exit(code)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@app.command()
def monitor() -> None:
    """Scan every subaccount at a bounded rate; alert on low credits; serve /metrics, /healthz."""
    from worker.credits.metrics import serve
    from worker.credits.monitor import build_monitor
    from worker.credits.notify import delivery_worker

    settings = load()
    guard(settings.require_api_key)
    configure_logging(settings)
    client = _redis(settings)
    mon = guard(lambda: build_monitor(settings, client))
    deliveries = delivery_worker(settings, client)
    server = None
    if settings.monitor_port and mon.metrics is not None:
        registry = mon.metrics.registry
        server = serve(settings.monitor_host, settings.monitor_port, registry, mon.healthy)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: mon.stop_event.set())
    try:
        mon.run()
    finally:
        if server is not None:
            server.shutdown()
        if deliveries is not None:
            deliveries.stop()
        mon.scanner.api.close()
        client.close()


def _runway_s(text: str | None) -> float | None:
    from worker.credits.runway import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


@credits_app.command("list")
def list_command(
    below: int | None = typer.Option(None, "--below", help="Only balances below N."),
    runway_below: str | None = typer.Option(None, help="Only runways below, e.g. 3d, 12h."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array (stable fields)."),
) -> None:
    """Balances, runways and alert states of every subaccount, shortest runway first."""
    from worker.credits.service import list_credits

    settings = load()
    configure_logging(settings)  # logs go to stderr: stdout is the output
    runway_s = _runway_s(runway_below)
    client = _redis(settings, read_only=True)
    rows = guard(
        lambda: list_credits(client, settings.key_prefix, below=below, runway_below_s=runway_s)
    )
    if as_json:
        _echo_json([row.to_json() for row in rows])
        return
    Console().print(_credits_table(rows))


def _credits_table(rows: list[Any]) -> Table:
    from worker.credits.runway import format_duration

    table = Table(title=f"{len(rows)} subaccounts (shortest runway first)")
    for header in ("client", "username", "balance", "used", "runway", "disabled", "alert", "age"):
        table.add_column(header)
    for r in rows:
        alert = plain(r.level, "red") if r.low else "-"
        table.add_row(
            *cells(
                r.client_id or "(unmanaged)",
                r.username,
                str(r.balance),
                "-" if r.used is None else str(r.used),
                "unlimited" if r.credit_type == "unlimited" else format_duration(r.runway_s),
                "yes" if r.disabled else "no",
                alert,
                format_duration(r.age_s),
            )
        )
    return table


@credits_app.command("show")
def show_command(
    client_id: str = typer.Argument(..., metavar="CLIENT", help="Client id or username."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables."),
) -> None:
    """One subaccount: snapshot history, consumption rate, alert history."""
    from worker.credits.runway import format_duration
    from worker.credits.service import show_credits

    settings = load()
    configure_logging(settings)  # logs go to stderr: stdout is the output
    client = _redis(settings, read_only=True)
    detail = guard(lambda: show_credits(client, settings.key_prefix, client_id))
    if detail is None:
        raise _fail(f"no snapshot of {client_id!r}: run `credits refresh {client_id}` first")
    if as_json:
        _echo_json(detail.to_json())
        return
    console = Console()
    console.print(_credits_table([detail.row]))
    rate = detail.row.rate_per_s
    console.print(f"consumption: {'unknown' if rate is None else f'{rate * 3600:.1f}/h'}")
    history = Table(title="snapshots (newest first)")
    for header in ("read at", "balance", "used", "disabled", "runway"):
        history.add_column(header)
    for snap in detail.history:
        history.add_row(
            *cells(
                _stamp(snap.read_at),
                str(snap.balance),
                str(snap.used),
                str(snap.disabled),
                format_duration(snap.runway_s),
            )
        )
    console.print(history)
    alerts = Table(title="alert history (newest first)")
    for header in ("at", "change", "level", "alert id", "balance", "notified"):
        alerts.add_column(header)
    for entry in detail.alert_log:
        alerts.add_row(
            *cells(
                _stamp(entry["at"]),
                entry["change"],
                entry["level"],
                entry["alert_id"],
                str(entry["balance"]),
                str(entry["notified"]),
            )
        )
    console.print(alerts)


def _stamp(epoch_s: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@credits_app.command("rule")
def rule_command(
    client_id: str = typer.Argument(..., metavar="CLIENT", help="Client id."),
    warn_balance: int | None = typer.Option(None, min=0, help="Warn below this balance."),
    critical_balance: int | None = typer.Option(None, min=0, help="Critical below this."),
    warn_runway: str | None = typer.Option(None, help="Warn below this runway, e.g. 3d."),
    critical_runway: str | None = typer.Option(None, help="Critical below this, e.g. 1d."),
    reset: bool = typer.Option(False, "--reset", help="Back to the defaults (then the options)."),
    as_json: bool = typer.Option(False, "--json", help="The rule in force as JSON."),
) -> None:
    """Show or set one client's low-credit thresholds (defaults from settings)."""
    from dataclasses import asdict

    from worker.credits.service import set_client_rule

    settings = load()
    configure_logging(settings)  # logs go to stderr: stdout is the output
    given = {
        "warn_balance": warn_balance,
        "critical_balance": critical_balance,
        "warn_runway_s": _runway_s(warn_runway),
        "critical_runway_s": _runway_s(critical_runway),
    }
    changes = {k: v for k, v in given.items() if v is not None}
    client = _redis(settings)
    rule = guard(lambda: set_client_rule(settings, client, client_id, changes, reset=reset))
    if as_json:
        _echo_json(asdict(rule))
        return
    for name, value in asdict(rule).items():
        typer.echo(f"{name}: {value}")


@credits_app.command("refresh")
def refresh_command(
    client_id: str | None = typer.Argument(None, metavar="[CLIENT]", help="Client or username."),
) -> None:
    """Scan now: one subaccount, or all (asks the running monitor, else scans here)."""
    from worker.credits.service import refresh

    settings = load()
    configure_logging(settings)
    client = _redis(settings)
    result = guard(lambda: refresh(settings, client, client_id))
    if result.requested:
        typer.echo("asked the running monitor to scan at its next tick")
        return
    assert result.report is not None
    report = result.report
    if client_id is not None and report.scanned == 0:
        raise _fail(f"{client_id!r} could not be read (unknown to the API, or the read failed)")
    typer.echo(
        f"scanned {report.scanned} subaccounts in {report.duration_s:.1f}s"
        f" ({report.errors} read errors)"
    )


@app.command("reconcile")
def reconcile_command(
    as_json: bool = typer.Option(False, "--json", help="A JSON array of drift items."),
    fix: bool = typer.Option(False, "--fix", help="Enqueue corrective events for fixable drift."),
    yes: bool = typer.Option(False, "--yes", help="With --fix: do not ask for confirmation."),
    recreate_missing: bool = typer.Option(False, help="With --fix: re-create missing ones."),
    restore_credits: bool = typer.Option(
        False,
        help="With --fix: re-create missing ones and grant back their last known balance "
        "(previewed, audited, once per snapshot).",
    ),
    operator: str | None = typer.Option(None, help="Name recorded in the audit trail."),
) -> None:
    """Compare recorded clients with the API; report drift; with --fix, repair through events
    and list what it skipped and why."""
    from handlers import Context
    from worker.credits import reconcile
    from worker.credits.monitor import monitor_client
    from worker.settings import ApiSurface

    settings = load()
    guard(settings.require_api_key)
    configure_logging(settings)  # logs go to stderr: stdout is the output
    if as_json and fix and not yes:
        raise _fail("--json --fix needs --yes (there is no one to ask)", 2)
    if restore_credits and not fix:
        raise _fail("--restore-credits goes with --fix", 2)
    recreate_missing = recreate_missing or restore_credits
    client = _redis(settings)
    with monitor_client(settings, client) as api:
        found = guard(
            lambda: reconcile.find(
                api,
                client,
                settings.key_prefix,
                page_size=settings.monitor_page_size,
                recreate_missing=recreate_missing,
            )
        )
    if not fix:
        _show_drift(found.items, as_json)
        return
    ctx = Context(needs_password=settings.api_surface == ApiSurface.V6)
    fixes = reconcile.plan(found, ctx, restore_credits=restore_credits)
    if not as_json:
        _show_drift(found.items, False)
        _show_plan(fixes)
    if not any(f.event for f in fixes):
        if as_json:
            _echo_json([_with_fix(item.to_json(), fixes) for item in found.items])
        else:
            typer.echo("nothing to fix")
            _show_skipped(fixes)
        return
    if not yes and not typer.confirm(f"enqueue {sum(1 for f in fixes if f.event)} events?"):
        raise _fail("cancelled; nothing enqueued")
    from worker.pipeline.publish import Publisher

    published = guard(
        lambda: reconcile.apply(
            fixes, Publisher(client, settings), client, settings.key_prefix, operator
        )
    )
    if as_json:
        _echo_json([_with_fix(item.to_json(), fixes) for item in found.items])
    else:
        typer.echo(f"enqueued {len(published)} corrective events (audited)")
        _show_skipped(fixes)


def _show_skipped(fixes: list[Any]) -> None:
    for f in fixes:
        if f.event is None:
            typer.echo(f"skipped {f.drift.username} ({f.drift.kind.value}): {f.note}")


def _with_fix(item: dict[str, Any], fixes: list[Any]) -> dict[str, Any]:
    """The item with its fix (`event_id` None: skipped, `note` says why) and, when its credits
    are restored, the restoring grant (`restore`)."""
    key = (item["kind"], item["username"])
    found = [f for f in fixes if (f.drift.kind.value, f.drift.username) == key]
    if not found:
        return {**item, "fix": None}
    out = {**item, "fix": _fix_json(found[0])}
    if len(found) > 1:
        out["restore"] = _fix_json(found[1])
    return out


def _fix_json(f: Any) -> dict[str, Any]:
    event = f.event
    return {
        "note": f.note,
        "event_id": event["id"] if event else None,
        "event_type": event["type"] if event else None,
    }


def _show_drift(items: list[Any], as_json: bool) -> None:
    if as_json:
        _echo_json([item.to_json() for item in items])
        return
    table = Table(title=f"{len(items)} drift items")
    for header in ("kind", "client", "username", "recorded", "api", "last balance", "fixable",
                   "explained by"):  # fmt: skip
        table.add_column(header)
    for item in items:
        d = item.drift
        latest = item.explanation[0] if item.explanation else {}
        why = f"{latest.get('event_type', '')} {latest.get('outcome', '')}".strip() or "-"
        table.add_row(
            *cells(
                d.kind.value,
                d.client_id or "-",
                d.username,
                json.dumps(d.recorded) if d.recorded else "-",
                json.dumps(d.actual) if d.actual else "(absent)",
                "-" if item.last_balance is None else str(item.last_balance),
                "yes" if item.fixable else "no",
                why,
            )
        )
    Console().print(table)


def _show_plan(fixes: list[Any]) -> None:
    table = Table(title="plan (no event: skipped, and why)")
    for header in ("kind", "client", "username", "corrective event"):
        table.add_column(header)
    for f in fixes:
        table.add_row(
            *cells(f.drift.kind.value, f.drift.client_id or "-", f.drift.username, f.note)
        )
    Console().print(table)
