"""The console app: wiring of auth, security headers, templates, static files and the routers.

`create_app` takes the settings and an optional `Services` (the tests and the benchmark pass
their own Redis); `serve` runs it under uvicorn. The pages (`pages.py`), the JSON API
(`api.py`) and the live streams (`live.py`) only call the services and render what they return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from worker.console import api, live, pages
from worker.console.auth import SESSION_COOKIE, Authenticator
from worker.console.guard import NotAuthenticated, Refused, SecurityHeaders, check_same_origin
from worker.console.services import NotFound, Services
from worker.console.views import register_filters
from worker.errors import BrokerUnavailable, SubaccountWorkerError
from worker.log import get_logger
from worker.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).parent


def create_app(
    settings: Settings, services: Services | None = None, viewer: Services | None = None
) -> FastAPI:
    """The console as an ASGI app; refuses (ConfigError) when no user could ever log in.

    Viewer sessions use `viewer` (by default, with REDIS_READ_URL set, services on that
    read-only user), everyone else `services`."""
    auth = Authenticator(settings)
    app = FastAPI(title="subaccount-worker console", docs_url=None, redoc_url=None)
    app.state.auth = auth
    app.state.services = services or Services.from_settings(settings)
    app.state.viewer_services = viewer or Services.for_viewers(settings)
    templates = Jinja2Templates(directory=HERE / "templates")
    register_filters(templates.env)
    app.state.templates = templates
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(live.router)
    app.add_exception_handler(Refused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _missing)  # type: ignore[arg-type]
    app.add_exception_handler(SubaccountWorkerError, _failed)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, _redis_down)  # type: ignore[arg-type]
    _add_login_routes(app)
    return app


def _add_login_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return _render_login(request, next, None, 200)

    @app.post("/login")
    def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
        check_same_origin(request, required=True)
        user = request.app.state.auth.by_token(token.strip(), "session")
        if user is None:
            log.info("console_login_refused")
            return _render_login(request, next, "That token is not a console user's.", 401)
        log.info("console_login", user=user.name, role=user.role.label)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            request.app.state.auth.open_session(user),
            max_age=request.app.state.auth.ttl_s,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        check_same_origin(request, required=True)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _render_login(request: Request, next: str, error: str | None, status: int) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context = {"next": _local(next), "error": error, "user": None}
    context["tokens"] = request.app.state.auth.accepts_tokens
    return templates.TemplateResponse(request, "login.html", context, status_code=status)


def _local(target: str) -> str:
    """Only redirect within the console (no `//evil.example` or absolute URLs)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def _refused(request: Request, exc: Refused) -> Response:
    log.info("console_refused", path=request.url.path, status=exc.status, why=str(exc))
    wants_html = not request.url.path.startswith("/api/") and "hx-request" not in request.headers
    if isinstance(exc, NotAuthenticated):
        if wants_html and request.method == "GET":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if "hx-request" in request.headers:
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        headers = {"WWW-Authenticate": 'Bearer realm="console"'}
        return JSONResponse({"error": str(exc)}, status_code=401, headers=headers)
    return _problem(request, exc.status, str(exc))


async def _missing(request: Request, exc: NotFound) -> Response:
    return _problem(request, 404, str(exc))


async def _failed(request: Request, exc: SubaccountWorkerError) -> Response:
    """A service said no (bad filter, nothing to replay, Redis down): say why, keep the page."""
    status = 503 if isinstance(exc, BrokerUnavailable) else 422
    log.info("console_request_failed", path=request.url.path, status=status, why=str(exc))
    return _problem(request, status, str(exc))


async def _redis_down(request: Request, exc: redis.RedisError) -> Response:
    log.warning("console_redis_error", path=request.url.path, error=type(exc).__name__)
    return _problem(request, 503, f"Redis did not answer ({type(exc).__name__}): try again")


def _problem(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    if "hx-request" in request.headers:
        return HTMLResponse(f'<p class="error" role="alert">{_escape(message)}</p>', status)
    templates: Jinja2Templates = request.app.state.templates
    context: dict[str, Any] = {"message": message, "status": status}
    context["user"] = getattr(request.state, "user", None)
    return templates.TemplateResponse(request, "refused.html", context, status_code=status)


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def serve(settings: Settings, host: str, port: int) -> None:
    """Build the console from `settings` and serve it (ConfigError when it has no users)."""
    run(create_app(settings), host, port)


def run(app: FastAPI, host: str, port: int) -> None:
    """Serve under uvicorn; `X-Forwarded-Proto` is trusted from loopback (a local TLS proxy),
    so cookies are marked Secure behind TLS."""
    log.info("console_listening", host=host, port=port)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True)
