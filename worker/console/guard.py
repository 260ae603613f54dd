"""The console's gate: who is asking (bearer, session, proxy header), may they, and is a change
really theirs (same origin + CSRF token). Also the security headers every answer carries.

A change is always a POST. A browser's POST must say it comes from this site (`Sec-Fetch-Site`
same-origin, or else an `Origin` naming this host) and carry the session's CSRF token (form field
`csrf` or header `X-CSRF-Token`). A script's POST with `Authorization: Bearer` carries no cookie,
so a forged page cannot make one; it is still refused if its headers say it is cross-site.
Bearer failures are limited per client address as logins are (`throttle.py`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console.auth import SESSION_COOKIE, Authenticator, Role, User
from worker.console.throttle import LoginThrottle
from worker.errors import SubaccountWorkerError
from worker.log import get_logger

log = get_logger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SAME_SITE = {"same-origin", "none"}  # "none": the user typed the address or used a bookmark


class Refused(SubaccountWorkerError):
    """A request the console will not serve; `status` is the HTTP answer."""

    status = 403


class NotAuthenticated(Refused):
    """No valid credentials: log in, or send `Authorization: Bearer <token>` to /api."""

    status = 401


class Forbidden(Refused):
    """Authenticated, but the role or the request's origin does not allow this."""

    status = 403


class Throttled(Refused):
    """Too many failed logins from this address or for this user: wait `retry_after_s`."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed attempts: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def client_address(request: Request) -> str:
    """The client's address (as a trusted proxy reports it; see `proxy.py`)."""
    return request.client.host if request.client else ""


def authenticate(request: Request) -> User:
    """The user making `request`, or NotAuthenticated. Bearer tokens are for /api only. A user
    the proxy vouches for without a session gets one (its cookie goes out with the answer)."""
    auth: Authenticator = request.app.state.auth
    now_s = time.time()
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer " and request.url.path.startswith("/api/"):
        return _bearer(request, auth, header[7:].strip(), now_s)
    proxied = _proxied(request, auth)
    cookie = request.cookies.get(SESSION_COOKIE)
    user = auth.read_session(cookie, now_s, proxied) if cookie else None
    if user is None and proxied is not None:
        cookie = auth.open_session(proxied, now_s)
        request.state.session_cookie = cookie
        user = auth.read_session(cookie, now_s, proxied)
    if user is None:
        raise NotAuthenticated("log in with your console token")
    return user


def _bearer(request: Request, auth: Authenticator, token: str, now_s: float) -> User:
    throttle: LoginThrottle = request.app.state.throttle
    subjects = [("addr", client_address(request))]
    wait = throttle.retry_after_s(subjects, now_s)
    if wait:
        raise Throttled(wait)
    user = auth.by_token(token, "bearer")
    if user is None:
        throttle.failed(subjects, now_s)
        log.warning("console_bearer_refused", client=client_address(request))
        raise NotAuthenticated("that bearer token is not a console user's token")
    return user


def _proxied(request: Request, auth: Authenticator) -> User | None:
    """The trusted header's user, if this request may carry one; a refused header is logged."""
    if not auth.header or auth.header.lower() not in request.headers:
        return None
    from_proxy = bool(getattr(request.state, "from_proxy", False))
    secret = request.headers.get(auth.proxy_secret_header)
    user = auth.by_header(request.headers.get(auth.header), from_proxy, secret)
    if user is None:
        log.warning(
            "console_trusted_header_refused",
            client=getattr(request.state, "peer", client_address(request)),
            from_proxy=from_proxy,
            user=request.headers.get(auth.header, "")[:100],
        )
    return user


async def current_user(request: Request) -> User:
    """Dependency of every page and API route but /login and /healthz."""
    user = await anyio.to_thread.run_sync(authenticate, request)
    request.state.user = user
    return user


def may_change(role: Role) -> Callable[[Request], Awaitable[User]]:
    """Dependency of a POST route: the user must hold `role`, and a browser's request must be
    same-origin and carry the session's CSRF token."""

    async def dependency(request: Request) -> User:
        user = await current_user(request)
        if not user.may(role):
            raise Forbidden(f"{user.name} is a {user.role.label}: this needs {role.label}")
        check_same_origin(request, required=user.via != "bearer")
        if user.via != "bearer":
            await check_csrf(request, user)
        return user

    return dependency


def check_same_origin(request: Request, *, required: bool) -> None:
    """Refuse a request whose browser says it is cross-site, or whose Origin is another host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in SAME_SITE:
            raise Forbidden(f"refused a {site} request: changes must come from the console")
        return
    origin = request.headers.get("origin")
    if origin is None:
        if required:
            raise Forbidden("refused a change without Origin or Sec-Fetch-Site: use a browser")
        return
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("refused a change from another origin: use the console's own pages")


async def check_csrf(request: Request, user: User) -> None:
    """The session's CSRF token must come back in the `X-CSRF-Token` header or `csrf` field."""
    sent = request.headers.get("x-csrf-token")
    if sent is None and _is_form(request):
        field = (await request.form()).get("csrf")
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise Forbidden("missing or stale CSRF token: reload the page and try again")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


class SecurityHeaders:
    """ASGI middleware adding the CSP and friends to every answer; no-store on non-static."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                cookie = (scope.get("state") or {}).get("session_cookie")
                if cookie:
                    secure = scope.get("scheme") == "https"
                    headers.append((b"set-cookie", session_cookie_header(cookie, secure)))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def session_cookie_header(value: str, secure: bool) -> bytes:
    """The Set-Cookie value of a session opened for a proxy's user (HttpOnly, SameSite)."""
    flags = "; HttpOnly; Path=/; SameSite=strict" + ("; Secure" if secure else "")
    return f"{SESSION_COOKIE}={value}{flags}".encode()
