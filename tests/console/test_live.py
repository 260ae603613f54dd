"""Server-sent events: the overview's figures and a job's progress, as rendered HTML; a finished
job's stream ends with `close`; streams need a login like the pages."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from tests.console.support import TOKENS, write_dead_letter
from tests.servers import wait_until
from worker import keys
from worker.console.jobs import IndexWarmer
from worker.pipeline.attempts import AttemptStore
from worker.settings import Settings

Login = Callable[[str], tuple[httpx.Client, str]]


def _events(client: httpx.Client, path: str, until: str) -> list[tuple[str, str]]:
    """Read events until one named `until` (or the stream's end)."""
    found: list[tuple[str, str]] = []
    name, data = "", []
    with client.stream("GET", path) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:
                found.append((name, "\n".join(data)))
                if name == until:
                    break
                name, data = "", []
    return found


def test_the_overview_stream_sends_the_figures(as_role: Login, store: AttemptStore) -> None:
    write_dead_letter(store, "acme")
    client, _ = as_role("viewer")
    ((name, html),) = _events(client, "/live/overview", until="figures")
    assert name == "figures"
    assert 'data-figure="dead_letters">1<' in html


def test_a_finished_jobs_stream_ends_with_close(
    anonymous: httpx.Client, store: AttemptStore
) -> None:
    letter = write_dead_letter(store, "acme")
    auth = {"Authorization": f"Bearer {TOKENS['operator']}"}
    job = anonymous.post(
        "/api/replays", json={"ids": [letter.key], "dry_run": False}, headers=auth
    ).json()
    wait_until(
        lambda: anonymous.get(f"/api/jobs/{job['id']}", headers=auth).json()["state"] == "finished",
        what="the job",
    )
    anonymous.post(
        "/login",
        data={"user": "vera", "token": TOKENS["viewer"]},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    events = _events(anonymous, f"/live/jobs/{job['id']}", until="close")
    assert [name for name, _ in events] == ["progress", "close"]
    assert 'data-job="percent">100%<' in events[0][1]


def test_streams_need_a_login(anonymous: httpx.Client) -> None:
    assert anonymous.get("/live/overview").status_code == 303


def test_the_index_warmer_indexes_new_dead_letters_in_the_background(
    console_settings: Settings, store: AttemptStore, redis_client: redis.Redis
) -> None:
    """A burst of dead letters is indexed without anyone opening a page."""
    letters = [write_dead_letter(store, "warm", n=n) for n in range(3)]
    warmer = IndexWarmer(redis_client, "saw", period_s=0.05).start()
    try:
        index = keys.dead_letter_ix(prefix="saw", dim="client", value="warm")
        wait_until(lambda: redis_client.zcard(index) == 3, what="the client index")
    finally:
        warmer.stop()
    assert {m.decode() for m in redis_client.zrange(index, 0, -1)} == {x.key for x in letters}


def test_an_unknown_jobs_stream_is_a_404_before_streaming(as_role: Login) -> None:
    """Before: 200, then an exception after the response started (a cut stream, a traceback)."""
    client, _ = as_role("viewer")
    with client.stream("GET", "/live/jobs/no-such-job") as answer:
        assert answer.status_code == 404
        assert not answer.headers["content-type"].startswith("text/event-stream")
        answer.read()
    assert "no job &#39;no-such-job&#39;" in answer.text
