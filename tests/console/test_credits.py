"""The credits page over the real monitor and reconcile: subaccounts sorted by runway, the
low-credit alert, the client's balance chart, and drift fixed by an admin through preview →
confirm (audited), never by an operator."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.console.support import SECRET, TOKENS_SETTING, login, same_origin
from tests.credits_support import FakeClock, credit_settings
from tests.pipeline_support import running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker.console import create_app
from worker.credits.monitor import build_monitor
from worker.ops.audit import list_audit
from worker.runtime import redis_client as make_redis
from worker.sandbox import SandboxAdmin
from worker.sandbox import create_app as create_sandbox
from worker.settings import Settings

FIX_ID = re.compile(r'name="fix" value="([^"]+)"')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(redis_url: str, clock: FakeClock) -> Iterator[tuple[Settings, SandboxAdmin, str]]:
    """A sandbox sending mail on the test's clock, the worker, and a console that may call the
    API (for reconcile)."""
    from tests.conftest import TEST_API_KEY

    sandbox_server = ThreadedUvicorn(create_sandbox(TEST_API_KEY, clock=clock)).start()
    settings = credit_settings(
        redis_url, sandbox_server.url, console_tokens=TOKENS_SETTING, console_secret=SECRET
    )
    app = create_app(settings)
    console = ThreadedUvicorn(app).start()
    admin = SandboxAdmin(sandbox_server.url)
    try:
        yield settings, admin, console.url
    finally:
        admin.close()
        console.stop()
        app.state.services.close()
        sandbox_server.stop()


def test_credits_runway_alerts_and_a_drift_fixed_by_an_admin(
    world: tuple[Settings, SandboxAdmin, str], clock: FakeClock, redis_client: redis.Redis
) -> None:
    settings, sandbox, url = world
    with running_pipeline(settings) as runtime:
        onboards = [f.onboarded("lowco", credits=600), f.onboarded("richco", credits=90_000)]
        runtime.publisher.publish_many(onboards)
        wait_for_outcomes(redis_client, [e["id"] for e in onboards])
        sandbox.set_sending(2, seed=3)
        monitor = build_monitor(settings, make_redis(settings), clock=clock)
        for _ in range(4):
            monitor.tick()
            clock.advance(60)
        sandbox.set_state({"subaccounts": {username_for("richco"): {"disabled": True}}})

        admin = httpx.Client(base_url=url, timeout=30)
        csrf = login(admin, "admin")
        page = admin.get("/credits").text
        assert page.index(username_for("lowco")) < page.index(username_for("richco"))
        assert "subaccount.credits_low" in page
        overview = admin.get("/").text
        assert re.search(r'data-figure="low_credits"><a href="/credits">1</a>', overview)
        client_page = admin.get("/clients/lowco").text
        assert 'data-credit="balance"' in client_page
        assert '<path class="line" d="M' in client_page  # the balance history chart

        report = admin.post("/credits/reconcile", data={"csrf": csrf}, headers=same_origin(admin))
        assert "unexpected_disabled" in report.text
        fix_id = FIX_ID.search(report.text)
        assert fix_id

        operator = httpx.Client(base_url=url, timeout=30)
        op_csrf = login(operator, "operator")
        refused = operator.post(
            "/credits/fix/preview", data={"csrf": op_csrf, "fix": fix_id.group(1)},
            headers=same_origin(operator),
        )  # fmt: skip
        assert refused.status_code == 403

        form = {"csrf": csrf, "fix": fix_id.group(1)}
        preview = admin.post("/credits/fix/preview", data=form, headers=same_origin(admin))
        assert "Fix preview: 1 corrective event" in preview.text
        assert sandbox.state()["subaccounts"][username_for("richco")]["disabled"] is True
        done = admin.post("/credits/fix/confirm", data=form, headers=same_origin(admin))
        assert "Enqueued 1 corrective event" in done.text
        wait_until(
            lambda: not sandbox.state()["subaccounts"][username_for("richco")]["disabled"],
            what="the corrective event applied by the worker",
        )
        (entry,) = [e for e in list_audit(redis_client, "saw") if e.action == "reconcile_fix"]
        assert entry.operator == "ada"
        again = admin.post("/credits/fix/confirm", data=form, headers=same_origin(admin))
        assert again.status_code == 422  # a kept fix is used once
        admin.close()
        operator.close()
