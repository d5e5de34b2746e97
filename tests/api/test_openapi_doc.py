"""/openapi.json describes every route the app serves: each operation has its success body,
and every route is in it. A new route fails here until its Doc says what it answers."""

from __future__ import annotations

from openapi_spec_validator import validate
from starlette.routing import Route

from core.kernel.config import Settings
from handlers.api import create_app
from handlers.http import ApiRoute, Undocumented
from handlers.openapi import build


def _routes() -> list[Route]:
    app = create_app(Settings(database_url="sqlite://", log_level="WARNING"))
    lazy = next(r for r in app.routes if hasattr(r, "all_routes"))
    return [r for r in lazy.all_routes() if isinstance(r, Route)]


def test_every_route_is_documented_with_its_success_body() -> None:
    routes = _routes()
    undocumented = [
        f"{sorted(r.methods or [])} {r.path}"
        for r in routes
        if not isinstance(r, ApiRoute | Undocumented)
        # MCP's GET/DELETE (a 405 on a stateless server) and the console's pages.
        and r.path != "/mcp"
        and not r.path.startswith("/console")
    ]
    assert not undocumented, f"routes missing from /openapi.json: {undocumented}"
    missing = [
        f"{r.method} {r.path}" for r in routes if isinstance(r, ApiRoute) and r.doc.response is None
    ]
    assert not missing, f"give these a Doc(response=...): {missing}"


def test_the_document_is_valid_and_names_every_error_shape() -> None:
    spec = build(_routes())
    validate(spec)
    paths = spec["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert ok, f"{method} {path}"
            assert "default" in op["responses"], f"{method} {path}"
    assert {"/memory/add", "/memory/query", "/users/{user_id}/memories"} <= set(paths)
    assert "200" in paths["/v1/memories"]["post"]["responses"]  # a deduplicated add
    mcp_error = paths["/mcp"]["post"]["responses"]["default"]["content"]["application/json"]
    assert "anyOf" in mcp_error["schema"]
    token = paths["/oauth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert "application/x-ndjson" in paths["/v1/import"]["post"]["requestBody"]["content"]
