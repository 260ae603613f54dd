"""The ingress HTTP service: routes, their wiring to verification and mapping, and `serve`.

Every route reads its raw body once (bounded), authenticates it, maps it onto catalogue events
and ends in the shared `Enqueuer`. Refusals are `Problem`s rendered by one handler, so an answer
is always `{"error", "reasons"}`; a 500 is reserved for bugs and logged with its traceback.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import redis
import uvicorn
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.ingress import cloudevents, crm, openapi, stripe
from worker.ingress.auth import BearerTokens
from worker.ingress.body import parse_json, read_body, require_media_type
from worker.ingress.enqueue import Enqueuer
from worker.ingress.mapping import Ignored, loggable, to_event
from worker.ingress.metrics import CONTENT_TYPE, IngressMetrics, RequestCounter
from worker.ingress.problems import (
    Internal,
    JsonResponse,
    Malformed,
    MethodNotAllowed,
    NotFound,
    Problem,
    RequestTimeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unmappable,
    UnsupportedMediaType,
)
from worker.ingress.server import server_config, start_metrics_server
from worker.log import get_logger
from worker.pipeline.publish import Publisher, event_limits
from worker.redis_access import connect
from worker.settings import Settings

log = get_logger(__name__)

JSON = ("application/json",)
REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_SOCKET_TIMEOUT_S = 5.0
ANSWERED = [Malformed, Unauthorized, NotFound, MethodNotAllowed, TooLarge]
ANSWERED += [UnsupportedMediaType, Unmappable, Unavailable, RequestTimeout]


class Ingress:
    """The route handlers of one app, holding its verifiers, limits and enqueuer."""

    def __init__(self, settings: Settings, client: redis.Redis, metrics: IngressMetrics) -> None:
        self.settings = settings
        self.redis = client
        self.metrics = metrics
        self.tokens = BearerTokens(settings.ingress_tokens)
        self.crm = crm.CrmSignatures(settings.crm_webhook_secrets)
        self.enqueuer = Enqueuer(Publisher(client, settings), settings.queue_name, metrics)
        self.limit = settings.ingress_max_body_bytes
        self.body_timeout_s = settings.ingress_body_timeout_s
        self.event_limits = event_limits(settings)
        self.openapi = openapi.document(ANSWERED)

    async def post_events(self, request: Request) -> Response:
        """POST /events: CloudEvents from the billing system, with a bearer token."""
        self.tokens.check(request.headers)
        media = require_media_type(request.headers, cloudevents.MEDIA_TYPES)
        body = await read_body(request, self.limit, self.body_timeout_s)
        events = cloudevents.parse_request(media, request.headers, body, self.event_limits)
        return await self.enqueuer.accept("/events", events)

    async def post_stripe(self, request: Request) -> Response:
        """POST /webhooks/stripe: a Stripe event signed with `Stripe-Signature`."""
        require_media_type(request.headers, JSON)
        body = await read_body(request, self.limit, self.body_timeout_s)
        stripe.verify_stripe(
            body,
            request.headers.get("stripe-signature"),
            self.settings.stripe_webhook_secret.get_secret_value(),
            self.settings.stripe_tolerance_s,
            time.time(),
        )
        mapped = stripe.map_stripe(parse_json(body), self.settings.stripe_price_credits)
        return await self._accept("/webhooks/stripe", mapped, stripe.RENAMES, Unmappable)

    async def post_crm(self, request: Request) -> Response:
        """POST /webhooks/crm: a CRM event signed per Standard Webhooks."""
        require_media_type(request.headers, JSON)
        body = await read_body(request, self.limit, self.body_timeout_s)
        webhook_id = self.crm.verify(body, request.headers, time.time())
        mapped = crm.map_crm(parse_json(body), webhook_id)
        return await self._accept("/webhooks/crm", mapped, crm.RENAMES, Malformed)

    async def _accept(
        self,
        route: str,
        mapped: dict[str, Any] | Ignored,
        renames: Mapping[str, str],
        problem: type[Problem],
    ) -> Response:
        """Enqueue a webhook's mapped event, or acknowledge one that maps to nothing."""
        if isinstance(mapped, Ignored):
            log.info("ingress.ignored", route=route, reason=loggable(mapped.reason))
            return JsonResponse({"accepted": [], "ignored": mapped.reason}, status_code=200)
        return await self.enqueuer.accept(
            route, [to_event(mapped, renames, problem, self.event_limits)]
        )

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: the process answers."""
        return JsonResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: Redis answers a PING, else 503."""
        try:
            await anyio.to_thread.run_sync(self.redis.ping)
        except redis.RedisError:
            raise Unavailable(["redis: unreachable"]) from None
        return JsonResponse({"status": "ready"})

    async def metrics_text(self, request: Request) -> Response:
        """GET /metrics: Prometheus text exposition of this app's registry."""
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def openapi_json(self, request: Request) -> Response:
        """GET /openapi.json (with `ingress_openapi`): the OpenAPI 3.1 document of the routes
        this port serves."""
        served = {route.path for route in self.routes()}
        paths = {p: v for p, v in self.openapi["paths"].items() if p in served}
        return JsonResponse({**self.openapi, "paths": paths})

    def routes(self) -> list[Route]:
        """Every route of the app."""
        handlers: list[tuple[str, Callable[[Request], Any], str]] = [
            ("/events", self.post_events, "POST"),
            ("/webhooks/stripe", self.post_stripe, "POST"),
            ("/webhooks/crm", self.post_crm, "POST"),
            ("/healthz", self.healthz, "GET"),
            ("/readyz", self.readyz, "GET"),
        ]
        if not self.settings.ingress_metrics_port:  # else on its own port (server.py)
            handlers.append(("/metrics", self.metrics_text, "GET"))
        if self.settings.ingress_openapi:
            handlers.append(("/openapi.json", self.openapi_json, "GET"))
        return [Route(path, handler, methods=[method]) for path, handler, method in handlers]


def create_app(settings: Settings, redis_client: redis.Redis | None = None) -> Starlette:
    """The ingress ASGI app, on its own Redis client from settings unless given one.

    A given client should not retry on its own (see `redis_for_ingress`): a retried MULTI/EXEC
    whose first reply was lost would enqueue twice.
    """
    client = redis_client if redis_client is not None else redis_for_ingress(settings)
    metrics = IngressMetrics()
    ingress = Ingress(settings, client, metrics)
    routes = ingress.routes()
    _warn_unconfigured(ingress, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if redis_client is None:
            client.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestCounter, metrics=metrics, routes=[r.path for r in routes])],
        exception_handlers={
            Problem: _problem_answer,
            HTTPException: _http_answer,
            Exception: _internal_answer,
        },
        lifespan=lifespan,
    )
    app.state.ingress = ingress
    return app


def redis_for_ingress(settings: Settings) -> redis.Redis:
    """A Redis client that fails fast and never retries (a retried MULTI/EXEC could run twice)."""
    return connect(
        settings,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the ingress under uvicorn until interrupted; the caller has configured logging."""
    log.info("ingress.starting", host=host, port=port)
    app = create_app(settings)
    if settings.ingress_metrics_port:
        start_metrics_server(settings, host, app.state.ingress.metrics.registry)
        log.info("ingress.metrics", host=host, port=settings.ingress_metrics_port)
    uvicorn.Server(server_config(app, settings, host, port)).run()


def _warn_unconfigured(ingress: Ingress, settings: Settings) -> None:
    """Log, once, each route that will refuse everything because it has no secret."""
    if not ingress.tokens.configured:
        log.warning("ingress.unconfigured", route="/events", missing="ingress_tokens")
    if not settings.stripe_webhook_secret.get_secret_value():
        log.warning(
            "ingress.unconfigured", route="/webhooks/stripe", missing="stripe_webhook_secret"
        )
    if not settings.crm_webhook_secrets:
        log.warning("ingress.unconfigured", route="/webhooks/crm", missing="crm_webhook_secrets")


async def _problem_answer(request: Request, exc: Exception) -> Response:
    """Render a refusal, logging it (for 401 with its source and reason only)."""
    if not isinstance(exc, Problem):
        return await _internal_answer(request, exc)
    if isinstance(exc, Unauthorized):
        log.warning(
            "ingress.unauthorized", route=request.url.path, source=exc.source, reason=exc.why
        )
    else:
        log.info(
            "ingress.refused",
            route=loggable(request.url.path),
            status=exc.status,
            error=exc.code,
            reasons=[loggable(r, 200) for r in exc.reasons[:5]],
        )
    return exc.response()


async def _http_answer(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method), in the Problem shape."""
    if not isinstance(exc, HTTPException):
        return await _internal_answer(request, exc)
    problem: Problem
    if exc.status_code == 405:
        allow = dict(exc.headers or {})
        problem = MethodNotAllowed([f"method: {request.method} not allowed"], headers=allow)
    elif exc.status_code == 404:
        problem = NotFound(["path: no such route"])
    else:
        problem = Malformed([f"request: {exc.detail}"])
    return problem.response()


async def _internal_answer(request: Request, exc: Exception) -> Response:
    """A bug: log it with its traceback and answer 500 without details."""
    log.error("ingress.internal_error", route=loggable(request.url.path), exc_info=exc)
    return Internal(["internal error; it has been logged"]).response()
