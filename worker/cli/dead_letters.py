"""`dead-letters`: list, summarize, replay, purge, export and import dead letters, and their jobs.

Every command renders the service layer's values (`worker.ops`) as a rich table by default or as
JSON with `--json`; the console calls the same services.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from handlers import Context
from worker.cli import ops_render as r
from worker.cli.base import app
from worker.cli.job_follow import follow_job, outcomes_text
from worker.ops import export as export_ops
from worker.ops.advice import next_step
from worker.ops.api_health import circuit_open
from worker.ops.audit import log_actions, operator_name
from worker.ops.clusters import summarize
from worker.ops.filters import DeadLetterFilter, check_limit
from worker.ops.job_records import cancel_job, list_jobs
from worker.ops.jobs import JobResult, Runner, gc_paused
from worker.ops.listing import DeadLetterView, get_letters, list_dead_letters
from worker.ops.plans import Action, Plan, Resolve, plan, select
from worker.settings import ApiSurface, Settings

dead = typer.Typer(
    help="Inspect, replay and purge dead letters.",
    no_args_is_help=True,
    callback=lambda: log_actions(False),  # the command prints what it did (audit: in Redis)
)
app.add_typer(dead, name="dead-letters")

Ids = Annotated[list[str] | None, typer.Argument(help="Dead letter ids (from `list`).")]
All = Annotated[bool, typer.Option("--all", help="Every dead letter (no filter needed).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
PLAN_ROWS = 20
Rate = Annotated[float | None, typer.Option("--rate", help="At most N dead letters a second.")]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Follow the replayed events to their end; exit 1 if any is dead-lettered again.",
    ),
]
WaitTimeout = Annotated[
    float, typer.Option("--wait-timeout", help="Seconds --wait follows before giving up (exit 1).")
]


@dead.command("list")
def dead_list(
    reason: r.Reason = None,
    type_: r.Type = None,
    client: r.Client = None,
    since: r.Since = None,
    until: r.Until = None,
    status: r.Status = None,
    step: r.Step = None,
    source: r.Source = None,
    search: r.Search = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many first (paging).")] = 0,
    all_: All = False,
    as_json: r.Json = False,
) -> None:
    """List dead letters, newest first; the table ends with "N of M shown"."""
    flt = r.make_filter(reason, type_, client, since, until, status, step, source, search)
    lim = None if all_ else r.run(lambda: check_limit(limit))
    if offset < 0:
        r.fail(f"--offset must be 0 or more (got {offset})", 2)
    settings, rt = r.open_ops(read_only=True)
    page = r.run(
        lambda: list_dead_letters(rt.redis, settings.key_prefix, flt, limit=lim, offset=offset)
    )
    if as_json:
        r.print_json([item.to_json() for item in page.items])
        return
    r.out.print(_letters_table(page.items))
    r.out.print(f"{page.shown} of {page.total} shown" + ("" if page.shown == page.total else
                " (--limit, --offset or --all for more)"))  # fmt: skip


def _letters_table(items: list[DeadLetterView]) -> Any:
    rows = [
        (i.event_id, i.type, i.subject, i.invoice_id or "-", "" if i.credits is None else i.credits,
         i.reason, i.attempts, r.at(i.last_failed_at), i.detail[:50], i.id)
        for i in items
    ]  # fmt: skip
    columns = ("event", "type", "client", "invoice", "credits", "reason", "tries", "last failed",
               "last failure", "id")  # fmt: skip
    return r.table(None, columns, rows)


@dead.command("show")
def dead_show(key: Annotated[str, typer.Argument(help="Dead letter id.")]) -> None:
    """Print one dead letter in full (JSON)."""
    settings, rt = r.open_ops(read_only=True)
    found = r.run(lambda: get_letters(rt.redis, settings.key_prefix, [key]))
    if key not in found:
        r.fail(f"no dead letter {key!r}: list them with `dead-letters list`", 1)
    r.print_json(DeadLetterView.of(found[key]).to_json() | {"event": found[key].event})


@dead.command("summary")
def dead_summary(
    reason: r.Reason = None,
    type_: r.Type = None,
    client: r.Client = None,
    since: r.Since = None,
    until: r.Until = None,
    status: r.Status = None,
    step: r.Step = None,
    source: r.Source = None,
    search: r.Search = None,
    as_json: r.Json = False,
) -> None:
    """Failure clusters: counts by reason x type x step x last HTTP status, oldest and newest."""
    flt = r.make_filter(reason, type_, client, since, until, status, step, source, search)
    settings, rt = r.open_ops(read_only=True)
    summary = r.run(lambda: summarize(rt.redis, settings.key_prefix, flt))
    reasons = list(dict.fromkeys(c.reason for c in summary.clusters))
    steps = {reason: next_step(reason) for reason in reasons}
    if as_json:
        r.print_json(summary.to_json() | {"next_steps": steps})
        return
    rows = [
        (c.count, c.reason, c.type, c.step or "-", c.status or "-", r.at(c.oldest_at),
         r.at(c.newest_at))
        for c in summary.clusters
    ]  # fmt: skip
    columns = ("count", "reason", "type", "step", "http", "oldest", "newest")
    r.out.print(r.table(f"Dead letters: {summary.total}", columns, rows))
    if steps:
        r.out.print("What to do next:")
        for reason, advice in steps.items():
            r.out.print(f"  {reason}: {advice}")


@dead.command("replay")
def dead_replay(
    ids: Ids = None,
    reason: r.Reason = None,
    type_: r.Type = None,
    client: r.Client = None,
    since: r.Since = None,
    until: r.Until = None,
    status: r.Status = None,
    step: r.Step = None,
    source: r.Source = None,
    search: r.Search = None,
    all_: All = False,
    resolve: Annotated[
        str | None,
        typer.Option(help="ambiguous_outcome/business_key_conflict: applied or not_applied."),
    ] = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    rate: Rate = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = 600.0,
    operator: r.Operator = None,
    as_json: r.Json = False,
) -> None:
    """Put dead letters' events back on the queue: plan, confirm, then one recorded job;
    `--wait` follows the replayed events until each is applied, a duplicate, superseded or
    dead-lettered again."""
    if resolve not in (None, "applied", "not_applied"):
        r.fail("--resolve is 'applied' or 'not_applied'", 2)
    if wait_timeout <= 0:
        r.fail(f"--wait-timeout must be more than 0 (got {wait_timeout})", 2)
    flt = r.make_filter(reason, type_, client, since, until, status, step, source, search)
    follow = wait_timeout if wait else None
    _act("replay", ids, flt, all_, resolve, dry_run, yes, rate, operator, as_json, follow)  # type: ignore[arg-type]


@dead.command("purge")
def dead_purge(
    ids: Ids = None,
    reason: r.Reason = None,
    type_: r.Type = None,
    client: r.Client = None,
    since: r.Since = None,
    until: r.Until = None,
    status: r.Status = None,
    step: r.Step = None,
    source: r.Source = None,
    search: r.Search = None,
    all_: All = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    operator: r.Operator = None,
    as_json: r.Json = False,
) -> None:
    """Delete dead letters for good (what they held is released): plan, confirm, job."""
    flt = r.make_filter(reason, type_, client, since, until, status, step, source, search)
    _act("purge", ids, flt, all_, None, dry_run, yes, None, operator, as_json)


def _act(
    action: Action,
    ids: list[str] | None,
    flt: DeadLetterFilter,
    all_: bool,
    resolve: Resolve | None,
    dry_run: bool,
    yes: bool,
    rate: float | None,
    operator: str | None,
    as_json: bool,
    follow_s: float | None = None,
) -> None:
    if not ids and flt.empty and not all_:
        r.fail(f"say which dead letters to {action}: ids, a filter (--reason, --since, ...) "
               "or --all", 2)  # fmt: skip
    if ids and not flt.empty:
        r.fail("give ids or a filter, not both", 2)
    if rate is not None and rate <= 0:
        r.fail(f"--rate must be more than 0 (got {rate})", 2)
    if not dry_run and not yes and not sys.stdin.isatty():
        r.fail(f"{action} needs --yes when not at a terminal (--dry-run shows the plan)", 2)
    settings, rt = r.open_ops()
    with gc_paused():
        _plan_and_run(
            rt, settings, action, ids, flt, resolve, dry_run, yes, rate, operator, as_json,
            follow_s,
        )  # fmt: skip


def _plan_and_run(
    rt: Any,
    settings: Settings,
    action: Action,
    ids: list[str] | None,
    flt: DeadLetterFilter,
    resolve: Resolve | None,
    dry_run: bool,
    yes: bool,
    rate: float | None,
    operator: str | None,
    as_json: bool,
    follow_s: float | None = None,
) -> None:
    prefix = settings.key_prefix
    ctx = Context(needs_password=settings.api_surface == ApiSurface.V6)
    selection = r.run(lambda: select(rt.redis, prefix, ids=ids, flt=flt))
    the_plan = r.run(lambda: plan(rt.redis, prefix, selection, action=action, resolve=resolve,
                                  ctx=ctx, flt=flt))  # fmt: skip
    warning = circuit_open(rt.redis, prefix) if action == "replay" else None
    if warning:
        r.err.print(f"warning: {warning}")
    if dry_run:
        _show_plan(the_plan, as_json, warning)
        raise typer.Exit(1 if the_plan.missing else 0)
    if not as_json:
        _show_plan(the_plan, False)
    if not the_plan.planned:
        _nothing_to_do(the_plan, as_json)  # no job, no audit entry
    if not yes and not typer.confirm(f"{action.capitalize()} these {len(the_plan.planned)}?"):
        r.fail("nothing done", 1)
    runner = Runner(rt.redis, prefix, rt.publisher, getattr(settings, "timeline_maxlen", 200))
    result = _run_with_progress(runner, the_plan, operator_name(operator), rate, as_json)
    if follow_s is not None and action == "replay" and not result.cancelled:
        result = replace(result, job=follow_job(rt.redis, prefix, result.job, follow_s, as_json))
    if as_json:
        r.print_json(result.to_json())
    else:
        _show_result(result)
    failed = result.skipped or result.missing or result.cancelled
    if follow_s is not None and (result.job.failed_again or not result.job.settled):
        failed = True
    raise typer.Exit(1 if failed else 0)


def _nothing_to_do(the_plan: Plan, as_json: bool) -> None:
    """Nothing matched that can be acted on: say so and exit without a job (1 if ids were
    missing)."""
    if as_json:
        r.print_json({
            "job_id": None,
            "planned": 0,
            "replayed" if the_plan.action == "replay" else "purged": 0,
            "refused": [{"id": i.id, "why": i.refused or ""} for i in the_plan.refused],
            "skipped": [{"id": i, "why": "no such dead letter"} for i in the_plan.missing],
            "cancelled": False,
        })  # fmt: skip
    else:
        r.out.print(f"nothing to {the_plan.action}: no job started")
    raise typer.Exit(1 if the_plan.missing else 0)


def _run_with_progress(
    runner: Runner, the_plan: Plan, operator: str, rate: float | None, quiet: bool
) -> JobResult:
    """Run the job under a progress bar; Ctrl-C stops it cleanly between batches."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=r.err, disable=quiet) as bar:
            task = bar.add_task(the_plan.action, total=len(the_plan.planned))
            return r.run(
                lambda: runner.run(
                    the_plan,
                    operator=operator,
                    rate=rate,
                    stop=stop,
                    progress=lambda n, _total: bar.update(task, completed=n),
                )
            )
    finally:
        signal.signal(signal.SIGINT, previous)


def _show_plan(the_plan: Plan, as_json: bool, warning: str | None = None) -> None:
    if as_json:
        r.print_json(the_plan.to_json() | ({"warning": warning} if warning else {}))
        return
    rows = [
        (i.id[:12], i.event_id, i.client_id, i.type, i.reason, ",".join(i.steps_done) or "-",
         ",".join(i.calls) or "-", i.credits or "", i.refused or i.expect)
        for i in the_plan.items[:PLAN_ROWS]
    ]  # fmt: skip
    columns = ("id", "event", "client", "type", "reason", "done", "calls", "credits", "result")
    title = f"{the_plan.action.capitalize()} plan"
    r.out.print(r.table(title, columns, rows))
    if len(the_plan.items) > PLAN_ROWS:
        r.out.print(f"... and {len(the_plan.items) - PLAN_ROWS} more (--json for all)")
    dupes = sum(1 for i in the_plan.planned if i.duplicate)
    r.out.print(
        f"{len(the_plan.planned)} to {the_plan.action}, {len(the_plan.refused)} refused, "
        f"{len(the_plan.missing)} not found; {dupes} duplicate grants; "
        f"{the_plan.credits} credits would be granted"
        + (" once the API answers again" if warning else "")
    )


def _show_result(result: JobResult) -> None:
    verb = "replayed" if result.job.action == "replay" else "purged"
    line = f"job {result.job.id}: {len(result.done)} of {result.job.planned} {verb}"
    if result.cancelled:
        line += " (stopped before the end)"
    r.out.print(r.plain(line))
    if result.job.action == "replay" and result.done:
        state = result.job.state if result.job.settled else f"{result.job.state}, not all ended"
        r.out.print(r.plain(f"  outcomes ({state}): {outcomes_text(result.job)}"))
        if not result.job.settled:
            r.out.print(r.plain(f"  follow it: dead-letters jobs (or --wait); job {result.job.id}"))
    for item in result.skipped[:20]:
        r.out.print(r.plain(f"  skipped {item['id']}: {item['why']}"))
    for missing in result.missing[:20]:
        r.out.print(r.plain(f"  not found: {missing}"))


@dead.command("jobs")
def dead_jobs(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    cancel: Annotated[str | None, typer.Option(help="Ask this running job to stop.")] = None,
    operator: r.Operator = None,
    as_json: r.Json = False,
) -> None:
    """Replay and purge jobs, newest first (running ones show their progress)."""
    r.run(lambda: check_limit(limit))
    settings, rt = r.open_ops()
    if cancel:
        job = r.run(
            lambda: cancel_job(rt.redis, settings.key_prefix, cancel, operator_name(operator))
        )
        if job is None:
            r.fail(f"no job {cancel!r}: list them with `dead-letters jobs`", 1)
    jobs = r.run(lambda: list_jobs(rt.redis, settings.key_prefix, limit))
    if as_json:
        r.print_json([job.to_json() for job in jobs])
        return
    rows = [
        (j.id, j.action, j.state, j.operator, f"{j.done + j.skipped}/{j.planned}", j.done,
         j.skipped, j.refused, outcomes_text(j) if j.action == "replay" else "-",
         r.at(j.to_json()["started_at"]), r.at(j.to_json()["finished_at"]))
        for j in jobs
    ]  # fmt: skip
    columns = ("job", "action", "state", "operator", "progress", "done", "skipped", "refused",
               "outcomes", "started", "finished")  # fmt: skip
    r.out.print(r.table("Jobs", columns, rows))


@dead.command("export")
def dead_export(
    file: Annotated[Path, typer.Argument(help="JSONL file to write (- for stdout).")],
    reason: r.Reason = None,
    type_: r.Type = None,
    client: r.Client = None,
    since: r.Since = None,
    until: r.Until = None,
    status: r.Status = None,
    step: r.Step = None,
    source: r.Source = None,
    search: r.Search = None,
    operator: r.Operator = None,
    as_json: r.Json = False,
) -> None:
    """Write dead letters (the filter's, or all) as JSON Lines, secrets redacted."""
    flt = r.make_filter(reason, type_, client, since, until, status, step, source, search)
    settings, rt = r.open_ops()
    who = operator_name(operator)
    stream = sys.stdout if str(file) == "-" else None
    count = r.run(
        lambda: export_ops.export_to(rt.redis, settings.key_prefix, flt, file, who, stream)
    )
    if as_json:
        r.print_json({"exported": count, "file": str(file)})
    elif stream is None:
        r.out.print(r.plain(f"{count} dead letters written to {file}"))


@dead.command("import")
def dead_import(
    file: Annotated[Path, typer.Argument(help="JSONL file written by `dead-letters export`.")],
    operator: r.Operator = None,
    as_json: r.Json = False,
) -> None:
    """Put exported dead letters back (those already present are left as they are)."""
    settings, rt = r.open_ops()
    result = r.run(lambda: export_ops.import_from(rt.redis, settings.key_prefix, file,
                                                  operator_name(operator)))  # fmt: skip
    if as_json:
        r.print_json(result.to_json())
    else:
        r.out.print(f"{result.imported} imported, {result.present} already present")
