"""The credit chapters: a subaccount disabled by hand that reconcile fixes, a low-credit alert.

They call the services `reconcile --fix` and `credits list` call (`worker.credits`) and read
what the running monitor recorded; the demo adds no logic of its own to them.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from worker.api.client import SubaccountClient
from worker.credits import reconcile as reconciling
from worker.credits.notify import NotificationType, read_notifications
from worker.credits.service import list_credits
from worker.dev.demo import render
from worker.dev.demo.ops_chapters import OPERATOR
from worker.dev.demo.scene import Chapter, Row, Scene
from worker.dev.devservers import wait_until
from worker.pipeline.publish import Publisher

SENDING_EMAILS_PER_S = 300
ALERT_WAIT_S = 30.0


def reconcile(scene: Scene) -> Chapter:
    """Someone disables a subaccount in the API by hand; reconcile finds it and fixes it."""
    bistro = scene.cast["bistro"]
    ch = Chapter(
        "A subaccount disabled by hand, found and fixed by reconcile",
        "Someone disables Bistro Lumen in the provider's dashboard. `reconcile` compares what the "
        "pipeline recorded with what the API says, explains the difference, and `--fix` sends a "
        "corrective event through the normal pipeline.",
    )
    mark = scene.mark()
    scene.admin.set_state({"subaccounts": {bistro.username: {"disabled": True}}})
    with SubaccountClient.from_settings(scene.settings) as api:
        found = reconciling.find(api, scene.redis, scene.prefix)
    fixes = reconciling.plan(found, scene.context)
    grid = render.table("drift", "client", "recorded", "API says", "fix")
    notes = {(f.drift.kind, f.drift.username): f.note for f in fixes}
    for item in found.items:
        d = item.drift
        fix = notes.get((d.kind, d.username), "-")
        grid.add_row(d.kind.value, d.client_id or "-", _status(d.recorded), _status(d.actual), fix)
    ch.extra.append(grid)
    published = reconciling.apply(
        fixes, Publisher(scene.redis, scene.settings), scene.redis, scene.prefix, OPERATOR
    )
    records = scene.await_outcomes_of(mark, [p.key for p in published])
    ch.rows = [
        Row(f"{r['event_type']} {r['client_id']}", "reconcile --fix", r["outcome"], "")
        for r in records
    ]
    ch.calls = scene.calls_since(mark)
    kinds = [(i.drift.kind.value, i.drift.client_id) for i in found.items]
    ch.check(
        "reconcile found the disabled subaccount",
        ("unexpected_disabled", bistro.client_id) in kinds,
        f"found {kinds}",
    )
    enabled = [c for c in ch.calls if c["operation"] == "enable" and c["applied"]]
    ch.check("the fix re-enabled it", len(enabled) == 1, f"{len(enabled)} enable calls")
    return ch


def _status(fields: dict[str, Any] | None) -> str:
    """A drift side in one word: the recorded lifecycle, or the API's enabled/disabled."""
    if not fields:
        return "(absent)"
    if "lifecycle" in fields:
        return str(fields["lifecycle"])
    return "disabled" if fields.get("disabled") else "enabled"


def low_credit(scene: Scene) -> Chapter:
    """The sandbox's subaccounts send mail; the monitor sees Café Nord run low and alerts."""
    cafe = scene.cast["cafe-nord"]
    ch = Chapter(
        "A low-credit alert while the subaccounts send mail",
        f"The sandbox's subaccounts start sending {SENDING_EMAILS_PER_S} emails/s between them. "
        "The monitor reads every balance each second; below "
        f"{scene.settings.credits_warn_balance:,} credits a subaccount gets an alert, and a "
        "`subaccount.credits_low` notification.",
    )
    mark = scene.mark()
    scene.admin.set_sending(SENDING_EMAILS_PER_S, seed=17)
    try:
        wait_until(lambda: _low(scene), timeout_s=ALERT_WAIT_S, what="a low-credit alert")
    finally:
        sending = scene.admin.set_sending(0)
    rows = list_credits(scene.redis, scene.prefix)
    grid = render.table("client", "balance (monitor)", "level", "alert")
    for row in rows:
        level = Text(row.level, "yellow" if row.low else "green")
        grid.add_row(row.client_id or row.username, f"{row.balance:,}", level, row.alert_id or "-")
    ch.extra.append(grid)
    notes = [
        n
        for n in read_notifications(scene.redis, scene.prefix)
        if n.type == NotificationType.CREDITS_LOW
    ]
    for note in notes:
        ch.rows.append(Row(f"{note.type.value} {note.data.get('client_id', '')}", "notification",
                           "recorded", f"balance {note.data.get('balance', '?')}"))  # fmt: skip
    ch.calls = scene.calls_since(mark)
    ch.notes.append(f"{sending['sent']:,} emails sent; sending stopped.")
    low = {row.client_id for row in rows if row.low}
    ch.check("Café Nord's alert is open", cafe.client_id in low, f"low: {sorted(map(str, low))}")
    ch.check("no other client alerted", low <= {cafe.client_id}, f"low: {sorted(map(str, low))}")
    ch.check(
        "one credits_low notification, for Café Nord",
        [n.data.get("client_id") for n in notes] == [cafe.client_id],
        f"{[n.data for n in notes]}",
    )
    return ch


def _low(scene: Scene) -> bool:
    return any(row.low for row in list_credits(scene.redis, scene.prefix))
