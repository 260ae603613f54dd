"""The Subaccount API client: one HTTP session per process (a connection per thread), typed errors.

Every outcome is classified at this boundary (see `worker.errors`): nothing from httpx leaks out.
The surface (v5 or v6) is chosen once; `client.surface` says which one is spoken.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import redis
from pydantic import BaseModel, ValidationError

from handlers.requests import (
    ChangeCredits,
    CreateSubaccount,
    Recurring,
    SetDisabled,
    SetRecurring,
    UpdateSubaccount,
)
from worker import keys, tracing
from worker.api.http import HttpSession
from worker.api.models import (
    CreditBalance,
    CreditDetails,
    Deleted,
    ListPage,
    Subaccount,
    SubaccountList,
)
from worker.api.rate_limit import RateLimiter, RedisTokenBucket, TokenBucket, Unlimited, reserve
from worker.api.surfaces import HttpRequest, Surface, surface_for
from worker.errors import (
    Ambiguous,
    ApiError,
    Conflict,
    MalformedResponse,
    NotFound,
    Permanent,
    Transient,
)
from worker.log import REDACTED
from worker.settings import ApiSurface, RateLimitScope, Settings

M = TypeVar("M", bound=BaseModel)
# Called after every call with (operation, result class name or "ok", seconds): metrics hook.
Observer = Callable[[str, str, float], None]

MAX_RETRY_AFTER_S = 3600.0


def build_http_session(settings: Settings) -> HttpSession:
    """The session with the configured base URL and explicit timeouts."""
    return HttpSession(
        settings.api_base_url,
        timeout=httpx.Timeout(
            connect=settings.api_connect_timeout_s,
            read=settings.api_read_timeout_s,
            write=settings.api_write_timeout_s,
            pool=settings.api_pool_timeout_s,
        ),
    )


def build_rate_limiter(settings: Settings, redis_client: redis.Redis | None) -> RateLimiter:
    """The limiter the settings ask for: none, per process, or shared through Redis."""
    if settings.api_rate_limit_rps <= 0:
        return Unlimited()
    burst = settings.api_rate_limit_burst or max(1, int(settings.api_rate_limit_rps))
    if settings.api_rate_limit_scope == RateLimitScope.REDIS and redis_client is not None:
        key = keys.rate_limit(settings.key_prefix)
        return RedisTokenBucket(redis_client, key, settings.api_rate_limit_rps, burst)
    return TokenBucket(settings.api_rate_limit_rps, burst)


class SubaccountClient:
    """Typed calls to the Subaccount API; each raises a `worker.errors.ApiError` on failure."""

    def __init__(
        self,
        http: HttpSession,
        *,
        api_key: str,
        surface: ApiSurface | Surface = ApiSurface.V6,
        limiter: RateLimiter | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._http = http
        self._observe = observer
        self._api_key = api_key
        self._surface = surface_for(surface) if isinstance(surface, ApiSurface) else surface
        http.set_headers(self._surface.auth_headers(api_key))
        self._limiter = limiter or Unlimited()
        self._paced = threading.local()  # a slot reserved by `pace` for this thread's next call

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        observer: Observer | None = None,
    ) -> SubaccountClient:
        return cls(
            build_http_session(settings),
            api_key=settings.api_key.get_secret_value(),
            surface=settings.api_surface,
            limiter=build_rate_limiter(settings, redis_client),
            observer=observer,
        )

    @property
    def surface(self) -> ApiSurface:
        """The API surface this client speaks (v5 or v6)."""
        return self._surface.name

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SubaccountClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the eight operations -------------------------------------------------------------

    def create(self, req: CreateSubaccount) -> Subaccount:
        secrets = [req.password.get_secret_value()] if req.password else []
        data = self._call("create", req.username, self._surface.create(req), secrets)
        return _parse(Subaccount, data, "create", req.username)

    def update(self, req: UpdateSubaccount) -> Subaccount:
        secrets = [req.password.get_secret_value()] if req.password else []
        data = self._call("update", req.username, self._surface.update(req), secrets)
        return _parse(Subaccount, data, "update", req.username)

    def change_credits(self, req: ChangeCredits) -> CreditBalance:
        op = "add_credits" if req.action == "increase" else "remove_credits"
        data = self._call(op, req.username, self._surface.change_credits(req))
        return _parse(CreditBalance, data, op, req.username)

    def set_recurring(self, req: SetRecurring) -> Recurring:
        data = self._call("set_recurring", req.username, self._surface.set_recurring(req))
        return _read(self._surface.read_recurring, data, "set_recurring", req.username)

    def get_credit_details(self, username: str) -> CreditDetails:
        data = self._call("get_credits", username, self._surface.get_credit_details(username))

        def read(raw: dict[str, Any]) -> CreditDetails:
            rec = raw.get("recurring")
            recurring = self._surface.read_recurring(rec) if rec else None
            used = self._surface.read_used(raw)
            return CreditDetails.model_validate({**raw, "recurring": recurring, "used": used})

        return _read(read, data, "get_credits", username)

    def list_subaccounts(self, page: ListPage | None = None) -> SubaccountList:
        data = self._call("list", None, self._surface.list_subaccounts(page or ListPage()))
        return _parse(SubaccountList, data, "list", None)

    def set_disabled(self, req: SetDisabled) -> Subaccount:
        op = "disable" if req.disabled else "enable"
        data = self._call(op, req.username, self._surface.set_disabled(req))
        return _parse(Subaccount, data, op, req.username)

    def delete(self, username: str) -> Deleted:
        data = self._call("delete", username, self._surface.delete(username))
        return _parse(Deleted, data, "delete", username)

    # --- pacing ---------------------------------------------------------------------------

    def pace(self) -> float:
        """Reserve the rate-limit slot of this thread's next call and return how long to wait
        for it (s), without waiting: the caller waits, then checks its lease, then calls (the
        fence before a send, README "The fence"). `unpace` drops a slot left unused."""
        wait = reserve(self._limiter)
        self._paced.slot = True
        return wait

    def unpace(self) -> None:
        """Forget a slot `pace` reserved and no call used (the next call takes its own)."""
        self._paced.slot = False

    # --- transport ------------------------------------------------------------------------

    def _call(
        self,
        op: str,
        username: str | None,
        request: HttpRequest,
        secrets: list[str] | None = None,
    ) -> Any:
        """Send one request and return the `data` of a success body, or raise a typed error."""
        if getattr(self._paced, "slot", False):
            self._paced.slot = False  # reserved (and waited for) by `pace`
        else:
            self._limiter.acquire()
        if self._observe is None:
            return self._send(op, username, request, secrets)
        started = time.perf_counter()
        result = "ok"
        try:
            return self._send(op, username, request, secrets)
        except ApiError as exc:
            result = type(exc).__name__
            raise
        finally:
            self._observe(op, result, time.perf_counter() - started)

    def _send(
        self, op: str, username: str | None, request: HttpRequest, secrets: list[str] | None
    ) -> Any:
        attributes = {"http.request.method": request.method, "url.path": request.path}
        with tracing.span(f"{request.method} {op}", attributes, kind="client"):
            try:
                response = self._http.send(
                    request.method, request.path, body=request.json, params=request.params or None
                )
            except httpx.HTTPError as exc:
                raise _transport_error(exc, op, username, request.is_read) from None
            tracing.set_attributes({"http.response.status_code": response.status_code})
        if response.is_success:
            return _success_data(response, op, username, request.is_read)
        raise _status_error(response, op, username, [self._api_key, *(secrets or [])])


def _transport_error(exc: httpx.HTTPError, op: str, user: str | None, is_read: bool) -> ApiError:
    """Map an httpx failure: not sent → Transient; sent but unanswered → Ambiguous (writes)."""
    kind = type(exc).__name__
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if not_sent or is_read:
        return Transient(f"{kind}: request not answered; retry later", operation=op, username=user)
    return Ambiguous(
        f"{kind}: request sent but no answer came; it may have been applied",
        operation=op,
        username=user,
    )


def _success_data(response: httpx.Response, op: str, user: str | None, is_read: bool) -> Any:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        kind = response.headers.get("content-type")
        msg = f"answer is not a JSON object with 'data' (content-type {kind!r})"
        if is_read:
            raise Transient(msg, operation=op, username=user, status=response.status_code)
        raise MalformedResponse(msg, operation=op, username=user, status=response.status_code)
    return body["data"]


def _parse(model: type[M], data: Any, op: str, user: str | None) -> M:
    return _read(model.model_validate, data, op, user)


def _read(reader: Callable[[Any], M], data: Any, op: str, user: str | None) -> M:
    """Apply `reader` to wire data; a shape mismatch becomes MalformedResponse, never KeyError."""
    try:
        return reader(data)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        msg = f"answer has an unexpected shape ({type(exc).__name__})"
        raise MalformedResponse(msg, operation=op, username=user) from None


def _status_error(
    response: httpx.Response, op: str, user: str | None, secrets: list[str]
) -> ApiError:
    """Classify a non-2xx answer; the server's text is scrubbed of secrets before quoting."""
    status = response.status_code
    text = _scrub(_error_text(response), secrets)
    if status == 404:
        return NotFound(
            text or "subaccount does not exist", operation=op, username=user, status=status
        )
    if status == 409 or (status == 400 and "already exist" in text.lower()):
        return Conflict(text or "username is taken", operation=op, username=user, status=status)
    if status == 429 or status == 408 or status >= 500:
        if status == 504 and response.request.method != "GET":
            return Ambiguous(f"{text}; gateway timed out, the call may have been applied",
                             operation=op, username=user, status=status)  # fmt: skip
        return Transient(
            text or "server busy; retry later",
            operation=op,
            username=user,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    return Permanent(
        text or "refused; will not succeed as sent", operation=op, username=user, status=status
    )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    parts = [str(body[k]) for k in ("error", "detail", "message") if body.get(k)]
    return " - ".join(parts)[:500] or response.reason_phrase


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at an hour."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
