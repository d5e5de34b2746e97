"""Source trust: how far a brain believes what a source says, 0..1 per normalised source.

Sources are free text on memories ("slack #eng", "https://wiki.example.com/page", "alice").
They are compared by a normalised key: trimmed, inner whitespace collapsed, lowercased; a URL
becomes its host (without "www."), so every page of a site shares one entry. A host also matches
the entries of its parent domains, the most specific winning: trust set for "example.com" covers
"docs.example.com" unless that has its own.

Search reads the trust of its candidates' sources with one small indexed query (`lookup`);
sources without an entry, and memories without a source, count as neutral (0.5).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from core.events import changelog
from core.kernel import cursor as cursors
from core.kernel.db.engine import sql
from core.kernel.db.id_lists import text_array
from core.kernel.errors import Forbidden, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory.models import TrustDeletedRecord, TrustPageRecord, TrustRecord

NEUTRAL = 0.5
MAX_SOURCE_CHARS = 512


@lru_cache(maxsize=4096)
def normalise(source: str) -> str:
    """The key a source is trusted under. Raises InvalidInput for an empty source."""
    flat = " ".join(source.split()).lower()
    if not flat:
        raise InvalidInput("a source cannot be empty", code="invalid_source")
    if len(flat) > MAX_SOURCE_CHARS:
        raise InvalidInput(
            f"a source is at most {MAX_SOURCE_CHARS} characters", code="invalid_source"
        )
    if "://" in flat:
        try:
            host = urlsplit(flat).hostname
        except ValueError:
            host = None
        if host:
            return host.removeprefix("www.")
    return flat


@lru_cache(maxsize=4096)
def _keys_for(source: str) -> tuple[str, ...]:
    """Keys that may hold a source's trust, most specific first."""
    try:
        key = normalise(source)
    except InvalidInput:
        return ()
    if "://" not in source or "." not in key:
        return (key,)
    labels = key.split(".")
    # Stop at two labels: "com" alone is never a source.
    return tuple(".".join(labels[i:]) for i in range(len(labels) - 1))


def lookup(conn: Connection, brain_id: str, sources: Iterable[str | None]) -> dict[str, float]:
    """source (as stored on the memory) -> trust, for the sources that have an entry."""
    wanted = {s: _keys_for(s) for s in set(sources) if s}
    keys = sorted({k for ks in wanted.values() for k in ks})
    if not keys:
        return {}
    if conn.dialect.name == "postgresql":
        among, value = "= ANY(CAST(:keys AS text[]))", text_array(keys)
    else:
        among, value = "IN (SELECT value FROM json_each(:keys))", json.dumps(keys)
    rows = conn.execute(
        sql(
            "SELECT source_key, trust FROM brain_source_trust "
            f"WHERE brain_id = :brain AND source_key {among}"
        ),
        {"brain": brain_id, "keys": value},
    ).all()
    found = {key: float(trust) for key, trust in rows}
    out: dict[str, float] = {}
    for source, candidates in wanted.items():
        for key in candidates:
            if key in found:
                out[source] = found[key]
                break
    return out


def _to_dict(row: Any) -> TrustRecord:
    return {
        "source": row.source_key,
        "trust": float(row.trust),
        "notes": row.notes,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


_COLUMNS = "source_key, trust, notes, created_at, updated_at"


def _require_brain_writer(scope: Scope) -> None:
    scope.require_write()
    if scope.user_id is not None:
        # Trust reorders every user's results, so one user's key must not set it.
        raise Forbidden(
            "source trust applies to the whole brain: use a brain-wide key",
            code="brain_wide_key_required",
        )


def _check_trust(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInput(
            f"trust must be a number from 0 (ignore) to 1 (fully trusted), got {value!r}",
            code="invalid_trust",
            details={"field": "trust"},
        )
    return float(value)


def get(conn: Connection, scope: Scope, source: str) -> TrustRecord:
    key = normalise(source)
    row = conn.execute(
        sql(
            f"SELECT {_COLUMNS} FROM brain_source_trust "
            "WHERE brain_id = :brain AND source_key = :key"
        ),
        {"brain": scope.brain_id, "key": key},
    ).first()
    if row is None:
        raise NotFound(f"no trust set for source {key!r}", code="trust_not_found")
    return _to_dict(row)


def list_trust(
    conn: Connection, scope: Scope, *, limit: int, cursor: str | None = None
) -> TrustPageRecord:
    """By source key, with an opaque cursor to the next page."""
    params: dict[str, Any] = {"brain": scope.brain_id, "limit": limit + 1}
    after = ""
    if cursor is not None:
        params["after"] = cursors.decode(cursor, keys={"s": str})["s"]
        after = " AND source_key > :after"
    rows = conn.execute(
        sql(
            f"SELECT {_COLUMNS} FROM brain_source_trust WHERE brain_id = :brain{after} "
            "ORDER BY source_key LIMIT :limit"
        ),
        params,
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = cursors.encode({"s": rows[-1].source_key})
    return {"results": [_to_dict(r) for r in rows], "next_cursor": next_cursor}


def set_trust(
    conn: Connection,
    scope: Scope,
    source: str,
    trust: float,
    *,
    notes: str | None = None,
) -> TrustRecord:
    """Create or replace the trust of a source."""
    _require_brain_writer(scope)
    key = normalise(source)
    value = _check_trust(trust)
    at = now_ms()
    conn.execute(
        sql(
            "INSERT INTO brain_source_trust (id, brain_id, source_key, trust, notes, created_at, "
            "updated_at) VALUES (:id, :brain, :key, :trust, :notes, :at, :at) "
            "ON CONFLICT (brain_id, source_key) DO UPDATE SET trust = excluded.trust, "
            "notes = excluded.notes, updated_at = excluded.updated_at"
        ),
        {
            "id": new_id(),
            "brain": scope.brain_id,
            "key": key,
            "trust": value,
            "notes": notes,
            "at": at,
        },
    )
    changelog.record(
        conn,
        scope,
        event_type="trust.set",
        entity_type="source_trust",
        entity_id=key,
        summary=f"Trust of {key} set to {value:g}",
        payload={"source": key, "trust": value},
        at=at,
    )
    return get(conn, scope, key)


def delete(conn: Connection, scope: Scope, source: str) -> TrustDeletedRecord:
    """Forget a source's trust: its memories count as neutral again."""
    _require_brain_writer(scope)
    key = normalise(source)
    gone = conn.execute(
        sql("DELETE FROM brain_source_trust WHERE brain_id = :brain AND source_key = :key"),
        {"brain": scope.brain_id, "key": key},
    ).rowcount
    if not gone:
        raise NotFound(f"no trust set for source {key!r}", code="trust_not_found")
    changelog.record(
        conn,
        scope,
        event_type="trust.deleted",
        entity_type="source_trust",
        entity_id=key,
        summary=f"Trust of {key} removed",
        payload={"source": key},
    )
    return {"source": key, "deleted": True}
