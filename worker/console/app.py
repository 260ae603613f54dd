"""The console app: wiring of auth, security headers, templates, static files and the routers.

`create_app` takes the settings and an optional `Services` (the tests and the benchmark pass
their own Redis); `serve` runs it under uvicorn. The pages (`pages.py`), the JSON API
(`api.py`) and the live streams (`live.py`) only call the services and render what they return.
"""

from __future__ import annotations

import time
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

from worker.console import api, live, pages, session_routes
from worker.console.auth import SESSION_COOKIE, Authenticator
from worker.console.guard import (
    NotAuthenticated,
    Refused,
    SecurityHeaders,
    Throttled,
    check_same_origin,
    client_address,
)
from worker.console.proxy import ProxyGate
from worker.console.services import NotFound, Services
from worker.console.sessions import SessionStore
from worker.console.throttle import LoginThrottle
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
    services = services or Services.from_settings(settings)
    store = SessionStore(
        services.redis,
        settings.key_prefix,
        settings.console_session_ttl_s,
        settings.console_session_idle_s,
    )
    auth = Authenticator(settings, store)
    app = FastAPI(title="subaccount-worker console", docs_url=None, redoc_url=None)
    app.state.auth = auth
    app.state.throttle = LoginThrottle.from_settings(services.redis, settings)
    app.state.services = services
    app.state.viewer_services = viewer or Services.for_viewers(settings)
    templates = Jinja2Templates(directory=HERE / "templates")
    register_filters(templates.env)
    app.state.templates = templates
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ProxyGate, settings=settings)  # outermost: Host check, real peer
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(live.router)
    app.include_router(session_routes.router)
    app.add_exception_handler(Refused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _missing)  # type: ignore[arg-type]
    app.add_exception_handler(SubaccountWorkerError, _failed)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, _redis_down)  # type: ignore[arg-type]
    _add_login_routes(app)
    return app


def _add_login_routes(app: FastAPI) -> None:
    @app.get("/livez", include_in_schema=False)
    def livez() -> PlainTextResponse:
        """The process answers (liveness: restarting would not mend Redis)."""
        return PlainTextResponse("ok")

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> PlainTextResponse:
        """200 "ok" while Redis answers our PING with our credentials; 503 otherwise (a console
        that cannot read Redis shows nothing true)."""
        try:
            request.app.state.services.redis.ping()
        except redis.RedisError:
            return PlainTextResponse("redis unreachable", status_code=503)
        return PlainTextResponse("ok")

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return _render_login(request, next, None, 200)

    @app.post("/login")
    def login(
        request: Request, user: str = Form(""), token: str = Form(""), next: str = Form("/")
    ) -> Response:
        check_same_origin(request, required=True)
        auth: Authenticator = request.app.state.auth
        throttle: LoginThrottle = request.app.state.throttle
        name, address, now_s = user.strip()[:100], client_address(request), time.time()
        subjects = [("addr", address)] + ([("user", name)] if name else [])
        wait = throttle.retry_after_s(subjects, now_s)
        if wait:
            log.warning("console_login_throttled", client=address, user=name, retry_after_s=wait)
            refused = _render_login(request, next, str(Throttled(wait)), 429)
            refused.headers["Retry-After"] = str(wait)
            return refused
        found = auth.by_token(token.strip(), "session", name)
        if found is None:
            throttle.failed(subjects, now_s)
            log.warning("console_login_refused", client=address, user=name)
            return _render_login(request, next, "That is not a console user and token.", 401)
        throttle.succeeded(found.name)
        log.info("console_login", user=found.name, role=found.role.label, client=address)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            auth.open_session(found, now_s),
            max_age=auth.ttl_s,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        """End the session in Redis (a copy of the cookie is refused from now on)."""
        check_same_origin(request, required=True)
        cookie = request.cookies.get(SESSION_COOKIE)
        ended = request.app.state.auth.read_session(cookie) if cookie else None
        if ended is not None:
            request.app.state.auth.sessions.end(ended.session_id, ended.name)
            log.info("console_logout", user=ended.name)
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
    if isinstance(exc, Throttled):
        response = _problem(request, exc.status, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
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
    """Serve under uvicorn, whose own proxy handling is off: `ProxyGate` reads X-Forwarded-*
    from the trusted proxies only (loopback when none are set), so cookies are marked Secure
    behind TLS and the client address is the one the proxy saw."""
    log.info("console_listening", host=host, port=port)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
