"""The story the demo tells, one function per chapter: each acts, waits, and says what it saw.

Chapters only send through the front doors, act as an operator would (the ops and credits
services, the sandbox's admin routes for what happens outside our system), and read what
happened. Expectations are checked on what the system did, never assumed.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

from worker.dev.demo import credit_chapters, ops_chapters
from worker.dev.demo.doors import (
    Delivery,
    billing_invoice_paid,
    stripe_invoice_paid,
    stripe_subscription_deleted,
)
from worker.dev.demo.scene import Chapter, Client, Row, Scene

CAST = (
    Client("acme", "Acme Corp", "ops@acme.example", 5000),
    Client("bistro", "Bistro Lumen", "hello@bistro.example", 3000),
    Client("cafe-nord", "Café Nord", "admin@cafe-nord.example", 1200),
)
OUTAGE = {"operations": {"add_credits": {"error_rate": 1.0, "error_status": 503}}}

ChapterFn = Callable[[Scene], Chapter]


def evt_id(prefix: str) -> str:
    """A fresh id in a sender's style (`evt_...` for Stripe, `msg_...` for Standard Webhooks)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def rows_for(
    deliveries: list[Delivery], records: list[dict[str, Any]], whys: list[str] | None = None
) -> list[Row]:
    """One printed row per delivery: its outcome and why (the story's gloss, else the reason)."""
    glosses = whys or [""] * len(deliveries)
    return [
        Row(d.label, d.door, r["outcome"], gloss or r.get("reason") or "")
        for d, r, gloss in zip(deliveries, records, glosses, strict=True)
    ]


def grants_in(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The credit grants among `calls` that the API applied."""
    return [c for c in calls if c["operation"] == "add_credits" and c["applied"]]


def onboarding(scene: Scene) -> Chapter:
    """Three clients sign up: the CRM sends a signed `client.onboarded` webhook for each."""
    ch = Chapter(
        "Three clients onboarded by the CRM",
        "The CRM signs each webhook per Standard Webhooks; the ingress verifies it, maps it to "
        "`client.onboarded`, and the worker creates the subaccount with its starting credits.",
    )
    mark = scene.mark()
    sent = [
        scene.doors.crm(
            "client.onboarded",
            c.client_id,
            {"email": c.email, "credit_type": "one_time_credit", "credits": c.credits},
            scene.at(i),
            evt_id("msg"),
            note=f"{c.client_id}, {c.credits:,} credits",
        )
        for i, c in enumerate(scene.cast.values())
    ]
    records = scene.await_outcomes(mark, sent)
    ch.rows = rows_for(sent, records)
    ch.calls = scene.calls_since(mark)
    for c in scene.cast.values():
        scene.expect_grant(c.client_id, c.credits, "onboarding")
    ch.check("three onboardings applied", all(r["outcome"] == "applied" for r in records))
    creates = [c for c in ch.calls if c["operation"] == "create" and c["applied"]]
    ch.check("three subaccounts created", len(creates) == 3, f"{len(creates)} created")
    return ch


def invoices(scene: Scene) -> Chapter:
    """Paid invoices: one Stripe delivers twice, one the billing system also reports."""
    acme, bistro = scene.cast["acme"], scene.cast["bistro"]
    ch = Chapter(
        "Invoices paid, some reported twice",
        "Stripe retries a webhook it thinks was lost (same event id), and the billing system "
        "reports an invoice Stripe already did (another source, same invoice): one grant each.",
    )
    mark = scene.mark()
    twice = stripe_invoice_paid(evt_id("evt"), "in_A1", acme.client_id, 2500, scene.at(60))
    first = scene.doors.stripe(twice, note="in_A1 acme 2,500")
    again = scene.doors.stripe(twice, note="in_A1 acme (again)")
    paid = stripe_invoice_paid(evt_id("evt"), "in_B1", bistro.client_id, 800, scene.at(61))
    by_stripe = scene.doors.stripe(paid, note="in_B1 bistro 800")
    by_billing = scene.doors.billing(
        billing_invoice_paid(evt_id("bill"), "in_B1", bistro.client_id, 800, scene.at(62)),
        note="in_B1 bistro 800",
    )
    sent = [first, again, by_stripe, by_billing]
    records = scene.await_outcomes(mark, sent)
    seen: set[str] = set()
    whys = []
    for delivery, record in zip(sent, records, strict=True):
        if record["outcome"] == "duplicate":
            whys.append(
                "same event: done in the ledger"
                if delivery.key in seen
                else "same invoice, other source"
            )
        else:
            whys.append("")
        seen.add(delivery.key)
    ch.rows = rows_for(sent, records, whys)
    ch.calls = scene.calls_since(mark)
    scene.expect_grant(acme.client_id, 2500, "in_A1")
    scene.expect_grant(bistro.client_id, 800, "in_B1")
    outcomes = Counter(r["outcome"] for r in records)
    grants = grants_in(ch.calls)
    ch.check(
        "each invoice granted once",
        outcomes == Counter(applied=2, duplicate=2) and len(grants) == 2,
        f"outcomes {dict(outcomes)}, {len(grants)} add_credits",
    )
    prevented = sum(
        800 if r["client_id"] == bistro.client_id else 2500
        for r in records
        if r["outcome"] == "duplicate"
    )
    ch.notes.append(
        f"The ledger prevented {outcomes['duplicate']} second grants ({prevented:,} credits): "
        "two deliveries, one add_credits call per invoice."
    )
    return ch


def out_of_order(scene: Scene) -> Chapter:
    """A suspension and the reactivation that overrides it arrive the wrong way round."""
    bistro = scene.cast["bistro"]
    ch = Chapter(
        "A suspension and a reactivation, out of order",
        "Bistro Lumen is suspended, then reactivated 100 s later; the webhooks arrive the other "
        "way round. Each event carries its business time, so the late suspension changes nothing.",
    )
    mark = scene.mark()
    reactivated = scene.doors.crm(
        "client.reactivated", bistro.client_id, {}, scene.at(300), evt_id("msg"), note="bistro"
    )
    first = scene.await_outcomes(mark, [reactivated])
    suspended = scene.doors.crm(
        "client.suspended",
        bistro.client_id,
        {"reason": "unpaid"},
        scene.at(200),
        evt_id("msg"),
        note="bistro (older)",
    )
    records = [*first, *scene.await_outcomes(mark, [suspended])]
    sent = [reactivated, suspended]
    ch.rows = rows_for(sent, records)
    ch.calls = scene.calls_since(mark)
    disables = [c for c in ch.calls if c["operation"] == "disable"]
    ch.check(
        "the late suspension is superseded",
        records[1]["outcome"] == "superseded",
        records[1]["outcome"],
    )
    ch.check("no disable call was made", not disables, f"{len(disables)} disable calls")
    ch.notes.append(
        "The client's recorded state has a newer status change; the suspension is recorded as "
        "superseded and no disable call is made."
    )
    return ch


def outage(scene: Scene) -> Chapter:
    """The API fails every credit grant for a while: two invoices become dead letters."""
    acme, bistro = scene.cast["acme"], scene.cast["bistro"]
    ch = Chapter(
        "An API outage turns two invoices into dead letters",
        "The Subaccount API answers 503 to every credit grant. The worker retries with backoff; "
        "past the attempt limit each invoice is kept as a dead letter, nothing lost.",
    )
    scene.admin.set_faults(OUTAGE)
    try:
        mark = scene.mark()
        sent = [
            scene.doors.stripe(
                stripe_invoice_paid(evt_id("evt"), "in_A2", acme.client_id, 1500, scene.at(400)),
                note="in_A2 acme 1,500",
            ),
            scene.doors.stripe(
                stripe_invoice_paid(evt_id("evt"), "in_B2", bistro.client_id, 1200, scene.at(401)),
                note="in_B2 bistro 1,200",
            ),
        ]
        records = scene.await_outcomes(mark, sent)
    finally:
        scene.admin.set_faults({})
    ch.rows = rows_for(sent, records)
    ch.calls = scene.calls_since(mark)
    scene.pending["in_A2"] = (acme.client_id, 1500)
    scene.pending["in_B2"] = (bistro.client_id, 1200)
    dead = [r for r in records if r["outcome"] == "dead_lettered"]
    ch.check("two invoices dead-lettered", len(dead) == 2, f"{len(dead)} dead letters")
    granted = grants_in(ch.calls)
    ch.check("no credits granted during the outage", not granted, f"{len(granted)} applied")
    ch.notes.append(
        f"Each invoice was tried {scene.settings.retry_max_attempts} times (this demo's limit), "
        "then kept with its reason. The API is back; the dead letters wait for an operator."
    )
    return ch


def churn(scene: Scene) -> Chapter:
    """Café Nord cancels: Stripe reports the subscription deleted, the subaccount goes."""
    cafe = scene.cast["cafe-nord"]
    ch = Chapter(
        "A client churns",
        "Café Nord cancels its subscription; Stripe's `customer.subscription.deleted` maps to "
        "`client.churned`; the worker deletes the subaccount (its credits go back to the master).",
    )
    mark = scene.mark()
    sent = [
        scene.doors.stripe(
            stripe_subscription_deleted(evt_id("evt"), "sub_C", cafe.client_id, scene.at(900)),
            note="cafe-nord",
        )
    ]
    records = scene.await_outcomes(mark, sent)
    ch.rows = rows_for(sent, records)
    ch.calls = scene.calls_since(mark)
    scene.churned.add(cafe.client_id)
    deletes = [c for c in ch.calls if c["operation"] == "delete" and c["applied"]]
    ch.check("the churn applied", records[0]["outcome"] == "applied", records[0]["outcome"])
    ch.check("the subaccount was deleted once", len(deletes) == 1, f"{len(deletes)} deletes")
    return ch


CHAPTERS: list[ChapterFn] = [
    onboarding,
    invoices,
    out_of_order,
    outage,
    ops_chapters.replay,
    credit_chapters.reconcile,
    credit_chapters.low_credit,
    churn,
]
