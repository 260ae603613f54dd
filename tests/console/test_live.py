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


def _figures_until(client: httpx.Client, text: str) -> str:
    """The first `figures` event of the overview stream that holds `text` (a stream pushes a
    change within a period or two: the figures may first be those of a moment ago)."""
    data: list[str] = []
    with client.stream("GET", "/live/overview") as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                data.append(line[6:])
            elif not line and data:
                html, data = "\n".join(data), []
                if text in html:
                    return html
    raise AssertionError(f"the overview stream ended without {text!r}")


def test_the_overview_stream_sends_the_figures(as_role: Login, store: AttemptStore) -> None:
    write_dead_letter(store, "acme")
    client, _ = as_role("viewer")
    assert 'data-figure="dead_letters">1<' in _figures_until(client, 'dead_letters">1<')


def test_a_finished_jobs_stream_ends_with_close(
    anonymous: httpx.Client, store: AttemptStore, redis_client: redis.Redis
) -> None:
    letter = write_dead_letter(store, "acme")
    auth = {"Authorization": f"Bearer {TOKENS['operator']}"}
    job = anonymous.post(
        "/api/replays", json={"ids": [letter.key], "dry_run": False}, headers=auth
    ).json()
    state = lambda: anonymous.get(f"/api/jobs/{job['id']}", headers=auth).json()["state"]  # noqa: E731
    wait_until(lambda: state() == "settling", what="the job's batches")
    # No worker runs here: mark the replayed event ended, as the worker's finish script does.
    redis_client.hset(keys.ledger("saw", letter.key), "_outcome", '{"outcome":"applied"}')
    wait_until(lambda: state() == "finished", what="the job")
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


def test_the_job_page_shows_what_became_of_the_replayed_events(
    anonymous: httpx.Client, store: AttemptStore, redis_client: redis.Redis
) -> None:
    """Two replayed: one ends applied, one is still pending; the page says so (and "settling",
    not "finished"), then both ended → finished with the breakdown."""
    letters = [write_dead_letter(store, "acme", n=n) for n in range(2)]
    auth = {"Authorization": f"Bearer {TOKENS['operator']}"}
    body = {"ids": [letter.key for letter in letters], "dry_run": False}
    job = anonymous.post("/api/replays", json=body, headers=auth).json()
    api = lambda: anonymous.get(f"/api/jobs/{job['id']}", headers=auth).json()  # noqa: E731
    wait_until(lambda: api()["state"] == "settling", what="the job's batches")
    redis_client.hset(keys.ledger("saw", letters[0].key), "_outcome", '{"outcome":"applied"}')
    wait_until(lambda: api()["outcomes"]["applied"] == 1, what="the first event's end")
    assert (api()["state"], api()["outcomes"]["pending"]) == ("settling", 1)
    anonymous.post(
        "/login",
        data={"user": "vera", "token": TOKENS["viewer"]},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    page = anonymous.get(f"/jobs/{job['id']}").text
    assert 'data-outcome="applied">1<' in page
    assert 'data-outcome="pending">1<' in page
    assert "following 1 events" in page
    redis_client.hset(keys.ledger("saw", letters[1].key), "_outcome", '{"outcome":"duplicate"}')
    wait_until(lambda: api()["state"] == "finished", what="the job")
    page = anonymous.get(f"/jobs/{job['id']}").text
    assert 'data-outcome="duplicate">1<' in page
    assert 'data-outcome="pending">0<' in page


def test_the_overview_counts_every_outcome_and_says_what_to_do(
    as_role: Login, store: AttemptStore, redis_client: redis.Redis
) -> None:
    """3,000 outcomes this hour are all counted (not the newest 2,000), and each dead-letter
    reason comes with its next step."""
    from worker.ops.advice import next_step
    from worker.ops.outcome_counts import OutcomeCounter

    counter = OutcomeCounter(redis_client, "saw", flush_s=3600)
    for _ in range(3000):
        counter.observe("applied", "invoice.paid")
    counter.flush()
    write_dead_letter(store, "acme", reason="not_found", detail="no subaccount")
    client, _ = as_role("viewer")
    html = _figures_until(client, 'data-figure="outcomes_hour">3')  # 3 000, thin-spaced
    assert 'data-advice="not_found"' in html
    assert next_step("not_found").split(":")[0] in html


def test_viewers_share_one_reading_of_the_overview() -> None:
    """Two open tabs: the figures are read and rendered once per period for both, not once per
    viewer (what made one tab cost a fifth of a core); nobody watching, nothing is read."""
    import asyncio

    from worker.console.live import OverviewFeed

    reads: list[bool] = []

    def render(fresh: bool) -> str:
        reads.append(fresh)
        return f"<p>{len(reads)}</p>"

    class Tab:
        async def is_disconnected(self) -> bool:
            return False

    async def watch(feed: OverviewFeed, events: int) -> int:
        seen = 0
        async for chunk in feed.watch(Tab()):  # type: ignore[arg-type]
            seen += chunk.startswith("event: figures")
            if seen == events:
                break
        return seen

    async def main() -> OverviewFeed:
        feed = OverviewFeed(render, period_s=0.02)
        assert await asyncio.gather(watch(feed, 5), watch(feed, 5)) == [5, 5]
        return feed

    feed = asyncio.run(main())
    assert reads[0] is True  # the first reading of a watch is fresh
    assert len(reads) <= 7  # shared: about 5 readings for 2 x 5 events (per viewer: 10)
    assert feed.viewers == 0


def test_the_overview_says_the_api_is_failing(as_role: Login, redis_client: redis.Redis) -> None:
    """Most calls of the last minutes failed: a banner says so, whatever the circuit reports."""
    from worker.ops.outcome_counts import OutcomeCounter

    counter = OutcomeCounter(redis_client, "saw", flush_s=3600)
    for _ in range(10):
        counter.observe_call("add_credits", "Transient", 0.05)
    counter.flush()
    client, _ = as_role("viewer")
    html = _figures_until(client, "The API is failing: 10 of 10 calls")
    assert 'data-figure="api_errors">100%<' in html
