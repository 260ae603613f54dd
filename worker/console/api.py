"""The console's JSON API (pinned names, for scripts and tests): the same objects as the CLI's
`--json`. `Authorization: Bearer <token>` or the session cookie; no credentials → 401, a role
too low → 403, a malformed request → 422 with what to fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from worker.console.auth import Role, User
from worker.console.guard import current_user, may_change
from worker.console.pages import services
from worker.console.services import Filters

router = APIRouter(prefix="/api")
MAX_LIMIT = 10_000


class ReplayRequest(BaseModel):
    """`{"ids": [...]}` or `{"filter": {...}}`, with `dry_run` (default true: ask for the plan)."""

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    dry_run: bool = True
    resolve: str | None = Field(None, pattern="^(applied|not_applied)$")
    rate: float | None = Field(None, gt=0, description="dead letters per second")


@router.get("/status")
def status(request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """The object of `status --json`."""
    return JSONResponse(services(request).status_json())


@router.get("/dead-letters")
def dead_letters(
    request: Request,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    user: User = Depends(current_user),
) -> JSONResponse:
    """The array of `dead-letters list --json` for the same filters, newest first."""
    filters = Filters.from_mapping(request.query_params)
    return JSONResponse(services(request).dead_letters_json(filters, limit))


@router.post("/replays")
def replays(
    request: Request, body: ReplayRequest, user: User = Depends(may_change(Role.OPERATOR))
) -> JSONResponse:
    """The plan (`dry_run`), or the started job of exactly the plan's ids (202)."""
    svc = services(request)
    filters = Filters.from_mapping(body.filter or {})
    if (body.ids is None) == (body.filter is None):
        return JSONResponse({"error": "give ids or a filter (not both)"}, status_code=422)
    plan = svc.plan("replay", body.ids, filters, body.resolve)
    if body.dry_run:
        return JSONResponse(svc.plan_json(plan))
    job = svc.start_job(plan, user.name, body.rate)
    return JSONResponse(svc.job_json(job), status_code=202)


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str, user: User = Depends(current_user)) -> JSONResponse:
    svc = services(request)
    return JSONResponse(svc.job_json(svc.job(job_id)))
