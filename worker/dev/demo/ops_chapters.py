"""The operator's chapter of the story: a bulk replay of the dead letters, previewed first.

It calls the services `dead-letters replay` calls (`worker.ops.plans`, `worker.ops.jobs`) and
prints what they return; the demo adds no logic of its own to them.
"""

from __future__ import annotations

from rich.table import Table

from worker.dev.demo import render
from worker.dev.demo.scene import Chapter, Row, Scene
from worker.ops.jobs import Runner
from worker.ops.plans import Plan, plan, select
from worker.pipeline.publish import Publisher

OPERATOR = "demo"


def _preview(the_plan: Plan) -> Table:
    """The replay preview, as `dead-letters replay --dry-run` shows it."""
    grid = render.table("dead letter", "client", "reason", "calls", "credits", "expected")
    for item in the_plan.items:
        grid.add_row(
            f"{item.type} {item.event_id[:10]}…",
            item.client_id,
            item.reason,
            ", ".join(item.calls) or "-",
            f"{item.credits:,}",
            item.refused or item.expect,
        )
    return grid


def replay(scene: Scene) -> Chapter:
    """The operator previews a replay of every dead letter, then runs it as one job."""
    ch = Chapter(
        "Bulk replay, previewed first",
        "`dead-letters replay --dry-run` reads each dead letter's ledger and its client's state "
        "and says what a replay would do; `--yes` then runs it as one recorded job.",
    )
    selection = select(scene.redis, scene.prefix)  # no ids, no filter: every dead letter
    the_plan = plan(scene.redis, scene.prefix, selection, action="replay", ctx=scene.context)
    ch.extra.append(_preview(the_plan))
    ch.notes.append(
        f"Preview: {len(the_plan.planned)} to replay, {len(the_plan.refused)} refused, "
        f"{the_plan.credits:,} credits would be granted."
    )
    mark = scene.mark()
    runner = Runner(scene.redis, scene.prefix, Publisher(scene.redis, scene.settings))
    result = runner.run(the_plan, operator=OPERATOR)
    keys = [item.id for item in the_plan.planned]
    records = scene.await_outcomes_of(mark, keys)
    ch.rows = [
        Row(
            f"{r['event_type']} {r['client_id']}", "replay job", r["outcome"], r.get("reason") or ""
        )
        for r in records
    ]
    ch.calls = scene.calls_since(mark)
    ch.notes.append(f"Job {result.job.id}: {len(result.done)} of {result.job.planned} replayed.")
    expected = sum(credits for _client, credits in scene.pending.values())
    ch.check(
        "the preview planned every dead letter",
        len(the_plan.planned) == len(scene.pending) and the_plan.credits == expected,
        f"{len(the_plan.planned)} planned, {the_plan.credits} credits; expected {expected}",
    )
    ch.check("every replay applied", all(r["outcome"] == "applied" for r in records))
    for invoice, (client_id, credits) in scene.pending.items():
        scene.expect_grant(client_id, credits, invoice)
    scene.pending.clear()
    ch.check("no dead letter left", scene.dead_letter_count() == 0)
    return ch
