"""Server-sent events: the overview's figures and a job's progress, pushed as rendered HTML.

Each stream re-reads the services on a short period and sends an event only when the rendered
fragment changed. `console.js` swaps the fragment into the element named by the event. A job's
stream ends with a `close` event once the job has finished; the overview's stream ends after
`STREAM_MAX_S` (the browser reconnects), so no connection outlives a deploy for long.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

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


@router.get("/overview")
async def overview(request: Request, user: User = Depends(current_user)) -> StreamingResponse:
    svc = services(request)

    def render() -> tuple[str, bool]:
        return _fragment(request, "_overview_figures.html", **svc.overview()), False

    stream = _stream(request, "figures", render, OVERVIEW_PERIOD_S)
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
