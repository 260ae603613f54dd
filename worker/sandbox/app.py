"""The sandbox app: both API surfaces and the admin routes over one state, and how to serve it."""

from __future__ import annotations

import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from worker.sandbox import admin, v5, v6
from worker.sandbox.core import Sandbox
from worker.sandbox.drop import DropMiddleware
from worker.sandbox.failures import ApiFailure, invalid
from worker.sandbox.faults import FaultConfig, FaultInjector
from worker.sandbox.fields import describe
from worker.sandbox.journal import Journal
from worker.sandbox.sending import Clock, Sending
from worker.sandbox.state import SandboxState
from worker.sandbox.wire import failure_response

DESCRIPTION = """\
A faithful, fault-injecting local implementation of the Netcore/Pepipost email Subaccount API.

Both public surfaces are served over one in-memory state: **v5** (the `pepipost` 5.0.0 SDK,
header `api_key`) and **v6** (the v6 REST reference, header `Authorization: Bearer`). Where the
public documents say nothing (response bodies, 409, credits and recurring on v6, credit
details), the behaviour is defined by the sandbox and each such operation says so.

Success: `{"status": "success", "data": {...}}`. Error: `{"status": "error", "error": "...",
"detail": "<field>: <why>"}`. Nothing is idempotent: a repeated credit grant adds twice.
Faults (latency, 429, 5xx, hangs, dropped connections) are configured under `/_sandbox/faults`;
subaccounts send mail (consuming credits) at the rate set under `/_sandbox/sending`.
"""

TAGS = [
    {"name": "v5", "description": "The v5 surface (official SDK paths and fields)."},
    {"name": "v6", "description": "The v6 surface (the v6 REST reference's paths)."},
    {"name": admin.TAG, "description": "Sandbox-only controls; no auth. Not part of the API."},
]

ROUTERS = (v5.router, v6.router, admin.router)


class SandboxApp(FastAPI):
    """FastAPI whose OpenAPI omits the 422s it never answers (they come out as 400s)."""

    def openapi(self) -> dict[str, Any]:
        """The schema, minus FastAPI's generated 422 responses and their schemas."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()  # cached by FastAPI; edited in place below
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema


def _fault_config(faults: FaultConfig | dict[str, Any] | None) -> FaultConfig:
    return faults if isinstance(faults, FaultConfig) else FaultConfig.model_validate(faults or {})


async def _api_failure(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiFailure):
        raise exc
    return failure_response(exc)


async def _validation_failed(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422s come out as the API's 400 "Invalid Parameters" naming the field."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    return failure_response(invalid(describe(exc.errors(), skip_first=True)))


def _allowed_methods(request: Request) -> str:
    """Every method the request's path serves (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in (route for router in ROUTERS for route in router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the API's error envelope too."""
    if not isinstance(exc, HTTPException):
        raise exc
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    failure = ApiFailure(exc.status_code, str(exc.detail), headers=headers)
    return failure_response(failure)


def create_app(
    api_key: str,
    *,
    master_balance: int = 1_000_000_000,
    faults: FaultConfig | dict[str, Any] | None = None,
    clock: Clock = time.monotonic,
) -> FastAPI:
    """A sandbox app with an empty state, accepting `api_key` on both surfaces.

    `clock` (seconds, monotonic) drives mail sending; tests pass one they advance by hand.
    """
    if not api_key:
        raise ValueError("the sandbox needs a non-empty api_key")
    app = SandboxApp(
        title="subaccount-worker sandbox",
        version="1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.sandbox = Sandbox(
        api_key=api_key,
        state=SandboxState(master_balance),
        journal=Journal(),
        faults=FaultInjector(_fault_config(faults)),
        sending=Sending(clock),
    )
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(ApiFailure, _api_failure)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(DropMiddleware)
    return app


def serve(
    host: str,
    port: int,
    api_key: str,
    faults: FaultConfig | dict[str, Any] | None = None,
    *,
    access_log: bool = True,
) -> None:
    """Serve a sandbox with uvicorn until interrupted (hung calls get 5 s to end on shutdown)."""
    app = create_app(api_key, faults=faults)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=5, access_log=access_log)
