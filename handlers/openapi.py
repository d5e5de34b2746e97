"""OpenAPI 3.1, generated from the declared routes and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from core import __version__
from handlers.http import ApiRoute

_REF = "#/components/schemas/{model}"
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Machine-readable error code."},
                "message": {"type": "string", "description": "What to fix."},
                "details": {},
            },
        }
    },
}


def _schema(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def build(routes: Iterable[Any]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        doc = route.doc
        op: dict[str, Any] = {
            "summary": doc.summary,
            "tags": [doc.tag],
            "operationId": f"{route.method.lower()}_{route.name}_{doc.tag}",
        }
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in route.param_convertors
        ]
        if doc.query is not None:
            params += _query_parameters(doc.query)
        if params:
            op["parameters"] = params
        if doc.body is not None:
            op["requestBody"] = {
                "required": doc.body_required,
                "content": {
                    "application/json": {"schema": _schema(doc.body, components, "validation")}
                },
            }
        ok: dict[str, Any] = {"description": "OK"}
        if doc.response is not None:
            ok["content"] = {
                "application/json": {"schema": _schema(doc.response, components, "serialization")}
            }
        error = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
        op["responses"] = {str(doc.status): ok, "default": error}
        if doc.auth:
            op["security"] = [{"bearer": []}]
        # OpenAPI templates name the parameter only: "{source:path}" is "{source}".
        template = _CONVERTOR.sub(r"{\1}", route.path)
        paths.setdefault(template, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mnemo", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
