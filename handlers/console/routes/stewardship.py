"""The console's quarantine review (approve, reject) and health report pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.curation import health
from core.memory import quarantine
from core.memory.models import QuarantineQuery
from handlers.console import session
from handlers.console.routes.common import done, page, render, to
from handlers.console.templates import stewardship

QUARANTINE_PAGE = 20


@page
async def quarantine_page(request: Request) -> Response:
    view = await session.in_brain(request)
    status = request.query_params.get("status", "pending")
    query = QuarantineQuery(
        status=status,  # validated by the model: a 422 page for another value
        limit=QUARANTINE_PAGE,
        cursor=request.query_params.get("cursor") or None,
    )
    found = await view.ctx.read(quarantine.list_items, query)
    body = stewardship.quarantine(
        view.base,
        found["results"],
        query.status,
        found["next_cursor"],
        view.visitor.csrf,
        done(request),
    )
    return render(view, "quarantine", "Quarantine", body)


@page
async def approve(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    item_id = request.path_params["id"]
    held = await view.ctx.read(quarantine.request_of, item_id)
    index = await view.ctx.indexer([held])
    await view.ctx.write(quarantine.approve, item_id, view.ctx.limits, index)
    return to(f"{view.base}/quarantine", "approved")


@page
async def reject(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    await view.ctx.write(quarantine.reject, request.path_params["id"])
    return to(f"{view.base}/quarantine", "rejected")


@page
async def health_page(request: Request) -> Response:
    view = await session.in_brain(request)
    user_id = (request.query_params.get("user_id") or "").strip() or None
    model = view.ctx.services.embedder().name
    report = await view.ctx.read(health.report, user_id=user_id, model=model)
    return render(view, "health", "Health", stewardship.health(view.base, report, user_id))


routes = [
    Route("/console/b/{brain}/quarantine", quarantine_page, methods=["GET"]),
    Route("/console/b/{brain}/quarantine/{id}/approve", approve, methods=["POST"]),
    Route("/console/b/{brain}/quarantine/{id}/reject", reject, methods=["POST"]),
    Route("/console/b/{brain}/health", health_page, methods=["GET"]),
]
