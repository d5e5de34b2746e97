"""The console's routes, mounted by handlers/api.py under /console."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from handlers.console import assets
from handlers.console.routes import account, admin, brain, extras, memories, stewardship


def console_routes() -> list[BaseRoute]:
    return [
        Route("/console/static/{name}", assets.serve, methods=["GET"]),
        *account.routes,
        *memories.routes,
        *brain.routes,
        *extras.routes,
        *admin.routes,
        *stewardship.routes,
    ]
