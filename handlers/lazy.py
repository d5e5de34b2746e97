"""Route modules imported by the first request that can reach them.

A cold Lambda start should import what its first request needs, not every route module and the
core each pulls in (pydantic models, numpy, the console's templates). Each module is named
with the path prefixes its routes live under; a request imports only the modules whose
prefixes its path starts with, then matches their routes in the declared order, exactly as if
they had been listed one by one. tests/api/test_lazy_routes.py checks that every route of every
module lies under one of its module's prefixes, so none can become unreachable.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

# Where the matched route travels from `matches` to `handle` (Starlette copies the child scope
# into the request scope between the two calls).
_MATCHED = "mnemo.lazy_route"


@dataclass(frozen=True)
class RouteModule:
    """`module:attribute`, the attribute a list of routes or a function returning one."""

    target: str
    prefixes: tuple[str, ...]


class LazyRoutes(BaseRoute):
    def __init__(self, modules: Sequence[RouteModule]) -> None:
        self.modules = tuple(modules)
        self._loaded: dict[str, list[BaseRoute]] = {}
        self._lock = threading.Lock()

    def routes_of(self, module: RouteModule) -> list[BaseRoute]:
        routes = self._loaded.get(module.target)
        if routes is None:
            with self._lock:
                routes = self._loaded.get(module.target)
                if routes is None:
                    name, _, attribute = module.target.partition(":")
                    found = getattr(importlib.import_module(name), attribute)
                    routes = list(found() if callable(found) else found)
                    self._loaded[module.target] = routes
        return routes

    def all_routes(self) -> list[BaseRoute]:
        """Every route, in matching order (the OpenAPI document and tests need them all)."""
        return [route for module in self.modules for route in self.routes_of(module)]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        partial: tuple[BaseRoute, Scope] | None = None
        for module in self.modules:
            if not path.startswith(module.prefixes):
                continue
            for route in self.routes_of(module):
                match, child = route.matches(scope)
                if match is Match.FULL:
                    return Match.FULL, {**child, _MATCHED: route}
                if match is Match.PARTIAL and partial is None:
                    partial = (route, child)
        if partial is not None:
            route, child = partial
            return Match.PARTIAL, {**child, _MATCHED: route}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope[_MATCHED]
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        # Nothing in Mnemo builds URLs by route name; say so rather than load every module.
        raise NoMatchFound(name, path_params)
