"""Replay, purge, resolve and cancel through the console: always preview → confirm → job, the
job acting on exactly the previewed dead letters, each action audited with the user's name."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
import redis

from tests.console.support import TOKENS, same_origin, write_dead_letter
from tests.servers import wait_until
from worker.ops.audit import list_audit
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.outcomes import DeadLetter

Login = Callable[[str], tuple[httpx.Client, str]]
PLAN_ID = re.compile(r'name="plan" value="([^"]+)"')
JOB_ID = re.compile(r'href="/jobs/([^"]+)"')


@pytest.fixture
def outage(store: AttemptStore) -> list[DeadLetter]:
    return [write_dead_letter(store, f"c{n}", n=n) for n in range(3)]


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def finished(client: httpx.Client, job_id: str, headers: dict[str, str]) -> bool:
    return client.get(f"/api/jobs/{job_id}", headers=headers).json()["state"] != "running"


def test_the_api_dry_run_is_the_plan_and_changes_nothing(
    anonymous: httpx.Client, outage: list[DeadLetter], redis_client: redis.Redis
) -> None:
    body = {"filter": {"reason": "retries_exhausted"}, "dry_run": True}
    answer = anonymous.post("/api/replays", json=body, headers=bearer("operator"))
    assert answer.status_code == 200
    plan = answer.json()
    assert plan["planned"] == 3
    assert {item["id"] for item in plan["items"]} == {letter.key for letter in outage}
    assert all(item["refused"] is None for item in plan["items"])  # unknown clients: waits
    assert redis_client.hlen("saw:dead") == 3


def test_an_api_replay_runs_as_a_job_audited_with_the_users_name(
    anonymous: httpx.Client, outage: list[DeadLetter], redis_client: redis.Redis
) -> None:
    headers = bearer("operator")
    body = {"ids": [outage[0].key, outage[1].key], "dry_run": False}
    answer = anonymous.post("/api/replays", json=body, headers=headers)
    assert answer.status_code == 202
    job = answer.json()
    assert (job["action"], job["operator"], job["planned"]) == ("replay", "otto", 2)
    wait_until(lambda: finished(anonymous, job["id"], headers), what="the replay job")
    assert not redis_client.hexists("saw:dead", outage[0].key)
    assert redis_client.hexists("saw:dead", outage[2].key)
    (entry,) = [e for e in list_audit(redis_client, "saw") if e.action == "replay"]
    assert (entry.operator, entry.job_id, entry.count) == ("otto", job["id"], 2)
    anonymous.post(
        "/login", data={"user": "vera", "token": TOKENS["viewer"]}, headers=same_origin(anonymous)
    )
    exported = anonymous.get("/audit/export?operator=otto&action=replay")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    (line,) = exported.text.splitlines()
    assert json.loads(line)["job_id"] == job["id"]
    assert anonymous.get("/audit/export?operator=nobody").text == ""


def test_a_confirm_acts_on_exactly_the_previewed_dead_letters(
    as_role: Login, outage: list[DeadLetter], store: AttemptStore, redis_client: redis.Redis
) -> None:
    """A dead letter matching the filter that arrives after the preview is not replayed."""
    client, csrf = as_role("operator")
    form = {"csrf": csrf, "scope": "matching", "reason": "retries_exhausted", "action": "replay"}
    preview = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert preview.status_code == 200
    assert "Preview: replay of 3 dead letters" in preview.text
    # the confirm comes before the plan's table: no scrolling past thousands of rows
    assert preview.text.index("Confirm replay of 3") < preview.text.index('<table class="plan">')
    late = write_dead_letter(store, "c9", n=9)
    plan = PLAN_ID.search(preview.text)
    assert plan
    started = client.post(
        "/dead-letters/confirm",
        data={"csrf": csrf, "plan": plan.group(1)},
        headers=same_origin(client),
    )
    assert started.status_code == 200
    job_id = JOB_ID.search(started.text)
    assert job_id
    wait_until(lambda: finished(client, job_id.group(1), {}), what="the replay job")
    assert set(map(bytes.decode, redis_client.hkeys("saw:dead"))) == {late.key}


def test_a_record_changed_between_preview_and_confirm_is_refused(
    as_role: Login, store: AttemptStore, redis_client: redis.Redis
) -> None:
    """The confirm carries the digest of each record the preview saw: a changed one is refused."""
    first = write_dead_letter(store, "c1", n=1, at_ms=1_700_000_000_000)
    client, csrf = as_role("operator")
    form = {"csrf": csrf, "ids": first.key, "action": "replay"}
    preview = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    plan = PLAN_ID.search(preview.text)
    assert plan
    # Meanwhile the event was replayed elsewhere and failed again: a new record, same id.
    again = replace(first, detail="failed again, differently", attempts=5)
    redis_client.hset("saw:dead", first.key, again.encode())
    started = client.post(
        "/dead-letters/confirm",
        data={"csrf": csrf, "plan": plan.group(1)},
        headers=same_origin(client),
    )
    job_id = JOB_ID.search(started.text)
    assert job_id
    wait_until(lambda: finished(client, job_id.group(1), {}), what="the replay job")
    job = client.get(f"/api/jobs/{job_id.group(1)}").json()
    assert (job["done"], job["refused"]) == (0, 1)
    assert redis_client.hexists("saw:dead", first.key)


def test_an_admin_purges_through_preview_and_confirm(
    as_role: Login, outage: list[DeadLetter], redis_client: redis.Redis
) -> None:
    client, csrf = as_role("admin")
    form = {"csrf": csrf, "ids": outage[2].key, "action": "purge"}
    preview = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert "Preview: purge of 1 dead letter" in preview.text
    plan = PLAN_ID.search(preview.text)
    assert plan
    started = client.post(
        "/dead-letters/confirm",
        data={"csrf": csrf, "plan": plan.group(1)},
        headers=same_origin(client),
    )
    job_id = JOB_ID.search(started.text)
    assert job_id
    wait_until(lambda: finished(client, job_id.group(1), {}), what="the purge job")
    assert not redis_client.hexists("saw:dead", outage[2].key)
    queue = "saw:dramatiq:subaccount-events"
    assert Keyspace.default().read(redis_client, lambda p: p.llen(queue)) == [0]  # not replayed
    entries = [e for e in list_audit(redis_client, "saw") if e.action == "purge"]
    assert [e.operator for e in entries] == ["ada"]


def test_an_operator_cannot_confirm_a_purge_an_admin_previewed(
    as_role: Login, outage: list[DeadLetter]
) -> None:
    admin, admin_csrf = as_role("admin")
    form = {"csrf": admin_csrf, "ids": outage[0].key, "action": "purge"}
    plan = PLAN_ID.search(
        admin.post("/dead-letters/preview", data=form, headers=same_origin(admin)).text
    )
    assert plan
    operator, csrf = as_role("operator")
    answer = operator.post(
        "/dead-letters/confirm",
        data={"csrf": csrf, "plan": plan.group(1)},
        headers=same_origin(operator),
    )
    assert answer.status_code == 403


def test_an_ambiguous_dead_letter_is_refused_until_resolved(
    as_role: Login, store: AttemptStore
) -> None:
    readings = {"balance_before": 100, "balance_after": 150, "amount": 100}
    letter = write_dead_letter(store, "c1", reason="ambiguous_outcome", readings=readings)
    client, csrf = as_role("operator")
    page = client.get("/dead-letters?reason=ambiguous_outcome").text
    assert "balance_before: 100" in page
    assert 'value="applied">Resolve as applied' in page
    form = {"csrf": csrf, "ids": letter.key, "action": "replay"}
    refused = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert "1 refused" in refused.text
    assert 'name="plan"' not in refused.text
    form["resolve"] = "applied"
    resolved = client.post("/dead-letters/preview", data=form, headers=same_origin(client))
    assert "resolved as applied" in resolved.text
    assert 'name="plan"' in resolved.text


def test_a_running_job_can_be_cancelled_and_the_cancel_is_audited(
    as_role: Login, outage: list[DeadLetter], redis_client: redis.Redis
) -> None:
    client, csrf = as_role("operator")
    body = {"ids": [letter.key for letter in outage], "dry_run": False, "rate": 1}
    job = client.post(
        "/api/replays", json=body, headers={"X-CSRF-Token": csrf, **same_origin(client)}
    ).json()
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200
    assert "Cancel" in page.text
    cancelled = client.post(
        f"/jobs/{job['id']}/cancel", data={"csrf": csrf}, headers=same_origin(client)
    )
    assert cancelled.status_code == 200
    wait_until(lambda: finished(client, job["id"], {}), what="the job to stop")
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "cancelled"
    assert redis_client.hlen("saw:dead") >= 1  # stopped before the end
    assert [e.operator for e in list_audit(redis_client, "saw") if e.action == "cancel"] == ["otto"]


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_can_follow_a_job(
    as_role: Login, anonymous: httpx.Client, outage: list[DeadLetter], role: str
) -> None:
    job = anonymous.post(
        "/api/replays", json={"ids": [outage[0].key], "dry_run": False}, headers=bearer("admin")
    ).json()
    client, _ = as_role(role)
    assert client.get(f"/jobs/{job['id']}").status_code == 200
    assert client.get(f"/api/jobs/{job['id']}").json()["id"] == job["id"]
    shown = client.get("/audit").text
    assert "ada" in shown
