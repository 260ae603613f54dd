"""The console's HTML pages: each route calls the services and renders a template.

Reads are GETs for any user. Changes are POSTs guarded by `may_change(role)`: operators replay,
resolve and cancel; admins also purge and fix drift. Replay and purge always go preview →
confirm → job: the preview is the services' plan, the confirm form carries the plan's ids (the
job acts on exactly those), and the job page follows its progress live (`live.py`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from worker.console.auth import Role, User
from worker.console.guard import Forbidden, current_user, may_change
from worker.console.services import Filters, NotFound, Services

router = APIRouter()
PAGE_SIZE = 50
PREVIEW_ROWS = 200


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("user", getattr(request.state, "user", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def is_fragment(request: Request) -> bool:
    """An htmx request that replaces part of the page (not a boosted full navigation)."""
    return "hx-request" in request.headers and "hx-boosted" not in request.headers


# --- overview --------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def overview(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "overview.html", **services(request).overview())


# --- dead letters ----------------------------------------------------------------------------
@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters(
    request: Request, after: str | None = None, user: User = Depends(current_user)
) -> Response:
    svc = services(request)
    filters = Filters.from_mapping(request.query_params)
    page = svc.dead_letter_page(filters, after, PAGE_SIZE)
    context: dict[str, Any] = {"filters": filters, "page": page, "after": after}
    if is_fragment(request) and request.headers.get("hx-target") == "results":
        return render(request, "_dead_letter_results.html", **context)
    context["clusters"] = svc.clusters()
    context["reasons"] = svc.reasons()
    context["jobs"] = svc.jobs(running_only=True)
    return render(request, "dead_letters.html", **context)


@router.post("/dead-letters/preview", response_class=HTMLResponse)
async def preview(request: Request, user: User = Depends(may_change(Role.OPERATOR))) -> Response:
    """The plan of a replay or purge of the selected rows, or of everything matching."""
    form = await request.form()
    action = str(form.get("action", "replay"))
    if action == "purge" and not user.may(Role.ADMIN):
        raise Forbidden(f"{user.name} is a {user.role.label}: purging needs admin")
    resolve = str(form.get("resolve", "")) or None
    ids = [str(v) for v in form.getlist("ids")]
    filters = Filters.from_mapping(form)
    everything = form.get("scope") == "matching"
    plan = services(request).plan(action, None if everything else ids, filters, resolve)
    context = {"plan": plan, "action": action, "resolve": resolve, "filters": filters}
    return render(request, "_preview.html", preview_rows=PREVIEW_ROWS, **context)


@router.post("/dead-letters/confirm", response_class=HTMLResponse)
async def confirm(request: Request, user: User = Depends(may_change(Role.OPERATOR))) -> Response:
    """Start the job of a previewed plan: exactly the ids the preview showed."""
    form = await request.form()
    action = str(form.get("action", "replay"))
    if action == "purge" and not user.may(Role.ADMIN):
        raise Forbidden(f"{user.name} is a {user.role.label}: purging needs admin")
    ids = [str(v) for v in form.getlist("ids")]
    resolve = str(form.get("resolve", "")) or None
    filters = Filters.from_mapping(form)
    job = services(request).start_job(action, ids, filters, resolve, user.name)
    return render(request, "_job.html", job=job)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
    job = services(request).job(job_id)
    return render(request, "job.html", job=job)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel_job(
    request: Request, job_id: str, user: User = Depends(may_change(Role.OPERATOR))
) -> Response:
    job = services(request).cancel_job(job_id, user.name)
    return render(request, "_job.html", job=job)


# --- events and clients ----------------------------------------------------------------------
@router.get("/events/{event_id:path}", response_class=HTMLResponse)
def event_page(request: Request, event_id: str, user: User = Depends(current_user)) -> Response:
    try:
        story = services(request).event(event_id)
    except NotFound as exc:
        return render(request, "missing.html", 404, what=str(exc))
    return render(request, "event.html", story=story)


@router.get("/clients/{client_id}", response_class=HTMLResponse)
def client_page(request: Request, client_id: str, user: User = Depends(current_user)) -> Response:
    return render(request, "client.html", **services(request).client(client_id))


# --- credits ---------------------------------------------------------------------------------
@router.get("/credits", response_class=HTMLResponse)
def credits_page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "credits.html", **services(request).credits())


@router.post("/credits/reconcile", response_class=HTMLResponse)
def reconcile_report(request: Request, user: User = Depends(may_change(Role.VIEWER))) -> Response:
    """Run reconcile's report (reads only): any user may ask for it."""
    return render(request, "_reconcile.html", report=services(request).reconcile())


@router.post("/credits/fix/preview", response_class=HTMLResponse)
def fix_preview(request: Request, user: User = Depends(may_change(Role.ADMIN))) -> Response:
    return render(request, "_fix_preview.html", plan=services(request).fix_plan())


@router.post("/credits/fix/confirm", response_class=HTMLResponse)
async def fix_confirm(request: Request, user: User = Depends(may_change(Role.ADMIN))) -> Response:
    form = await request.form()
    ids = [str(v) for v in form.getlist("ids")]
    return render(request, "_fix_done.html", result=services(request).fix(ids, user.name))


# --- audit -----------------------------------------------------------------------------------
@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, user: User = Depends(current_user)) -> Response:
    query = {k: v for k, v in request.query_params.items() if v}
    return render(request, "audit.html", entries=services(request).audit(query), query=query)


@router.get("/audit/export")
def audit_export(request: Request, user: User = Depends(current_user)) -> Response:
    """The filtered audit as JSON Lines, downloaded."""
    query = {k: v for k, v in request.query_params.items() if v}
    lines = services(request).audit_lines(query)
    headers = {"Content-Disposition": 'attachment; filename="console-audit.jsonl"'}
    return StreamingResponse(lines, media_type="application/x-ndjson", headers=headers)
