"""One `invoice.paid` traced from the ingress to the API call, through real Redis and the sandbox.

The SDK's in-memory exporter collects the spans of the in-process ingress (uvicorn) and pipeline
(a Dramatiq worker); the test asserts the tree, that it continues the caller's `traceparent`, and
that no secret appears in any attribute. Run with `-s` to see the tree printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handlers import examples
from tests.conftest import TEST_API_KEY
from tests.ingress_support import (
    OLD_TOKEN,
    PREFIX,
    STRIPE_SECRET,
    TOKEN,
    bearer,
    ingress_settings,
    running_ingress,
)
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn
from worker import tracing
from worker.sandbox import SandboxAdmin

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, exported to memory; off again after the test."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("subaccount-worker-test", exporter)
    yield exporter
    tracing.shutdown_tracing()


def _tree(spans: list[ReadableSpan], trace_id: int) -> dict[int | None, list[ReadableSpan]]:
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        if span.context is not None and span.context.trace_id == trace_id:
            parent = span.parent.span_id if span.parent is not None else None
            children.setdefault(parent, []).append(span)
    for kids in children.values():
        kids.sort(key=lambda s: s.start_time or 0)
    return children


def _render(children: dict[int | None, list[ReadableSpan]], parent: int | None, depth: int) -> str:
    lines = []
    for span in children.get(parent, []):
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        lines.append(f"{'  ' * depth}{span.name} [{span.kind.name.lower()}] {ms:.1f} ms")
        assert span.context is not None
        lines.append(_render(children, span.context.span_id, depth + 1))
    return "\n".join(line for line in lines if line)


def test_one_invoice_is_one_trace_from_the_caller_to_the_api_call(
    redis_url: str,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    spans: InMemorySpanExporter,
) -> None:
    """ingress request (continuing the caller's traceparent) → enqueue → process_event →
    queue wait, the evidence read and the grant, each an HTTP client span; no secret anywhere."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, key_prefix=PREFIX, tracing=True
    )
    onboarding = examples.onboarded("tr-shop", t=0)
    invoice = examples.invoice_paid("tr-shop", "INV-TR-1", 250, t=60)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    with running_pipeline(settings) as runtime, running_ingress(ingress_settings(redis_url)) as ing:
        headers = {**bearer(), "content-type": "application/cloudevents+json"}
        assert ing.http.post("/events", json=onboarding, headers=headers).status_code == 202
        wait_for_outcomes(runtime.redis, [onboarding["id"]], prefix=PREFIX)
        spans.clear()
        response = ing.http.post(
            "/events", json=invoice, headers={**headers, "traceparent": traceparent}
        )
        assert response.status_code == 202
        found = wait_for_outcomes(runtime.redis, [invoice["id"]], prefix=PREFIX)
    assert found[invoice["id"]]["outcome"] == "applied"

    finished = list(spans.get_finished_spans())
    children = _tree(finished, int(CALLER_TRACE, 16))
    print("\n" + _render(children, int(CALLER_SPAN, 16), 0))
    (server,) = children[int(CALLER_SPAN, 16)]
    assert server.name == "POST /events"
    assert server.kind.name == "SERVER"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 202
    assert server.context is not None
    (enqueue,) = children[server.context.span_id]
    assert enqueue.name == "enqueue"
    assert enqueue.kind.name == "PRODUCER"
    assert enqueue.context is not None
    wait, consumer = children[enqueue.context.span_id]
    assert wait.name == "queue wait"
    assert consumer.name == "process_event"
    assert consumer.kind.name == "CONSUMER"
    assert consumer.attributes is not None
    assert consumer.attributes["saw.event_id"] == invoice["id"]
    assert consumer.context is not None
    below = [s.name for s in _descendants(children, consumer.context.span_id)]
    calls = [s for s in _descendants(children, consumer.context.span_id) if s.kind.name == "CLIENT"]
    assert [c.attributes["http.response.status_code"] for c in calls if c.attributes] == [
        200
    ] * len(calls)
    assert any("add_credits" in c.name for c in calls), below
    _assert_no_secret(finished)


def _descendants(
    children: dict[int | None, list[ReadableSpan]], span_id: int
) -> list[ReadableSpan]:
    found: list[ReadableSpan] = []
    for span in children.get(span_id, []):
        found.append(span)
        assert span.context is not None
        found += _descendants(children, span.context.span_id)
    return found


def _assert_no_secret(finished: list[ReadableSpan]) -> None:
    secrets = [TEST_API_KEY, TOKEN, OLD_TOKEN, STRIPE_SECRET]
    text: list[Any] = []
    for span in finished:
        text += [span.name, *(span.attributes or {}).items()]
        text += [(e.name, *(e.attributes or {}).items()) for e in span.events]
    blob = repr(text)
    assert blob
    assert not [s for s in secrets if s in blob]
