"""Every event type of the catalogue is wired everywhere it must be: a handler, an example that
parses, and a schema in the ingress's OpenAPI document (all derived from the event classes)."""

from __future__ import annotations

import inspect
from typing import Any

import handlers
from handlers import examples
from handlers.events import EVENT_CLASSES, EventType, parse_event
from worker.ingress import openapi
from worker.ingress.app import ANSWERED

ARGS = {"client_id": "acme", "invoice_id": "INV-1", "credits": 10, "t": 0}
# Builders whose data is free-form get the smallest valid data.
DATA = {"updated": {"email": "ops@acme.example"}, "plan_changed": {"credit_type": "unlimited"}}


def _examples() -> dict[str, dict[str, Any]]:
    """Each example builder of handlers/examples.py called with plain arguments, by type."""
    built: dict[str, dict[str, Any]] = {}
    for name, fn in inspect.getmembers(examples, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != examples.__name__ or name in ("at", "event"):
            continue
        params = inspect.signature(fn).parameters
        event = fn(**{k: v for k, v in ARGS.items() if k in params}, **DATA.get(name, {}))
        built[event["type"]] = event
    return built


def test_every_event_type_has_a_handler() -> None:
    """decide() has a handler for each EventType, and nothing else."""
    assert set(handlers._HANDLERS) == set(EventType)


def test_every_event_type_has_an_example_that_parses() -> None:
    """handlers/examples.py builds each type, and each example passes the catalogue."""
    built = _examples()
    assert set(built) == {t.value for t in EventType}
    assert {str(parse_event(e).type) for e in built.values()} == set(built)


def test_every_event_type_has_an_openapi_schema() -> None:
    """The OpenAPI document holds each event class and each data model (EventData lists all)."""
    schemas = openapi.document(ANSWERED)["components"]["schemas"]
    assert {cls.__name__ for cls in EVENT_CLASSES} <= set(schemas)
    assert set(openapi.DATA_MODELS) <= set(schemas)
    listed = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["EventData"]["oneOf"]}
    data_of = {cls.model_fields["data"].annotation.__name__ for cls in EVENT_CLASSES}  # type: ignore[union-attr]
    assert listed == data_of
