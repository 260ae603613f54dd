"""Server-sent events: the overview's figures and a job's progress, pushed as rendered HTML.

The overview has one feed per console process (`OverviewFeed`): while anyone watches, one task
reads and renders the figures every `OVERVIEW_PERIOD_S` and, when the HTML changed, wakes every
viewer's stream, which only sends it. A viewer costs a socket write per change, not a reading
and a rendering per period; with nobody watching, nothing runs. A job's stream re-reads its job
on a short period and sends an event only when the rendered fragment changed. `console.js`
swaps the fragment into the element named by the event. A job's stream ends with a `close`
event once nothing more will change; the overview's stream ends after `STREAM_MAX_S` (the
browser reconnects), so no connection outlives a deploy for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import StreamingResponse

from worker.console.auth import User
from worker.console.guard import current_user
from worker.console.pages import services

router = APIRouter(prefix="/live")
OVERVIEW_PERIOD_S = 2.0
JOB_PERIOD_S = 0.25
STREAM_MAX_S = 300.0
DISCONNECT_CHECK_S = 5.0  # a viewer waiting for a change looks this often whether it left
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse(event: str, html: str) -> str:
    """One server-sent event; every line of the HTML becomes a `data:` line."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def _fragment(request: Request, name: str, **context: object) -> str:
    templates: Jinja2Templates = request.app.state.templates
    return templates.get_template(name).render(request=request, **context)


async def _stream(
    request: Request, event: str, render: Callable[[], tuple[str, bool]], period_s: float
) -> AsyncIterator[str]:
    """Render on each period; send when changed; stop on disconnect, when done or at the cap."""
    last = None
    started = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < STREAM_MAX_S:
        html, done = await anyio.to_thread.run_sync(render)
        if html != last:
            yield sse(event, html)
            last = html
        if done:
            yield sse("close", "")
            return
        if await request.is_disconnected():
            return
        await anyio.sleep(period_s)


class OverviewFeed:
    """The overview's figures as one rendered fragment, re-read while anyone watches."""

    def __init__(self, render: Callable[[bool], str], period_s: float = OVERVIEW_PERIOD_S) -> None:
        self._render = render
        self._period_s = period_s
        self.html: str | None = None
        self.version = 0
        self.viewers = 0
        self.readings = 0  # how many times the figures were read (for tests and the bench)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def watch(self, request: Request) -> AsyncIterator[str]:
        """One viewer's stream: the figures now, then each change, until it leaves or the cap."""
        self.viewers += 1
        if self._task is None or self._task.done():
            self.html = None  # nobody watched: what was rendered then is old news
            self._task = asyncio.get_running_loop().create_task(self._run())
        started, seen = time.monotonic(), 0
        try:
            yield "retry: 2000\n\n"
            while time.monotonic() - started < STREAM_MAX_S:
                await self._next_change(seen)
                if self.version != seen and self.html is not None:
                    seen = self.version
                    yield sse("figures", self.html)
                if await request.is_disconnected():
                    return
        finally:
            self.viewers -= 1

    async def _next_change(self, seen: int) -> None:
        """Wait until the figures are newer than version `seen`, or `DISCONNECT_CHECK_S`."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version != seen), DISCONNECT_CHECK_S
                )

    async def _run(self) -> None:
        fresh = True  # the first reading of a watch is not taken from the shared cache
        while self.viewers > 0:
            html = await anyio.to_thread.run_sync(self._render, fresh)
            fresh = False
            self.readings += 1
            if html != self.html:
                async with self._changed:
                    self.html, self.version = html, self.version + 1
                    self._changed.notify_all()
            await anyio.sleep(self._period_s)


def overview_feed(request: Request) -> OverviewFeed:
    """The console's one overview feed (made on first use)."""
    state: Any = request.app.state
    feed: OverviewFeed | None = getattr(state, "overview_feed", None)
    if feed is None:
        svc = services(request)
        templates: Jinja2Templates = state.templates
        template = templates.get_template("_overview_figures.html")
        feed = OverviewFeed(lambda fresh: template.render(**svc.overview(fresh=fresh)))
        state.overview_feed = feed
    return feed


@router.get("/overview")
async def overview(request: Request, user: User = Depends(current_user)) -> StreamingResponse:
    stream = overview_feed(request).watch(request)
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


@router.get("/jobs/{job_id}")
async def job(
    request: Request, job_id: str, user: User = Depends(current_user)
) -> StreamingResponse:
    """A job's progress; an unknown job is a 404 before the stream starts (not a cut stream)."""
    svc = services(request)
    await anyio.to_thread.run_sync(svc.job, job_id)  # NotFound → 404

    def render() -> tuple[str, bool]:
        found = svc.job(job_id)
        html = _fragment(request, "_job_progress.html", job=found, user=user)
        return html, svc.job_finished(found)

    stream = _stream(request, "progress", render, JOB_PERIOD_S)
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)
