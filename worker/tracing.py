"""OpenTelemetry traces of one event's path, optional and off by default.

`configure_tracing` turns them on in a process (`SUBACCOUNT_WORKER_TRACING=true` and the `otel`
extra installed: `pip install subaccount-worker[otel]`); the exporter, sampler and resource come
from the standard `OTEL_*` variables. While off, `span` hands back one shared no-op context and
`inject` an empty carrier: a call costs a global read, and OpenTelemetry is never imported.

The trace context crosses the queue as W3C `traceparent`/`tracestate` strings in the Dramatiq
message's options (`inject` → `span(..., parent=carrier)`). Attributes pass the log redactor, so
a configured secret cannot reach a span; callers set ids, names and statuses, never bodies,
headers or URLs with credentials.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from structlog.typing import EventDict, WrappedLogger

from worker.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

Carrier = Mapping[str, str]
Attributes = Mapping[str, str | int | float | bool]
TRACE_OPTION = "saw_trace"  # the Dramatiq message option holding the W3C carrier
INSTRUMENTATION = "subaccount-worker"

_NOOP: AbstractContextManager[None] = contextlib.nullcontext()


@dataclass
class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    """Whether this process records spans."""
    return _state.tracer is not None


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> None:
    """Record spans from now on, exported by `exporter` (default: OTLP as `OTEL_*` configures).

    Raises ConfigError when the `otel` extra is not installed."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "SUBACCOUNT_WORKER_TRACING=true needs OpenTelemetry: "
            "pip install 'subaccount-worker[otel]' (or set SUBACCOUNT_WORKER_TRACING=false)"
        ) from exc
    resource = Resource.create({SERVICE_NAME: service})  # OTEL_SERVICE_NAME, if set, wins
    provider = TracerProvider(resource=resource)
    if exporter is None and os.environ.get("OTEL_TRACES_EXPORTER") == "none":
        pass  # spans are made and dropped: what tracing costs without an exporter's work
    elif exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _state.provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at process exit), and turn tracing off."""
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.tracer = None
    _state.provider = None


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    kind: str = "internal",
    parent: Carrier | None = None,
    links: Sequence[Carrier] = (),
    start_ms: int | None = None,
) -> AbstractContextManager[Any]:
    """A span around a block, current for its duration: under `parent` (a carrier from another
    process) if given, else under the current span. `kind`: internal, server, client, producer,
    consumer. Exceptions are recorded on it and re-raised."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    return _span(tracer, name, attributes, kind, parent, links, start_ms)


@contextlib.contextmanager
def _span(
    tracer: Tracer,
    name: str,
    attributes: Attributes | None,
    kind: str,
    parent: Carrier | None,
    links: Sequence[Carrier],
    start_ms: int | None,
) -> Iterator[Any]:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    context = propagator.extract(dict(parent)) if parent else None
    span_links = [
        trace.Link(trace.get_current_span(propagator.extract(dict(c))).get_span_context())
        for c in links
        if c
    ]
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=trace.SpanKind[kind.upper()],
        attributes=_safe(attributes),
        links=span_links,
        start_time=start_ms * 1_000_000 if start_ms is not None else None,
    ) as current:
        yield current


def record(
    name: str,
    start_ms: int,
    end_ms: int,
    attributes: Attributes | None = None,
    parent: Carrier | None = None,
) -> None:
    """A finished span of a past interval (e.g. the time a message waited in the queue, known
    only when it is delivered), under `parent` if given, else under the current span."""
    tracer = _state.tracer
    if tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract(dict(parent)) if parent else None
    current = tracer.start_span(
        name, context=context, attributes=_safe(attributes), start_time=start_ms * 1_000_000
    )
    current.end(end_time=max(start_ms, end_ms) * 1_000_000)


def set_attributes(attributes: Attributes) -> None:
    """Add attributes to the current span (no-op when tracing is off)."""
    if _state.tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_safe(attributes) or {})


def inject() -> dict[str, str]:
    """The current span's context as a W3C carrier (`traceparent`, maybe `tracestate`)."""
    if _state.tracer is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def carrier_from(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace headers among `headers` (an HTTP request's, or a CloudEvent's distributed
    tracing extension attributes), lower-cased; empty when there are none."""
    found = {k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    return found if "traceparent" in found else {}


def log_ids(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """A structlog processor adding `trace_id`/`span_id` while a span is current."""
    if _state.tracer is None:
        return event_dict
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = f"{context.trace_id:032x}"
        event_dict["span_id"] = f"{context.span_id:016x}"
    return event_dict


def _safe(attributes: Attributes | None) -> dict[str, str | int | float | bool] | None:
    if not attributes:
        return None
    from worker.log import redactor  # here, not at the top: worker.log imports this module

    scrubbed: dict[str, str | int | float | bool] = redactor.scrub(dict(attributes))
    return scrubbed
