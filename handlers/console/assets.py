"""The console's stylesheet and script, served from the app itself (no CDN): read once per
process, addressed by a content hash so browsers may cache them for good."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from handlers.console.html import with_query

_FOLDER = Path(__file__).resolve().parent / "static"
_TYPES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str


@cache
def _asset(name: str) -> Asset | None:
    media_type = _TYPES.get(name)
    if media_type is None:
        return None
    body = (_FOLDER / name).read_bytes()
    return Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])


def asset_url(name: str) -> str:
    found = _asset(name)
    assert found is not None, name
    return with_query(f"/console/static/{name}", {"v": found.version})


async def serve(request: Request) -> Response:
    found = _asset(request.path_params["name"])
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    versioned = request.query_params.get("v") == found.version
    return Response(
        found.body,
        media_type=found.media_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
            "ETag": f'"{found.version}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
