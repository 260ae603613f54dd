"""One API call from request to answer: auth, master check, faults, apply, journal, maybe drop.

Order per call: (1) auth → 401, master inactive → 403; (2) latency + jitter; (3) rate limit →
429; (4) injected error → 500/502/503, not applied; (5) hang → sleep, close, not applied;
(6) late → wait until the client gives up (at most `late_wait_s`), then `late_ms` more; (7) the
mail sent since the last request consumes credits, then apply; (8) drop → applied and journaled,
then the connection closes with no response; or fail-after-commit → applied and journaled, then
answered `error_status` anyway. Each journal entry says when its request arrived (`received`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from worker.sandbox.core import Sandbox, sandbox_of
from worker.sandbox.drop import drop_connection
from worker.sandbox.failures import SERVER_ERROR, UNAUTHORIZED, ApiFailure
from worker.sandbox.faults import MUTATING, FaultSpec
from worker.sandbox.journal import Fault, SurfaceName, now_iso
from worker.sandbox.operations import Apply, Outcome
from worker.sandbox.wire import dump, failure_response, success


@dataclass(frozen=True)
class Call:
    """An API call as a router understood it: surface, operation name, raw arguments, effect."""

    surface: SurfaceName
    operation: str
    apply: Apply
    args: dict[str, Any] = field(default_factory=dict)
    received: str = field(default_factory=now_iso)  # when the router made it: on arrival

    @property
    def username(self) -> str | None:
        """The username argument, if one was given as a string."""
        value = self.args.get("username")
        return value if isinstance(value, str) else None

    @property
    def requested_amount(self) -> int | None:
        """The credits a credits call asks to move, if given as an integer."""
        value = self.args.get("amount") if self.operation.endswith("_credits") else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _presented_key(request: Request, surface: SurfaceName) -> str:
    if surface == "v5":
        return request.headers.get("api_key", "")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def check_key(request: Request, surface: SurfaceName, api_key: str) -> None:
    """401 unless the surface's auth header carries the API key (constant-time compare)."""
    header = "api_key" if surface == "v5" else "Authorization: Bearer"
    presented = _presented_key(request, surface).encode()
    if not presented or not hmac.compare_digest(presented, api_key.encode()):
        raise ApiFailure(401, UNAUTHORIZED, f"{header}: missing or wrong API key")


def _record(
    sandbox: Sandbox,
    call: Call,
    status: int | None,
    result: Outcome | ApiFailure | None,
    fault: Fault | None = None,
) -> None:
    if call.operation not in MUTATING:
        return
    applied = isinstance(result, Outcome) and result.applied
    amount = result.amount if isinstance(result, Outcome) else None
    sandbox.journal.append(
        surface=call.surface,
        operation=call.operation,
        username=call.username,
        status=status,
        applied=applied,
        amount=amount if amount is not None else call.requested_amount,
        args=call.args,
        fault=fault,
        result=dump(result.data) if isinstance(result, Outcome) else _error_of(result),
        detail=result.detail if isinstance(result, ApiFailure) else None,
        received=call.received,
    )


def _error_of(result: ApiFailure | None) -> str | None:
    return result.error if result is not None else None


def _refuse(sandbox: Sandbox, call: Call, failure: ApiFailure, fault: Fault | None) -> Response:
    with sandbox.state.lock:
        _record(sandbox, call, failure.status, failure, fault)
    return failure_response(failure)


async def execute(request: Request, call: Call) -> Response:
    """Run `call` through auth, faults and the state; the response (or a dropped connection)."""
    sandbox = sandbox_of(request)
    try:
        check_key(request, call.surface, sandbox.api_key)
        sandbox.state.require_active_master()
    except ApiFailure as refused:
        return _refuse(sandbox, call, refused, None)
    spec = sandbox.faults.spec_for(call.operation)
    delay = sandbox.faults.delay_s(spec)
    if delay > 0:
        await asyncio.sleep(delay)
    limited = sandbox.faults.too_many_requests()
    if limited is not None:
        return _refuse(sandbox, call, limited, "rate_limited")
    fault = sandbox.faults.before_apply(spec)
    if fault == "error":
        return _refuse(sandbox, call, ApiFailure(spec.error_status, SERVER_ERROR), "error")
    if fault == "hang":
        return await _hang(request, sandbox, call, spec.hang_s)
    if sandbox.faults.take(spec, "late"):
        return await _late(request, sandbox, call, spec)
    return _apply(request, sandbox, call, spec)


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _hang(request: Request, sandbox: Sandbox, call: Call, hang_s: float) -> Response:
    """Answer nothing for `hang_s` (less if the client gives up first), then close, unapplied."""
    with sandbox.state.lock:
        _record(sandbox, call, None, None, "hang")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_until_disconnected(request), hang_s)
    drop_connection(request.scope)
    return Response()


async def _late(request: Request, sandbox: Sandbox, call: Call, spec: FaultSpec) -> Response:
    """Apply the call `late_ms` after the client gave up on it (or after `late_wait_s`), as a
    slow server does that finishes a request nobody waits for any more; journaled `late`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_until_disconnected(request), spec.late_wait_s)
    await asyncio.sleep(spec.late_ms / 1000)
    return _apply(request, sandbox, call, spec, late=True)


def _apply(
    request: Request, sandbox: Sandbox, call: Call, spec: FaultSpec, *, late: bool = False
) -> Response:
    result: Outcome | ApiFailure
    with sandbox.state.lock:
        sandbox.sending.advance(sandbox.state)
        try:
            result = call.apply(sandbox.state)
        except ApiFailure as failure:
            result = failure
        status = result.status
        dropped = sandbox.faults.take(spec, "drop")
        failed = not dropped and sandbox.faults.take(spec, "fail_after_commit")
        fault: Fault | None = "drop" if dropped else "fail_after_commit" if failed else None
        _record(sandbox, call, status, result, fault or ("late" if late else None))
    if dropped:
        drop_connection(request.scope)
        return Response()
    if failed:
        return failure_response(ApiFailure(spec.error_status, SERVER_ERROR))
    if isinstance(result, ApiFailure):
        return failure_response(result)
    return success(result.data, result.status)
