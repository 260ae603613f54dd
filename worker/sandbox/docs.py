"""OpenAPI helpers: routes parse their own arguments (so auth and faults come first), and these
describe those arguments truthfully in the schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

SANDBOX_DEFINED = "This operation is defined by the sandbox: no public description of it is known."


def body_doc(*models: type[BaseModel], omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """`openapi_extra` giving the JSON request body (one of `models`), minus `omit` fields."""
    schemas = [_without(model.model_json_schema(), omit) for model in models]
    schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def query_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` listing the fields of `model` as query parameters."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]
    return {"parameters": parameters}


def _without(schema: dict[str, Any], omit: tuple[str, ...]) -> dict[str, Any]:
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in omit}
    required = [name for name in schema.get("required", []) if name not in omit]
    trimmed = {**schema, "properties": props}
    if required:
        trimmed["required"] = required
    else:
        trimmed.pop("required", None)
    return trimmed
