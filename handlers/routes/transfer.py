"""Export and import of a whole brain as JSON Lines: GET /v1/export, POST /v1/import."""

from __future__ import annotations

from itertools import chain

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.transfer import format as fmt
from core.transfer.exporting import export_lines
from core.transfer.importing import check_options, import_records
from core.transfer.models import ExportQuery, ImportQuery, ImportResult
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, UnsupportedMediaType, json_response, read_query

_NDJSON = {fmt.MEDIA_TYPE, "application/jsonl", "application/json-lines", "application/x-jsonl"}


async def export(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, ExportQuery)
    lines = export_lines(ctx.engine, ctx.scope, include_archived=query.include_archived)
    # The first line (the header) is read before the response starts, so a refusal (a
    # user-scoped key) is a proper error status rather than a broken stream.
    first = await ctx.services.call(lambda: next(lines))
    slug = fmt.parse_header_slug(first)
    return StreamingResponse(
        chain([first], lines),
        media_type=fmt.MEDIA_TYPE,
        headers={"content-disposition": f'attachment; filename="{slug}.jsonl"'},
    )


async def import_(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, ImportQuery)
    check_options(query.strategy, ctx.scope)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _NDJSON:
        raise UnsupportedMediaType(
            f"send the export as JSON Lines with Content-Type: {fmt.MEDIA_TYPE}",
            details={"content_type": media_type or None},
        )
    # Bounded by MNEMO_MAX_BODY_BYTES like every body; `mnemo import` has no such limit.
    body = await request.body()
    embedder = ctx.services.embedder()
    report = await ctx.services.call(
        lambda: import_records(
            ctx.engine,
            ctx.scope,
            fmt.parse_lines(body.splitlines()),
            strategy=query.strategy,
            remap_ids=query.remap_ids,
            embedder=embedder,
            limits=ctx.limits,
            gate=query.gate,
        )
    )
    return json_response(report.to_dict())


_JSON_LINES = {
    "type": "string",
    "description": "JSON Lines: one JSON object a line, as GET /v1/export writes them",
}
_TAG = "transfer"
routes = [
    ApiRoute(
        "/v1/export",
        export,
        method="GET",
        doc=Doc(
            "Export the brain as JSON Lines (application/x-ndjson, streamed): a header, then "
            "memories, history, links, users, trust, policy, then an end record",
            _TAG,
            query=ExportQuery,
            response=_JSON_LINES,
            media_type=fmt.MEDIA_TYPE,
        ),
    ),
    ApiRoute(
        "/v1/import",
        import_,
        method="POST",
        doc=Doc(
            "Import JSON Lines in the export format (body application/x-ndjson, at most "
            "MNEMO_MAX_BODY_BYTES; use `mnemo import` for larger files)",
            _TAG,
            query=ImportQuery,
            body=_JSON_LINES,
            body_media_type=fmt.MEDIA_TYPE,
            response=ImportResult,
        ),
    ),
]
