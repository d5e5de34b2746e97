"""The console's template helper: every value put into a page is escaped unless it is `Html`.

`h("<p>{name}</p>", name=value)` escapes `value`; only markup built by `h` (or `Html(...)` on a
literal) passes through as it is. So a template can only let user content in raw by someone
writing `Html(...)` around it on purpose, which review can grep for.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlencode


class Html(str):
    """Markup that is safe to put in a page as it is."""

    __slots__ = ()

    def __add__(self, other: str) -> Html:
        # Adding plain text to markup escapes the text, as `h` would.
        return Html(str.__add__(self, esc(other)))


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def h(template: str, /, **values: object) -> Html:
    """`template` with its `{name}` fields filled by escaped values. Templates are literals of
    this package (never user text): attribute values in them are always double-quoted."""
    return Html(template.format_map({name: esc(value) for name, value in values.items()}))


def join(parts: Iterable[object], separator: str = "") -> Html:
    return Html(separator.join(esc(part) for part in parts))


def seg(value: str) -> str:
    """One path segment, percent-encoded (a user id may hold '/', '?' or '#')."""
    return quote(value, safe="")


def with_query(path: str, params: Mapping[str, object | None]) -> str:
    kept = {k: str(v) for k, v in params.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(kept)}" if kept else path


def when(value: str | int | None) -> str:
    """An ISO 8601 time (or epoch ms) as people read it: '2026-11-21 23:57 UTC'."""
    if value is None or value == "":
        return ""
    if isinstance(value, int):
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def time_tag(value: str | int | None) -> Html:
    if value is None or value == "":
        return Html('<span class="muted">never</span>')
    iso = value if isinstance(value, str) else datetime.fromtimestamp(value / 1000, UTC).isoformat()
    return h('<time datetime="{iso}">{text}</time>', iso=iso, text=when(value))


def preview(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
