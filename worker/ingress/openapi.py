"""The OpenAPI 3.1 document of the ingress, written by hand around the catalogue's own schemas.

The routes read raw bytes (signatures cover them), so no framework could infer their bodies; the
event schemas come from the catalogue's pydantic models, so they cannot drift from validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from pydantic import TypeAdapter

from handlers.events import EVENT_CLASSES, Event, EventType
from worker.ingress import cloudevents, crm
from worker.ingress.problems import Problem

REF = "#/components/schemas/{model}"


def data_models(types: Iterable[EventType] | None = None) -> tuple[str, ...]:
    """The names of the `data` models of the catalogue's events (of `types`, if given), in
    catalogue order without repeats: derived, so a new event type needs no edit here."""
    wanted = None if types is None else set(types)
    names = [
        cls.model_fields["data"].annotation.__name__  # type: ignore[union-attr]
        for cls in EVENT_CLASSES
        if wanted is None or _type_of(cls) in wanted
    ]
    return tuple(dict.fromkeys(names))


def _type_of(cls: type[Any]) -> EventType:
    (value,) = get_args(cls.model_fields["type"].annotation)
    return EventType(value)


DATA_MODELS = data_models()
CRM_DATA_MODELS = data_models(crm.TYPES)
EXTENSION_VALUE = {"type": ["string", "integer", "boolean"]}
PROBLEM_TEXT = {
    400: "Malformed: not JSON, or a field is invalid; `reasons` names each field.",
    401: "Missing or invalid credentials; the body is always the same.",
    413: "The body is larger than `ingress_max_body_bytes`.",
    415: "The Content-Type is not one this route reads.",
    422: "Valid JSON that maps to no catalogue event; `reasons` says why.",
    503: "Redis is unreachable; nothing was enqueued. Retry after `Retry-After` seconds.",
}


def document(codes: list[type[Problem]]) -> dict[str, Any]:
    """The whole OpenAPI document; `codes` are the Problem classes whose codes may be answered."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "subaccount-worker ingress",
            "version": "1",
            "description": (
                "Receives billing events, Stripe webhooks and CRM webhooks, authenticates them, "
                "maps them onto the event catalogue and enqueues them. 2xx only once enqueued. "
                "Unknown paths answer 404 and other methods 405, with the Problem body."
            ),
        },
        "paths": {
            "/events": {"post": _events()},
            "/webhooks/stripe": {"post": _stripe()},
            "/webhooks/crm": {"post": _crm()},
            "/healthz": {"get": _health("The process is alive.", ready=False)},
            "/readyz": {"get": _health("Redis is reachable.", ready=True)},
            "/metrics": {"get": _metrics()},
            "/openapi.json": {"get": _self()},
        },
        "components": {
            "schemas": _schemas(codes),
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer"},
                "stripeSignature": {"type": "apiKey", "in": "header", "name": "Stripe-Signature"},
                "standardWebhooks": {"type": "apiKey", "in": "header", "name": "webhook-signature"},
            },
        },
    }


def _schemas(codes: list[type[Problem]]) -> dict[str, Any]:
    """Component schemas: the catalogue's events and data, the webhook bodies, our answers."""
    catalogue = TypeAdapter(Event).json_schema(ref_template=REF)
    schemas: dict[str, Any] = catalogue.pop("$defs")
    for name, schema in schemas.items():
        if schema.get("additionalProperties") is True:  # an envelope: extensions are primitives
            schemas[name] = {**schema, "additionalProperties": EXTENSION_VALUE}
    schemas["CloudEvent"] = catalogue
    schemas["CloudEventBatch"] = {"type": "array", "items": _ref("CloudEvent")}
    schemas["EventData"] = {"oneOf": [_ref(name) for name in DATA_MODELS]}
    schemas["StripeEvent"] = _stripe_event()
    schemas["CrmWebhook"] = _crm_webhook()
    schemas["Accepted"] = _accepted()
    schemas["Problem"] = {
        "type": "object",
        "required": ["error", "reasons"],
        "properties": {
            "error": {"enum": sorted({c.code for c in codes})},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    }
    schemas["Status"] = {"type": "object", "properties": {"status": {"type": "string"}}}
    return schemas


def _stripe_event() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "A Stripe event. invoice.paid and invoice.payment_succeeded map to invoice.paid, "
            "customer.subscription.updated to plan.changed, customer.subscription.deleted to "
            "client.churned; other types are acknowledged (200) and ignored."
        ),
        "required": ["id", "type", "created", "data"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "type": {"type": "string"},
            "created": {"type": "integer", "description": "Unix seconds; the event time."},
            "data": {
                "type": "object",
                "required": ["object"],
                "properties": {
                    "object": {
                        "type": "object",
                        "description": "An invoice or subscription (metadata.client_id).",
                    }
                },
            },
        },
    }


def _crm_webhook() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "client_id", "occurred_at"],
        "properties": {
            "type": {"enum": [str(t) for t in crm.TYPES]},
            "client_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "occurred_at": {"type": "string", "format": "date-time"},
            "data": {"oneOf": [_ref(name) for name in CRM_DATA_MODELS]},
        },
    }


def _accepted() -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["key", "id", "source", "type"],
        "properties": {
            "key": {"type": "string", "description": "Dedupe key: sha256(source + LF + id)[:32]."},
            "id": {"type": "string"},
            "source": {"type": "string"},
            "type": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "required": ["accepted"],
        "properties": {
            "accepted": {"type": "array", "items": item},
            "ignored": {"type": "string", "description": "Why nothing was enqueued (Stripe)."},
        },
    }


def _events() -> dict[str, Any]:
    ce_headers = ("specversion", "id", "source", "type", "subject", "time")
    return {
        "summary": "Enqueue CloudEvents (structured, batched or binary mode)",
        "description": "A batch is all-or-nothing: every event valid, or 400 and nothing enqueued.",
        "security": [{"bearerToken": []}],
        "parameters": [
            _header(f"ce-{name}", f"Binary mode: the `{name}` attribute.", required=False)
            for name in ce_headers
        ],
        "requestBody": {
            "required": True,
            "content": {
                cloudevents.STRUCTURED: {"schema": _ref("CloudEvent")},
                cloudevents.BATCH: {"schema": _ref("CloudEventBatch")},
                cloudevents.BINARY: {"schema": _ref("EventData")},
            },
        },
        "responses": {"202": _json("Enqueued.", "Accepted")} | _problems(400, 401, 413, 415, 503),
    }


def _stripe() -> dict[str, Any]:
    return {
        "summary": "Receive a Stripe webhook",
        "security": [{"stripeSignature": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("StripeEvent")}},
        },
        "responses": {
            "200": _json("A Stripe type that maps to no event: acknowledged, ignored.", "Accepted"),
            "202": _json("Enqueued.", "Accepted"),
        }
        | _problems(400, 401, 413, 415, 422, 503),
    }


def _crm() -> dict[str, Any]:
    return {
        "summary": "Receive a CRM webhook (Standard Webhooks)",
        "security": [{"standardWebhooks": []}],
        "parameters": [
            _header("webhook-id", "The delivery id; it becomes the event id."),
            _header("webhook-timestamp", "Unix seconds; within 5 minutes of now."),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("CrmWebhook")}},
        },
        "responses": {"202": _json("Enqueued.", "Accepted")}
        | _problems(400, 401, 413, 415, 422, 503),
    }


def _health(summary: str, *, ready: bool) -> dict[str, Any]:
    responses = {"200": _json(summary, "Status")}
    return {"summary": summary, "responses": responses | (_problems(503) if ready else {})}


def _metrics() -> dict[str, Any]:
    text = {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}
    return {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "Prometheus text exposition.", "content": text}},
    }


def _self() -> dict[str, Any]:
    content = {"application/json": {"schema": {"type": "object"}}}
    return {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1.", "content": content}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    responses = {str(s): _json(PROBLEM_TEXT[s], "Problem") for s in statuses}
    if "503" in responses:
        retry = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        responses["503"] = {**responses["503"], "headers": {"Retry-After": retry}}
    return responses


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _header(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}
