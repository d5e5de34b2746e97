"""Conflicts to review and resolve (members), watches and snapshots (owners)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.curation import conflicts
from core.curation.models import ConflictListQuery, ResolveIn
from core.kernel.errors import MnemoError
from core.transfer import snapshots
from core.transfer.models import RestoreIn, RestoreRecord, SnapshotIn
from core.webhooks import watches
from core.webhooks.models import NewWatchRecord, WatchIn, WatchPatch
from core.webhooks.ssrf import check_url
from handlers.console import session
from handlers.console.html import Html
from handlers.console.routes.common import done, first_problem, page, render, status_of, to
from handlers.console.session import InBrain
from handlers.console.templates import admin

CONFLICTS_PAGE = 20
SNAPSHOTS_PAGE = 50


# -- conflicts -------------------------------------------------------------------------------


async def _conflicts_page(
    request: Request, view: InBrain, *, scanned: int | None = None, status_code: int = 200
) -> Response:
    raw = request.query_params.get("status", "needs_review")
    status = "" if raw == "all" else raw
    query = ConflictListQuery(
        status=status or None,
        limit=CONFLICTS_PAGE,
        cursor=request.query_params.get("cursor") or None,
    )
    found = await view.ctx.read(
        conflicts.list_conflicts,
        status=query.status,
        kind=None,
        memory_id=None,
        user_id=None,
        limit=query.limit,
        cursor=query.cursor,
    )
    body = admin.conflicts(
        view.base,
        found["results"],
        status,
        found["next_cursor"],
        view.visitor.csrf,
        done(request),
        scanned,
    )
    return render(view, "conflicts", "Conflicts", body, status_code)


@page
async def conflicts_page(request: Request) -> Response:
    view = await session.in_brain(request)
    return await _conflicts_page(request, view)


def _space(view: InBrain) -> conflicts.VectorSpace:
    svc = view.ctx.services
    embedder = svc.embedder()
    return conflicts.VectorSpace(embedder.name, embedder.dims, svc.settings.conflicts.neighbours)


@page
async def detect(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    found = await view.ctx.write(
        conflicts.detect_now, memory_id=None, user_id=None, limit=100, space=_space(view)
    )
    return await _conflicts_page(request, view, scanned=int(found["scanned"]))


@page
async def resolve(request: Request) -> Response:
    view = await session.in_brain(request)
    form = await session.checked_form(request, view.visitor.csrf)
    data = ResolveIn.model_validate(
        {"winner_id": form.get("winner_id"), "mode": form.get("mode") or "archive"}
    )
    await view.ctx.write(
        conflicts.resolve,
        request.path_params["conflict"],
        winner_id=data.winner_id,
        mode=data.mode,
        note=None,
        index=await view.ctx.indexer([]),
    )
    return to(f"{view.base}/conflicts", "resolved")


@page
async def dismiss(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    await view.ctx.write(conflicts.dismiss, request.path_params["conflict"], note=None)
    return to(f"{view.base}/conflicts", "dismissed")


# -- watches (owners) ------------------------------------------------------------------------


async def _owner(request: Request) -> InBrain:
    view = await session.in_brain(request)
    view.scope.require_owner()
    return view


async def _watches_page(
    view: InBrain,
    notice: Html,
    *,
    created: NewWatchRecord | None = None,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    rows = await view.ctx.read(watches.list_watches)
    body = admin.watches(
        view.base, rows, view.visitor.csrf, notice, created=created, error=error, values=values
    )
    return render(view, "watches", "Watches", body, status)


@page
async def watches_page(request: Request) -> Response:
    view = await _owner(request)
    return await _watches_page(view, done(request))


async def _checked_url(view: InBrain, url: str) -> Any:
    """The SSRF guard's verdict, outside any transaction: it resolves the host."""
    svc = view.ctx.services
    return await svc.call(lambda: check_url(url, svc.settings.webhooks, svc.resolver))


@page
async def create_watch(request: Request) -> Response:
    view = await _owner(request)
    form = await session.checked_form(request, view.visitor.csrf)
    values = {k: form.get(k) for k in ("name", "webhook_url", "event_types", "query")}
    raw_types = values["event_types"].strip() or "*"
    try:
        data = WatchIn.model_validate(
            {
                "name": values["name"],
                "webhook_url": values["webhook_url"].strip(),
                "event_types": "*"
                if raw_types == "*"
                else [t.strip() for t in raw_types.split(",") if t.strip()],
                "query": form.optional("query"),
            }
        )
        checked = await _checked_url(view, data.webhook_url)
        created = await view.ctx.write(watches.create, data, checked)
    except ValidationError as exc:
        return await _watches_page(
            view, Html(""), error=first_problem(exc), values=values, status=422
        )
    except MnemoError as err:
        return await _watches_page(
            view, Html(""), error=err.message, values=values, status=status_of(err)
        )
    # Rendered, not redirected: the signing secret is shown once and never put in a URL.
    return await _watches_page(view, Html(""), created=created, status=201)


@page
async def toggle_watch(request: Request) -> Response:
    view = await _owner(request)
    form = await session.checked_form(request, view.visitor.csrf)
    patch = WatchPatch(active=form.get("active") == "1")
    await view.ctx.write(watches.update, request.path_params["watch"], patch, None)
    return to(f"{view.base}/watches", "watch")


@page
async def test_watch(request: Request) -> Response:
    view = await _owner(request)
    await session.checked_form(request, view.visitor.csrf)
    await view.ctx.write(watches.test, request.path_params["watch"])
    return to(f"{view.base}/watches", "watch_tested")


@page
async def delete_watch(request: Request) -> Response:
    view = await _owner(request)
    await session.checked_form(request, view.visitor.csrf)
    await view.ctx.write(watches.delete, request.path_params["watch"])
    return to(f"{view.base}/watches", "watch_deleted")


# -- snapshots (owners) ----------------------------------------------------------------------


async def _snapshots_page(
    view: InBrain,
    notice: Html,
    *,
    error: str | None = None,
    restored: RestoreRecord | None = None,
    status: int = 200,
) -> Response:
    found = await view.ctx.read(snapshots.list_snapshots, limit=SNAPSHOTS_PAGE)
    body = admin.snapshots(
        view.base, found["results"], view.visitor.csrf, notice, error=error, restored=restored
    )
    return render(view, "snapshots", "Snapshots", body, status)


@page
async def snapshots_page(request: Request) -> Response:
    view = await _owner(request)
    return await _snapshots_page(view, done(request))


@page
async def take_snapshot(request: Request) -> Response:
    view = await _owner(request)
    form = await session.checked_form(request, view.visitor.csrf)
    ctx = view.ctx
    settings = ctx.services.settings.snapshots
    try:
        data = SnapshotIn(
            label=form.get("label").strip(),
            note=form.optional("note"),
            include_archived=form.checked("include_archived"),
        )
        await ctx.services.call(
            lambda: snapshots.create(
                ctx.engine,
                ctx.scope,
                settings,
                label=data.label,
                note=data.note,
                include_archived=data.include_archived,
            )
        )
    except ValidationError as exc:
        return await _snapshots_page(view, Html(""), error=first_problem(exc), status=422)
    except MnemoError as err:
        return await _snapshots_page(view, Html(""), error=err.message, status=status_of(err))
    return to(f"{view.base}/snapshots", "snapshot")


@page
async def restore_snapshot(request: Request) -> Response:
    view = await _owner(request)
    form = await session.checked_form(request, view.visitor.csrf)
    data = RestoreIn.model_validate({"mode": form.get("mode") or "merge"})
    ctx = view.ctx
    settings = ctx.services.settings.snapshots
    embedder = ctx.services.embedder()
    snapshot_id = request.path_params["snapshot"]
    result = await ctx.services.call(
        lambda: snapshots.restore(
            ctx.engine, ctx.scope, snapshot_id, settings, mode=data.mode, embedder=embedder
        )
    )
    return await _snapshots_page(view, Html(""), restored=result)


@page
async def delete_snapshot(request: Request) -> Response:
    view = await _owner(request)
    await session.checked_form(request, view.visitor.csrf)
    ctx = view.ctx
    settings = ctx.services.settings.snapshots
    snapshot_id = request.path_params["snapshot"]
    await ctx.services.call(lambda: snapshots.delete(ctx.engine, ctx.scope, snapshot_id, settings))
    return to(f"{view.base}/snapshots", "snapshot_deleted")


routes = [
    Route("/console/b/{brain}/conflicts", conflicts_page, methods=["GET"]),
    Route("/console/b/{brain}/conflicts/detect", detect, methods=["POST"]),
    Route("/console/b/{brain}/conflicts/{conflict}/resolve", resolve, methods=["POST"]),
    Route("/console/b/{brain}/conflicts/{conflict}/dismiss", dismiss, methods=["POST"]),
    Route("/console/b/{brain}/watches", watches_page, methods=["GET"]),
    Route("/console/b/{brain}/watches", create_watch, methods=["POST"]),
    Route("/console/b/{brain}/watches/{watch}/active", toggle_watch, methods=["POST"]),
    Route("/console/b/{brain}/watches/{watch}/test", test_watch, methods=["POST"]),
    Route("/console/b/{brain}/watches/{watch}/delete", delete_watch, methods=["POST"]),
    Route("/console/b/{brain}/snapshots", snapshots_page, methods=["GET"]),
    Route("/console/b/{brain}/snapshots", take_snapshot, methods=["POST"]),
    Route("/console/b/{brain}/snapshots/{snapshot}/restore", restore_snapshot, methods=["POST"]),
    Route("/console/b/{brain}/snapshots/{snapshot}/delete", delete_snapshot, methods=["POST"]),
]
