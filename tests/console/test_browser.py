"""The console in real headless Chromium, over the real pipeline: an API outage dead-letters a
batch of invoices; an operator logs in, filters, previews the replay, confirms it, watches the
job reach 100% live, and finds the dead letters gone and the replay on the client's page. A
viewer sees no action and is refused if it tries. The run takes screenshots; with
SAW_SCREENSHOTS=docs it remakes those in docs/console/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from playwright.sync_api import Browser, expect

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.console.browser import chromium, log_in, screenshot
from tests.console.support import write_dead_letter
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn
from worker.credits.monitor import build_monitor
from worker.pipeline.attempts import AttemptStore
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

CLIENTS = ["acme-1", "acme-2", "acme-3", "acme-4"]


@pytest.fixture
def pipeline(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """The worker (in-process Dramatiq) on the console's Redis; two attempts before giving up."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, retry_max_attempts=2
    )
    with running_pipeline(settings) as runtime:
        yield runtime


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def outage(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis, store: AttemptStore
) -> list[str]:
    """Clients onboarded, then every grant answered 503 until the invoices dead-letter
    `retries_exhausted`; one unrelated, genuinely bad dead letter beside them. The API is back."""
    onboards = [f.onboarded(client) for client in CLIENTS]
    pipeline.publisher.publish_many(onboards)
    wait_for_outcomes(redis_client, [e["id"] for e in onboards])
    sandbox.set_faults({"operations": {"add_credits": {"error_rate": 1.0}}})
    invoices = [f.invoice_paid(c, f"inv-{c}", credits=250) for c in CLIENTS]
    pipeline.publisher.publish_many(invoices)
    ended = wait_for_outcomes(redis_client, [e["id"] for e in invoices])
    assert {o["reason"] for o in ended.values()} == {"retries_exhausted"}
    write_dead_letter(store, "zed-9", reason="invalid_event", step=None, detail="bad amount")
    sandbox.set_faults({})
    return [e["id"] for e in invoices]


def test_an_operator_replays_an_outage_from_the_browser(
    browser: Browser,
    pipeline: Runtime,
    console: ThreadedUvicorn,
    outage: list[str],
    sandbox: SandboxAdmin,
    redis_client: redis.Redis,
) -> None:
    page = log_in(browser, console.url, "operator")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    rows = page.locator("table.dead-letters tbody tr[data-id]")
    expect(rows).to_have_count(5)
    expect(page.locator("table.dead-letters")).to_contain_text("inv-acme-1")  # invoice column
    screenshot(page, "dead-letters-list.png")

    # Filter to the outage's reason: the listing is replaced in place.
    page.select_option("select[name=reason]", "retries_exhausted")
    expect(rows).to_have_count(4)
    expect(page).to_have_url(f"{console.url}/dead-letters?reason=retries_exhausted")

    # Preview a replay of everything matching: the plan, nothing changed yet.
    page.check("input[name=scope][value=matching]")
    page.click("button[name=action][value=replay]")
    preview = page.locator("#plan")
    expect(preview).to_contain_text("Preview: replay of 4 dead letters")
    expect(preview).to_contain_text("1 000 credits would be granted".replace(" ", "\u2009"))
    expect(preview.locator("table.plan tbody tr")).to_have_count(4)
    screenshot(page, "dead-letters-preview.png")
    assert redis_client.hlen("saw:dead") == 5

    # Confirm at 2 per second: progress arrives by server-sent events until 100%.
    page.evaluate(
        """() => { window.seen = []; new MutationObserver(() => {
             const p = document.querySelector('[data-job=percent]');
             if (p) window.seen.push(p.textContent); })
           .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
    )
    page.fill("input[name=rate]", "2")
    page.click("#plan button[type=submit]")
    expect(page.locator("[data-job=percent]")).to_have_text("100%", timeout=20_000)
    expect(page.locator("[data-job=state]")).to_have_text("finished")
    seen = page.evaluate("window.seen")
    assert seen[0] != "100%"  # it was seen moving, not rendered finished
    assert page.url.endswith("/dead-letters?reason=retries_exhausted")  # no reload

    # The worker applies the replays: each grant exactly once; the dead letters are gone.
    wait_for_outcomes(redis_client, outage)
    job_link = page.locator("#plan h2 a.mono").get_attribute("href")
    assert job_link is not None
    page.goto(job_link)
    expect(page.locator('[data-outcome="applied"]')).to_have_text("4")
    expect(page.locator("[data-job=state]")).to_have_text("finished")
    page.goto("/dead-letters?reason=retries_exhausted")
    expect(page.locator("table.dead-letters")).to_contain_text("No dead letters match")
    page.goto("/dead-letters")
    expect(rows).to_have_count(1)
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert sorted(e["username"] for e in grants) == sorted(username_for(c) for c in CLIENTS)

    # The client's page shows the replay in its timeline, beside a credits snapshot.
    monitor = build_monitor(pipeline.settings, pipeline.redis)
    for _ in range(3):
        monitor.tick()
    page.goto("/clients/acme-2")
    expect(page.locator("[data-credit=balance]")).to_have_text("250")  # granted once
    expect(page.locator("ol.timeline")).to_contain_text("replayed")
    expect(page.locator("ol.timeline")).to_contain_text("by otto")
    screenshot(page, "client.png")

    page.goto("/")
    expect(page.locator("[data-figure=dead_letters]")).to_have_text("1")
    screenshot(page, "overview.png")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "overview-dark.png")
    assert problems == []  # no script error, no CSP violation


def test_a_viewer_sees_no_action_and_is_refused_if_it_tries(
    browser: Browser, console: ThreadedUvicorn, store: AttemptStore
) -> None:
    letter = write_dead_letter(store, "acme-1")
    page = log_in(browser, console.url, "viewer")
    expect(page.locator("table.dead-letters tbody tr[data-id]")).to_have_count(1)
    expect(page.locator("input[name=ids]")).to_have_count(0)
    expect(page.locator("button[name=action]")).to_have_count(0)
    status = page.evaluate(
        """async (id) => {
             const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
             const body = new URLSearchParams({ids: id, action: 'replay', csrf});
             const answer = await fetch('/dead-letters/preview', {method: 'POST', body});
             return answer.status; }""",
        letter.key,
    )
    assert status == 403


def test_a_job_page_shows_what_became_of_each_replayed_event(
    browser: Browser, console: ThreadedUvicorn, store: AttemptStore, redis_client: redis.Redis
) -> None:
    """Four replayed: the page follows them live as the worker would end them (marked here in
    the ledger, as its finish script does): applied, dead-lettered again, one still pending."""
    letters = [write_dead_letter(store, f"acme-{n}", n=n) for n in range(4)]
    page = log_in(browser, console.url, "operator")
    page.check("input[name=scope][value=matching]")
    page.click("button[name=action][value=replay]")
    page.click("#plan button[type=submit]")
    expect(page.locator("[data-job=state]")).to_have_text("settling", timeout=20_000)
    job_link = page.locator("#plan h2 a.mono").get_attribute("href")
    assert job_link is not None
    page.goto(job_link)
    ends = ["applied", "applied", "dead_lettered"]
    for letter, outcome in zip(letters, ends, strict=False):
        redis_client.hset(f"saw:ledger:{letter.key}", "_outcome", f'{{"outcome":"{outcome}"}}')
    write_dead_letter(store, "acme-2", event=letters[2].event, reason="not_found",
                      detail="no subaccount")  # fmt: skip
    expect(page.locator('[data-outcome="applied"]')).to_have_text("2")
    expect(page.locator('[data-outcome="dead_lettered_again"]')).to_have_text("1")
    expect(page.locator('[data-outcome="pending"]')).to_have_text("1")
    expect(page.locator("[data-job=state]")).to_have_text("settling")
    expect(page.locator(".job")).to_contain_text("Dead-lettered again: not_found 1")
    screenshot(page, "job-breakdown.png")
