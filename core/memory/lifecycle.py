"""A memory's lifecycle: the one place its state changes, with its history and changelog rows.

A memory is `active`, `archived` or `deleted` (soft; restorable), and may be superseded: its
`superseded_by` names the memory that replaced it (a newer fact, a merge's result, a conflict's
winner). A purge removes it. Every change of these here writes, in the caller's transaction:
the row, the search index's view of its state, one history row per memory and the changelog
entry a sync consumer or a `memory.*` webhook learns it from. Callers (core/memory/store.py,
merge, conflicts, aliases, hygiene in core/curation) check what they must and say why; the
records' formats live here, so no path can change a state without them or spell them apart.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection, Row

from core.events import changelog, history
from core.events.models import Event
from core.kernel.db.engine import sql
from core.kernel.db.id_lists import brain_by_id, id_in
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory import validtime
from core.memory.indexing import Indexer

# The history event, changelog event and summary verb of each state a memory is set to.
_TRANSITIONS: dict[str, tuple[Event, str, str]] = {
    "archived": ("ARCHIVE", "memory.archived", "Archived"),
    "deleted": ("DELETE", "memory.deleted", "Deleted"),
    "active": ("RESTORE", "memory.restored", "Restored"),
}

_KEEP = object()  # `_update`: leave superseded_by as it is


def _update(
    conn: Connection,
    scope: Scope,
    ids: list[str],
    *,
    now: int,
    state: str | None = None,
    superseded_by: Any = _KEEP,
    only_active: bool = False,
) -> set[str]:
    """Set the state (and the time stamp that goes with it) and/or superseded_by of memories;
    returns the ids changed. A restore clears deleted_at and superseded_by; archived_at and
    deleted_at otherwise keep the time a memory last entered that state."""
    assignments = ["updated_at = :now"]
    params: dict[str, Any] = {"now": now, "brain": scope.brain_id}
    if state is not None:
        assignments.append("state = :state")
        params["state"] = state
        if state == "archived":
            assignments.append("archived_at = :now")
        elif state == "deleted":
            assignments.append("deleted_at = :now")
        else:
            assignments += ["deleted_at = NULL", "superseded_by = NULL"]
    if superseded_by is not _KEEP:
        assignments.append("superseded_by = :superseded_by")
        params["superseded_by"] = superseded_by
    if len(ids) == 1:
        where = "brain_id = :brain AND id = :id"
        params["id"] = ids[0]
    else:
        among, params["ids"] = id_in(conn, ids)
        where = f"{brain_by_id(conn)} = :brain AND id {among}"
    if only_active:
        where += " AND state = 'active'"
    found = conn.execute(
        sql(f"UPDATE memories SET {', '.join(assignments)} WHERE {where} RETURNING id"), params
    ).all()
    return {str(row[0]) for row in found}


def _record(
    conn: Connection,
    scope: Scope,
    row: Row[Any],
    *,
    event: Event,
    detail: dict[str, Any],
    event_type: str,
    said: str,
    payload: dict[str, Any],
    now: int,
    actor_id: str | None,
    role: str | None,
) -> None:
    """A memory's history row (its content before and, unless deleted, after) and its
    changelog entry, whose summary is `said` and a preview of the content."""
    entry = history.entry(
        scope,
        memory_id=row.id,
        user_id=row.user_id,
        event=event,
        old=row.content,
        new=None if event == "DELETE" else row.content,
        detail=detail,
        actor_id=actor_id,
        role=role,
        at=now,
    )
    changelog.record(
        conn,
        scope,
        event_type=event_type,
        entity_type="memory",
        entity_id=row.id,
        summary=f"{said}: {changelog.preview(row.content)}",
        user_id=row.user_id,
        actor_id=actor_id,
        payload=payload,
        at=now,
        history=entry,
    )


def link_supersedes(
    conn: Connection, scope: Scope, newer: str, older: str, *, actor_id: str | None, at: int
) -> None:
    """The `supersedes` link from the memory that replaced another to it: written with the
    supersession, in the memory layer, because a fact superseded by a new one is part of the
    new memory's own write (core/graph owns every other link write; it sits above this layer).
    A pair already linked keeps its link."""
    conn.execute(
        sql(
            "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, "
            "created_at, origin, created_by) VALUES (:id, :brain, :newer, :older, 'supersedes', "
            "1.0, :now, 'system', :actor) ON CONFLICT (brain_id, from_id, to_id, relation) "
            "DO NOTHING"
        ),
        {
            "id": new_id(),
            "brain": scope.brain_id,
            "newer": newer,
            "older": older,
            "now": at,
            "actor": actor_id or scope.principal,
        },
    )


# Archive, delete, restore ------------------------------------------------------------------


def set_state(
    conn: Connection,
    scope: Scope,
    row: Row[Any],
    target: str,
    index: Indexer,
    *,
    actor_id: str | None = None,
    role: str | None = None,
) -> None:
    """Move one memory (a row with id, user_id, type, state, content; checked by the caller and
    not already in `target`: "active", "archived" or "deleted") to `target`."""
    event, event_type, verb = _TRANSITIONS[target]
    now = now_ms()
    _update(conn, scope, [row.id], now=now, state=target)
    index.on_state(conn, scope.brain_id, row.id)
    change = {"from": row.state, "to": target}
    _record(
        conn,
        scope,
        row,
        event=event,
        detail=change,
        event_type=event_type,
        said=f"{verb} {row.type}",
        payload=change,
        now=now,
        actor_id=actor_id,
        role=role,
    )


def archive(
    conn: Connection,
    scope: Scope,
    rows: list[Row[Any]],
    *,
    now: int,
    reason: dict[str, Any],
    index: Indexer | None = None,
    actor_id: str | None = None,
    role: str | None = None,
) -> list[str]:
    """Archive the active ones of many memories (rows with id, user_id, type, content) in a few
    statements, `reason` added to what each records; returns the ids archived. Without an
    `index` the caller tells the search caches itself (maintenance does, for a whole batch at
    once)."""
    if not rows:
        return []
    archived = _update(
        conn, scope, [r.id for r in rows], now=now, state="archived", only_active=True
    )
    done = [r for r in rows if r.id in archived]
    if not done:
        return []
    if index is not None:
        for r in done:
            index.on_state(conn, scope.brain_id, r.id)
    detail = {"from": "active", "to": "archived", **reason}
    history.record_many(
        conn,
        scope,
        [
            {
                "memory_id": r.id,
                "user_id": r.user_id,
                "event": "ARCHIVE",
                "old": r.content,
                "new": r.content,
                "detail": detail,
                "actor_id": actor_id,
                "role": role,
                "at": now,
            }
            for r in done
        ],
    )
    # changelog.record per memory: it also queues the webhook deliveries of each event.
    for r in done:
        _archived_entry(conn, scope, r, detail, now=now, actor_id=actor_id)
    return [r.id for r in done]


def _archived_entry(
    conn: Connection,
    scope: Scope,
    row: Row[Any],
    payload: dict[str, Any],
    *,
    now: int,
    actor_id: str | None,
) -> None:
    changelog.record(
        conn,
        scope,
        event_type="memory.archived",
        entity_type="memory",
        entity_id=row.id,
        summary=f"Archived {row.type}: {changelog.preview(row.content)}",
        user_id=row.user_id,
        actor_id=actor_id,
        payload=payload,
        at=now,
    )


# Aliases -----------------------------------------------------------------------------------


def make_alias(
    conn: Connection,
    scope: Scope,
    alias: Row[Any],
    canonical_id: str,
    *,
    archive: bool,
    now: int,
    index: Indexer,
    actor_id: str | None = None,
    role: str | None = None,
) -> bool:
    """Record that a memory (a row, locked by the caller) names the same entity as
    `canonical_id`, archiving it when asked and it is active. Returns whether it was archived."""
    archived = archive and alias.state == "active"
    if archived:
        _update(conn, scope, [alias.id], now=now, state="archived")
        index.on_state(conn, scope.brain_id, alias.id)
    _record(
        conn,
        scope,
        alias,
        event="ARCHIVE" if archived else "UPDATE",
        detail={"reason": "alias", "alias_of": canonical_id, "from": alias.state},
        event_type="alias.created",
        said=f"Alias of {canonical_id}",
        payload={"canonical_id": canonical_id, "archived": archived},
        now=now,
        actor_id=actor_id,
        role=role,
    )
    if archived:
        # A state change a sync consumer or a `memory.*` watch must see, as every other
        # archive path records it.
        payload = {"from": "active", "to": "archived", "alias_of": canonical_id}
        _archived_entry(conn, scope, alias, payload, now=now, actor_id=actor_id)
    return archived


# Supersession ------------------------------------------------------------------------------


def archive_superseded_fact(
    conn: Connection,
    scope: Scope,
    old_id: str,
    new_memory_id: str,
    *,
    valid_from: int,
    now: int,
    index: Indexer,
) -> None:
    """A new version of a fact replaces the current one (locked by the caller), archived before
    the new row is written so the fact key has one active memory at any moment; it stays valid
    until the new one begins. `superseded_fact` records it once the new row exists."""
    _update(conn, scope, [old_id], now=now, state="archived", superseded_by=new_memory_id)
    validtime.close(conn, scope.brain_id, old_id, valid_from)
    index.on_state(conn, scope.brain_id, old_id)


def superseded_fact(
    conn: Connection,
    scope: Scope,
    old: Row[Any],
    new_memory_id: str,
    *,
    key: str,
    now: int,
    actor_id: str | None = None,
    role: str | None = None,
) -> None:
    """The records of `archive_superseded_fact`: the link from the new version (which must
    exist by now: links reference memories), the history and changelog rows."""
    link_supersedes(conn, scope, new_memory_id, old.id, actor_id=actor_id, at=now)
    _record(
        conn,
        scope,
        old,
        event="ARCHIVE",
        detail={"reason": "superseded", "superseded_by": new_memory_id, "from": "active"},
        event_type="memory.superseded",
        said=f"Fact {key!r} superseded",
        payload={"superseded_by": new_memory_id, "key": key},
        now=now,
        actor_id=actor_id,
        role=role,
    )


def archive_for_merge(conn: Connection, scope: Scope, ids: list[str], *, now: int) -> None:
    """A merge's sources, archived before its result is written, so the result neither
    deduplicates into a source nor supersedes one; `merged` records it once the result is."""
    _update(conn, scope, ids, now=now, state="archived")


def merged(
    conn: Connection,
    scope: Scope,
    sources: list[Row[Any]],
    result_id: str,
    *,
    now: int,
    index: Indexer,
    actor_id: str | None = None,
    role: str | None = None,
) -> None:
    """The sources of a merge (archived by `archive_for_merge`) are superseded by its result.
    Called after the sources' own links moved to the result, or these would move too."""
    source_ids = [source.id for source in sources]
    for source in sources:
        link_supersedes(conn, scope, result_id, source.id, actor_id=actor_id, at=now)
        index.on_state(conn, scope.brain_id, source.id)
    _update(conn, scope, source_ids, now=now, superseded_by=result_id)
    for source in sources:
        _record(
            conn,
            scope,
            source,
            event="ARCHIVE",
            detail={"reason": "merged", "merged_into": result_id, "from": "active"},
            event_type="memory.superseded",
            said=f"Merged into {result_id}",
            payload={"superseded_by": result_id, "reason": "merged"},
            now=now,
            actor_id=actor_id,
            role=role,
        )


def _valid_from(row: Row[Any]) -> int:
    return int(row.valid_from or row.occurred_at or row.created_at)


def lose_conflict(
    conn: Connection,
    scope: Scope,
    loser: Row[Any],
    winner: Row[Any],
    *,
    conflict_id: str,
    mode: Literal["archive", "demote"],
    now: int,
    index: Indexer,
    actor_id: str | None = None,
    role: str | None = None,
) -> bool:
    """A resolved conflict's loser (a row, locked, not deleted) is superseded by its winner
    (active): archived with mode `archive` if it is active, left as it is with `demote`.
    Returns whether it was archived."""
    archived = mode == "archive" and loser.state == "active"
    _update(
        conn,
        scope,
        [loser.id],
        now=now,
        state="archived" if archived else None,
        superseded_by=winner.id,
    )
    start = _valid_from(winner)
    if start > _valid_from(loser):
        # The newer statement won: the older one was true until it began, and stays for
        # questions about that time (as a superseded fact does).
        validtime.close(conn, scope.brain_id, loser.id, start)
    index.on_state(conn, scope.brain_id, loser.id)
    link_supersedes(conn, scope, winner.id, loser.id, actor_id=actor_id, at=now)
    # A memory.* entry, as merge and fact supersession write theirs: a sync consumer or a
    # `memory.*` watch must learn it was superseded (and maybe archived).
    _record(
        conn,
        scope,
        loser,
        event="ARCHIVE" if archived else "UPDATE",
        detail={
            "reason": "conflict",
            "conflict_id": conflict_id,
            "mode": mode,
            "superseded_by": winner.id,
            "from": loser.state,
        },
        event_type="memory.superseded",
        said=f"Superseded by {winner.id} (conflict)",
        payload={
            "superseded_by": winner.id,
            "reason": "conflict",
            "conflict_id": conflict_id,
            "state": "archived" if archived else loser.state,
        },
        now=now,
        actor_id=actor_id,
        role=role,
    )
    return archived


# Purge -------------------------------------------------------------------------------------


def purge(
    conn: Connection,
    scope: Scope,
    row: Row[Any],
    index: Indexer,
    *,
    actor_id: str | None = None,
) -> None:
    """Hard delete one memory (a row with id, user_id, type; locked by the caller): it, its
    tags, links and history go, and earlier changelog entries lose its content; the feed
    keeps one entry that a purge happened."""
    params = {"brain": scope.brain_id, "id": row.id}
    index.on_purge(conn, scope.brain_id, row.id)
    # Its links go with it: a link to nothing is no link (the graph layer, which owns links,
    # sits above this one).
    conn.execute(
        sql("DELETE FROM memory_links WHERE brain_id = :brain AND (from_id = :id OR to_id = :id)"),
        params,
    )
    conn.execute(
        sql(
            "UPDATE memories SET superseded_by = NULL "
            "WHERE brain_id = :brain AND superseded_by = :id"
        ),
        params,
    )
    conn.execute(sql("DELETE FROM memories WHERE brain_id = :brain AND id = :id"), params)
    history.erase(conn, scope, row.id)
    changelog.scrub(conn, scope, row.id)
    changelog.record(
        conn,
        scope,
        event_type="memory.purged",
        entity_type="memory",
        entity_id=row.id,
        summary=f"Purged {row.type} {row.id}",
        user_id=row.user_id,
        actor_id=actor_id,
    )
