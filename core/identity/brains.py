"""Brains: the tenants. Every row of tenant data carries a brain_id."""

from __future__ import annotations

import re

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.ids import new_id, now_ms

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise InvalidInput(
            "a brain name is 1-63 characters of a-z, 0-9, '-' and '_', starting with a "
            f"letter or digit; got {slug!r}",
            details={"field": "brain"},
        )
    return slug


def ensure_brain(conn: Connection, slug: str, name: str | None = None) -> str:
    """The id of the brain with this slug, created if it does not exist yet."""
    check_slug(slug)
    now = now_ms()
    conn.execute(
        sql(
            "INSERT INTO brains (id, slug, name, created_at, updated_at) "
            "VALUES (:id, :slug, :name, :now, :now) ON CONFLICT (slug) DO NOTHING"
        ),
        {"id": new_id(), "slug": slug, "name": name or slug, "now": now},
    )
    return brain_id(conn, slug)


def brain_id(conn: Connection, slug: str) -> str:
    found = conn.execute(sql("SELECT id FROM brains WHERE slug = :slug"), {"slug": slug}).scalar()
    if found is None:
        raise NotFound(f"no brain named {slug!r}")
    return str(found)
