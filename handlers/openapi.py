"""OpenAPI 3.1, generated from the declared routes and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter

from core import __version__
from handlers.http import ApiRoute, NoBody, Schema

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


# Which class each component name stands for, across every build of the document.
_OWNERS: dict[str, str] = {}


def _schema(model: Schema, components: dict[str, Any], mode: str) -> dict[str, Any]:
    if isinstance(model, dict):  # a JSON Schema given as is
        return model
    owner = f"{model.__module__}.{model.__qualname__}"
    claimed = _OWNERS.setdefault(model.__name__, owner)
    if claimed != owner:
        # Components are named by class name: two models of one name would overwrite each
        # other and some route would be documented with the other's body.
        raise ValueError(f"{owner} and {claimed} both want the OpenAPI name {model.__name__}")
    if issubclass(model, BaseModel):
        schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    else:  # a TypedDict: the same schema a model of its fields makes
        schema = TypeAdapter(model).json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _reply(
    body: Schema | NoBody, media_type: str, components: dict[str, Any], description: str
) -> dict[str, Any]:
    reply: dict[str, Any] = {"description": description}
    if not isinstance(body, NoBody):
        reply["content"] = {media_type: {"schema": _schema(body, components, "serialization")}}
    return reply


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
                    doc.body_media_type: {"schema": _schema(doc.body, components, "validation")}
                },
            }
        responses: dict[str, Any] = {}
        if doc.response is not None:
            responses[str(doc.status)] = _reply(doc.response, doc.media_type, components, "OK")
        else:  # undocumented; tests/api/test_openapi_doc.py names every such route
            responses[str(doc.status)] = {"description": "OK"}
        for status, body in doc.also.items():
            responses[str(status)] = _reply(body, doc.media_type, components, "Also OK")
        mnemo_error: dict[str, Any] = {"$ref": _REF.format(model="Error")}
        errors: dict[str, Any] = {"application/json": {"schema": mnemo_error}}
        if doc.errors is not None:
            # The route's own error shape; what the app answers before the route runs (a body
            # over the limit, the database unavailable) keeps Mnemo's.
            own = _schema(doc.errors, components, "serialization")
            if doc.error_media_type == "application/json":
                own = {"anyOf": [own, mnemo_error]}
            errors[doc.error_media_type] = {"schema": own}
        responses["default"] = {"description": "Error", "content": errors}
        op["responses"] = responses
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
