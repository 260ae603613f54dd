"""The console's HTML pages: each route calls the services and renders a template.

Reads are GETs for any user. Changes are POSTs guarded by `may_change(role)`: operators replay,
resolve and cancel; admins also purge and fix drift. Replay and purge always go preview →
confirm → job: the preview is the services' plan, the confirm form carries the plan's ids (the
job acts on exactly those), and the job page follows its progress live (`live.py`).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from worker.console.auth import Role, User
from worker.console.guard import Forbidden, current_user, may_change
from worker.console.services import Filters, NotFound, Page, Services
from worker.ops.api_health import circuit_open
from worker.ops.filters import STEPS, TYPES, InvalidInput

router = APIRouter()
PAGE_SIZE = 50
PREVIEW_ROWS = 25  # the first rows; the counts and the confirm above them cover all


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("user", getattr(request.state, "user", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def services(request: Request) -> Services:
    """The services of the asking user: a viewer's read through the read-only user, if any."""
    user = getattr(request.state, "user", None)
    viewer: Services | None = request.app.state.viewer_services
    if viewer is not None and user is not None and not user.may(Role.OPERATOR):
        return viewer
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
    error, status = None, 200
    try:
        page = svc.dead_letter_page(filters, after, PAGE_SIZE)
    except InvalidInput as exc:  # a filter typo: said above the (empty) list, form kept
        error, status, page = str(exc).replace("--", ""), 422, Page([], None, 0)
    context: dict[str, Any] = {"filters": filters, "page": page, "after": after, "error": error}
    context["status_code"] = status
    if is_fragment(request) and request.headers.get("hx-target") == "results":
        response = render(request, "_dead_letter_results.html", **context)
        query = "&".join(q for q in (filters.query, f"after={after}" if after else "") if q)
        response.headers["HX-Push-Url"] = "/dead-letters" + (f"?{query}" if query else "")
        return response
    context["clusters"] = svc.clusters()
    context["reasons"] = svc.reasons()
    context["types"], context["steps"] = TYPES, STEPS
    context["jobs"] = svc.jobs(running_only=True)
    return render(request, "dead_letters.html", **context)


@router.post("/dead-letters/preview", response_class=HTMLResponse)
async def preview(request: Request, user: User = Depends(may_change(Role.OPERATOR))) -> Response:
    """The plan of a replay or purge of the selected rows, or of everything matching; it is
    kept (ids and record digests) for the confirm, which acts on exactly that."""
    form = await request.form()
    action = _allowed_action(form.get("action"), user)
    resolve = str(form.get("resolve") or "") or None
    ids = None if form.get("scope") == "matching" else [str(v) for v in form.getlist("ids")]
    svc = services(request)
    plan = svc.plan(action, ids, Filters.from_mapping(form), resolve)
    plan_id = svc.keep_plan(plan) if plan.planned else None
    context: dict[str, Any] = {"plan": plan, "plan_id": plan_id, "action": action}
    context["resolve"] = resolve
    context["circuit_warning"] = (
        circuit_open(svc.redis, svc.prefix) if context.get("action") == "replay" else None
    )
    return render(request, "_preview.html", preview_rows=PREVIEW_ROWS, **context)


@router.post("/dead-letters/confirm", response_class=HTMLResponse)
async def confirm(request: Request, user: User = Depends(may_change(Role.OPERATOR))) -> Response:
    """Start the job of a previewed plan: exactly the ids the preview showed."""
    form = await request.form()
    svc = services(request)
    plan = svc.kept_plan(str(form.get("plan") or ""))
    _allowed_action(plan.action, user)
    job = svc.start_job(plan, user.name, _rate(form.get("rate")))
    return render(request, "_job.html", job=job)


def _allowed_action(value: object, user: User) -> str:
    action = str(value or "replay")
    if action == "purge" and not user.may(Role.ADMIN):
        raise Forbidden(f"{user.name} is a {user.role.label}: purging needs admin")
    return action


def _rate(value: object) -> float | None:
    """The job's rate in dead letters per second; empty = as fast as it goes."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        rate = float(text)
    except ValueError:
        raise InvalidInput(f"rate {text!r} is not a number of events per second") from None
    if rate <= 0:
        raise InvalidInput(f"rate must be more than 0 (got {text})")
    return rate


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
def event_page(
    request: Request, event_id: str, source: str | None = None, user: User = Depends(current_user)
) -> Response:
    """One event by its CloudEvent id (and source, when two sources used the same id)."""
    try:
        story = services(request).event(event_id, source or None)
    except NotFound as exc:
        return render(request, "missing.html", 404, what=str(exc))
    return render(request, "event.html", story=story)


@router.get("/clients/{client_id}", response_class=HTMLResponse)
def client_page(request: Request, client_id: str, user: User = Depends(current_user)) -> Response:
    return render(request, "client.html", **services(request).client(client_id))


# --- credits ---------------------------------------------------------------------------------
@router.get("/credits", response_class=HTMLResponse)
def credits_page(request: Request, page: int = 1, user: User = Depends(current_user)) -> Response:
    return render(request, "credits.html", **services(request).credit.page(page))


@router.post("/credits/reconcile", response_class=HTMLResponse)
async def reconcile_report(
    request: Request, user: User = Depends(may_change(Role.VIEWER))
) -> Response:
    """Reconcile's report (it reads the API, changes nothing): any user may ask for it. Its fix
    plan is kept for an admin's preview and confirm; `recreate` includes re-creating missing
    subaccounts with their last known credits."""
    recreate = (await request.form()).get("recreate") == "1"
    report = await anyio.to_thread.run_sync(
        lambda: services(request).credit.reconcile(recreate=recreate)
    )
    return render(request, "_reconcile.html", report=report, recreate=recreate)


@router.post("/credits/fix/preview", response_class=HTMLResponse)
async def fix_preview(request: Request, user: User = Depends(may_change(Role.ADMIN))) -> Response:
    fix_id = str((await request.form()).get("fix") or "")
    fixes = services(request).credit.kept_fix(fix_id)
    return render(request, "_fix_preview.html", fixes=fixes, fix_id=fix_id)


@router.post("/credits/fix/confirm", response_class=HTMLResponse)
async def fix_confirm(request: Request, user: User = Depends(may_change(Role.ADMIN))) -> Response:
    fix_id = str((await request.form()).get("fix") or "")
    enqueued = services(request).credit.fix(fix_id, user.name)
    return render(request, "_fix_done.html", enqueued=enqueued)


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
