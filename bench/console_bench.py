"""Console page times with 100,000 dead letters and a client with 1,000 events (not a test).

A private Redis and the sandbox are started; a worker (in-process Dramatiq, as in the tests)
applies 1,000 events of one client through the sandbox; 100,000 dead letters of 500 other
clients are written through the attempt store's own script (the worker's dead-letter path).
The console is served by uvicorn on loopback; each page is fetched `--requests` times by a
logged-in client and the median and 95th percentile of the time to the last byte are printed,
with the bytes sent (no compression). The first listing also builds the operators' index of the
dead letters (`worker.ops.index`); it is timed on its own.

    python -m bench.console_bench            # ~2 minutes
    python -m bench.console_bench --quick    # 10,000 dead letters, 200 events
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import httpx
import redis
import uvicorn

from bench.common import API_KEY, base_parser, print_table, progress, run_main, services
from handlers import examples
from handlers.events import parse_event
from worker import keys
from worker.console import create_app
from worker.console import services as services_module
from worker.dev.devservers import free_port, wait_until
from worker.log import configure_logging
from worker.pipeline.outcomes import DeadLetter
from worker.runtime import build_runtime, build_store, redis_client
from worker.settings import Settings, load_settings

PREFIX = "saw"
TOKEN = "bench-console-token-5e1d9a7c3b2f4e6081d"  # noqa: S105 - a loopback-only fixture, not a secret
GOAL_MS = 200.0
PAGE_BUDGET_S = 20.0
BIG_CLIENT = "big-client"


def settings_for(redis_url: str, api_url: str) -> Settings:
    return load_settings(
        redis_url=redis_url,
        api_base_url=api_url,
        api_key=API_KEY,
        console_tokens=f"bench:admin:{TOKEN}",
        console_secret="bench-console-secret",  # noqa: S106 - loopback-only fixture
        worker_threads=8,
        log_level="WARNING",
    )


def apply_client_events(settings: Settings, count: int) -> float:
    """`count` events of one client (an onboarding, then invoices) applied by a real worker."""
    runtime = build_runtime(settings)
    # One client's events run one at a time (its lock): more threads would only wait on it.
    worker = dramatiq.Worker(runtime.broker, worker_threads=2, worker_timeout=50)
    worker.start()
    started = time.monotonic()
    newest: Any = runtime.redis.xrevrange(keys.outcomes(PREFIX), count=1)
    last = newest[0][0] if newest else "0-0"
    try:
        events = [examples.onboarded(BIG_CLIENT)]
        events += [
            examples.invoice_paid(BIG_CLIENT, f"inv-{n}", 10, t=n + 1) for n in range(count - 1)
        ]
        for start in range(0, len(events), 500):
            runtime.publisher.publish_many(events[start : start + 500])
        wait_until(lambda: len(_outcomes_after(runtime.redis, last)) >= count, 600,
                   f"{count} outcomes")  # fmt: skip
    finally:
        worker.stop()
        runtime.close()
    return time.monotonic() - started


def _outcomes_after(client: redis.Redis, entry_id: Any) -> list[Any]:
    found: Any = client.xrange(keys.outcomes(PREFIX), min=f"({_text(entry_id)}")
    return list(found or [])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def write_dead_letters(settings: Settings, count: int) -> float:
    """`count` dead letters of 500 clients over the last day, through the attempt store."""
    client = redis_client(settings)
    store = build_store(settings, client)
    now = int(time.time() * 1000)
    started = time.monotonic()
    reasons = ("retries_exhausted", "permanent_error", "not_found", "ambiguous_outcome")
    for n in range(count):
        body = examples.invoice_paid(f"c{n % 500}", f"dl-{n}", 100)
        at = now - (count - n) * 800  # one every 0.8 s, newest last
        reason = reasons[n % 7 % len(reasons)]
        key = parse_event(body).key
        letter = DeadLetter(key, body, reason, f"add_credits failed (HTTP 503): n={n}", 3,
                            at - 5000, at, "add_credits")  # fmt: skip
        outcome = {"key": key, "event_id": body["id"], "client_id": body["subject"],
                   "event_type": body["type"], "outcome": "dead_lettered", "reason": reason,
                   "at_ms": at, "steps": [], "attempt": 3}  # fmt: skip
        store.record_unlocked(key, outcome, letter.encode())
        if n and n % 20_000 == 0:
            progress(f"{n} dead letters written")
    client.close()
    return time.monotonic() - started


@contextmanager
def console(settings: Settings) -> Iterator[str]:
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the console")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.services.close()


def timed(client: httpx.Client, path: str, requests: int) -> tuple[list[float], int, int]:
    """Times (ms) of `requests` fetches of `path` (fewer, at least 3, for a page slow enough to
    pass `PAGE_BUDGET_S`), its size in bytes and status."""
    times, size, status = [], 0, 0
    began_all = time.monotonic()
    for n in range(requests):
        if n >= 3 and time.monotonic() - began_all > PAGE_BUDGET_S:
            break
        began = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        size, status = len(answer.content), answer.status_code
    return times, size, status


def deep_cursor(settings: Settings, depth: int) -> str:
    """The cursor of the page that starts `depth` dead letters down (as the pager builds it)."""
    client = redis.Redis.from_url(settings.redis_url)
    found: Any = client.zrevrange(keys.dead_letter_index(PREFIX), depth, depth, withscores=True)
    score = found[0][1]
    total = client.hlen(keys.dead_letters(PREFIX))
    client.close()
    return f"{int(score)}.0.{total}"


def index_memory(settings: Settings) -> str:
    """Redis memory in all, and of the operators' search index (sampled per key type)."""
    client = redis.Redis.from_url(settings.redis_url)
    used = int(client.info("memory")["used_memory"])
    lex = client.memory_usage(keys.dead_letter_ix(PREFIX, "lex", "all")) or 0
    words, word_bytes = 0, 0
    for name in client.scan_iter(match=keys.dead_letter_ix(PREFIX, "word", "*"), count=1000):
        words += 1
        word_bytes += client.memory_usage(name) or 0
    client.close()
    return (f"Redis used {used / 1e6:.0f} MB; search index: identifiers {lex / 1e6:.1f} MB, "
            f"{words} word zsets {word_bytes / 1e6:.1f} MB")  # fmt: skip


def main() -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--requests", type=int, default=20, help="fetches per page")
    args = parser.parse_args()
    dead_count, event_count = (10_000, 200) if args.quick else (100_000, 1000)
    with services(with_redis=True) as svc:
        settings = settings_for(svc.redis_url, svc.api_url)
        configure_logging(settings, stream=sys.stderr)
        progress(f"writing {dead_count} dead letters")
        written_s = write_dead_letters(settings, dead_count)
        progress(f"applying {event_count} events of one client through the worker")
        applied_s = apply_client_events(settings, event_count)
        rows = measure(settings, args.requests, dead_count, event_count)
        memory = index_memory(settings)
    print(f"\n{event_count} client events applied in {applied_s:.1f} s; "
          f"{dead_count} dead letters written in {written_s:.1f} s")  # fmt: skip
    print(memory)
    print_table(
        f"Console pages, {dead_count:,} dead letters, a client with {event_count:,} events "
        f"(median and p95 of {args.requests} requests, goal < {GOAL_MS:.0f} ms)",
        ["page", "median ms", "p95 ms", "requests", "bytes", "status"],
        rows,
    )
    return 0


def measure(
    settings: Settings, requests: int, dead_count: int, event_count: int
) -> list[list[str]]:
    services_module.OVERVIEW_CACHE_S = 0.0  # time the reading itself, not the shared cache
    with console(settings) as url, httpx.Client(base_url=url, timeout=120) as client:
        login = client.post(
            "/login", data={"user": "bench", "token": TOKEN}, headers={"Origin": url}
        )
        assert login.status_code == 303, login.text
        began = time.perf_counter()
        client.get("/dead-letters")
        first_ms = (time.perf_counter() - began) * 1000
        pages: dict[str, str | None] = {
            "dead letters, page 1": "/dead-letters",
            f"dead letters, {dead_count // 2:,} down": "/dead-letters?after="
            + deep_cursor(settings, dead_count // 2),
            "dead letters, reason filter": "/dead-letters?reason=not_found",
            "dead letters, client filter": "/dead-letters?client=c7",
            "dead letters, text search (detail words)": "/dead-letters?q=n%3D4242",
            "dead letters, text search (common word)": "/dead-letters?q=failed",
            "dead letters, search by invoice id": "/dead-letters?q=dl-4242",
            "dead letters, search by invoice prefix": "/dead-letters?q=dl-424",
            f"client page ({event_count:,} events)": f"/clients/{BIG_CLIENT}",
            "overview": "/",
            "API dead letters (100)": "/api/dead-letters?limit=100",
            "replay preview of 28,571 (not_found)": None,
        }
        rows = [["first listing (builds the index)", f"{first_ms:.0f}", "", "1", "", ""]]
        for name, path in pages.items():
            progress(name)
            if path is None:
                times, size, status = timed_preview(client, url, requests)
            else:
                times, size, status = timed(client, path, requests)
            p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
            rows.append([name, f"{statistics.median(times):.1f}", f"{p95:.1f}", str(len(times)),
                         f"{size:,}", str(status)])  # fmt: skip
        services_module.OVERVIEW_CACHE_S = 1.5
        for tabs in (1, 5):
            progress(f"CPU with {tabs} open overview tab(s), {CPU_WINDOW_S:.0f} s")
            pct = tab_cpu(client, tabs)
            rows.append([f"CPU, {tabs} open overview tab(s)", f"{pct:.2f}% of a core", "",
                         "", "", ""])  # fmt: skip
    return rows


CPU_WINDOW_S = 15.0


def tab_cpu(client: httpx.Client, tabs: int) -> float:
    """The console's CPU (this process: it serves in a thread) with `tabs` overview streams
    open, minus the same window with none, in % of one core."""
    idle = _cpu_over(CPU_WINDOW_S)
    stop = threading.Event()

    def watch() -> None:
        with client.stream("GET", "/live/overview", timeout=None) as answer:
            for _line in answer.iter_lines():
                if stop.is_set():
                    return

    threads = [threading.Thread(target=watch, daemon=True) for _ in range(tabs)]
    for thread in threads:
        thread.start()
    busy = _cpu_over(CPU_WINDOW_S)
    stop.set()
    return max(0.0, busy - idle) / CPU_WINDOW_S * 100


def _cpu_over(seconds: float) -> float:
    began = time.process_time()
    time.sleep(seconds)
    return time.process_time() - began


def timed_preview(client: httpx.Client, url: str, requests: int) -> tuple[list[float], int, int]:
    """The replay preview of every `not_found` dead letter (2/7 of them), as the page posts it."""
    csrf = client.get("/dead-letters").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"csrf": csrf, "action": "replay", "scope": "matching", "reason": "not_found"}
    times, size, status = [], 0, 0
    for _ in range(max(3, requests // 3)):
        began = time.perf_counter()
        answer = client.post("/dead-letters/preview", data=form, headers={"Origin": url})
        times.append((time.perf_counter() - began) * 1000)
        size, status = len(answer.content), answer.status_code
    return times, size, status


if __name__ == "__main__":
    run_main(main)
