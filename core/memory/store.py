"""Memories: tenant-scoped storage. Every mutation writes its history and changelog rows in the
caller's transaction, so a memory never exists without them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Connection, Row

from core.events import changelog, history
from core.events.models import HistoryEntryRecord
from core.kernel import cursor as cursors
from core.kernel.config import Limits
from core.kernel.db.engine import sql
from core.kernel.errors import Conflict, InvalidInput, MnemoError, NotFound, TooLarge, field_errors
from core.kernel.ids import iso, new_id, now_ms, parse_time
from core.kernel.scope import Scope
from core.memory import gate, lifecycle, users, validtime
from core.memory.indexing import Indexer
from core.memory.models import (
    DeletedRecord,
    HeldWriteRecord,
    MemoryFilters,
    MemoryIn,
    MemoryPageRecord,
    MemoryPatch,
    MemoryRecord,
    SavedMemoryRecord,
    SaveRecord,
)
from core.memory.policy import BrainPolicy
from core.memory.policy import from_stored as policy_from_stored

COLUMNS = (
    "id, user_id, agent_id, run_id, type, title, key, content, tags, source, confidence, "
    "importance, metadata, state, superseded_by, occurred_at, valid_from, valid_to, created_at, "
    "updated_at, archived_at, deleted_at, access_count, last_accessed_at"
)
_NAMES = tuple(c.strip() for c in COLUMNS.split(","))
_M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
_TIMES = (
    "occurred_at",
    "valid_from",
    "valid_to",
    "created_at",
    "updated_at",
    "archived_at",
    "deleted_at",
)


def _returning(conn: Connection) -> str:
    return f"{COLUMNS}, rowid" if conn.dialect.name == "sqlite" else COLUMNS


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def to_dict(row: Row[Any]) -> MemoryRecord:
    """The memory in a row that holds COLUMNS (and perhaps others, which are left out)."""
    mapping = row._mapping
    return _as_reply({name: mapping[name] for name in _NAMES})


def from_values(values: Sequence[Any]) -> MemoryRecord:
    """`to_dict` for a plain tuple of COLUMNS, in their order."""
    return _as_reply(dict(zip(_NAMES, values, strict=True)))


# Decimal places of the scores a memory carries out (importance, confidence): decay and
# reinforcement multiply in binary floats, and 0.7200000000000001 is noise to a reader.
SCORE_PLACES = 6


def _as_reply(out: dict[str, Any]) -> MemoryRecord:
    out["importance"] = round(float(out["importance"]), SCORE_PLACES)
    out["confidence"] = round(float(out["confidence"]), SCORE_PLACES)
    out["tags"] = json.loads(out["tags"])
    out["metadata"] = json.loads(out["metadata"])
    for name in _TIMES:
        out[name] = iso(out[name])
    out["last_accessed_at"] = iso(out["last_accessed_at"])
    return cast(MemoryRecord, out)


def _lock_suffix(conn: Connection) -> str:
    # SQLite writers already hold the database lock (BEGIN IMMEDIATE); PostgreSQL needs the row.
    return " FOR UPDATE" if conn.dialect.name == "postgresql" else ""


def _serialize(
    conn: Connection, brain_id: str, user: str | None, key: str | None, digest: str
) -> None:
    """PostgreSQL: writers of the same slot (one fact key, or one content when there is no key)
    queue here until the first commits, rather than racing to the unique index under read
    committed. SQLite needs nothing: BEGIN IMMEDIATE already runs one writer at a time."""
    if conn.dialect.name != "postgresql":
        return
    slot = "\x1f".join((brain_id, user or "", key or "", "" if key else digest))
    conn.execute(sql("SELECT pg_advisory_xact_lock(hashtextextended(:slot, 0))"), {"slot": slot})


def _fetch(conn: Connection, scope: Scope, memory_id: str, *, lock: bool = False) -> Row[Any]:
    params: dict[str, Any] = {"id": memory_id}
    row = conn.execute(
        sql(
            f"SELECT {COLUMNS}, content_hash FROM memories WHERE {scope.where(params)} "
            f"AND id = :id{_lock_suffix(conn) if lock else ''}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no memory {memory_id!r}", code="memory_not_found")
    return row


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def check_limits(
    limits: Limits,
    *,
    content: str | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    if content is not None and len(content.encode()) > limits.content_bytes:
        raise TooLarge(
            f"content is {len(content.encode())} bytes; the limit is {limits.content_bytes}",
            code="content_too_large",
            details={"field": "content", "limit": limits.content_bytes},
        )
    if tags is not None:
        if len(tags) > limits.tags:
            raise InvalidInput(
                f"{len(tags)} tags; the limit is {limits.tags}",
                details={"field": "tags", "limit": limits.tags},
            )
        for i, tag in enumerate(tags):
            if len(tag) > limits.tag_chars:
                raise InvalidInput(
                    f"tag {tag[:20]!r}… is {len(tag)} characters; the limit is {limits.tag_chars}",
                    details={"field": f"tags.{i}", "limit": limits.tag_chars},
                )
    if metadata is not None and _json_size(metadata) > limits.metadata_bytes:
        raise TooLarge(
            f"metadata is {_json_size(metadata)} bytes as JSON; the limit is "
            f"{limits.metadata_bytes}",
            code="metadata_too_large",
            details={"field": "metadata", "limit": limits.metadata_bytes},
        )


def _check_new(scope: Scope, data: MemoryIn, limits: Limits) -> str | None:
    """Validate what pydantic cannot know; returns the user the memory belongs to."""
    check_limits(limits, content=data.content, tags=data.tags, metadata=data.metadata)
    if data.type == "fact" and not data.key:
        raise InvalidInput("a fact needs a key", details={"field": "key"})
    return scope.user_for_write(data.user_id)


def _find_duplicate(
    conn: Connection, brain_id: str, user: str | None, key: str | None, digest: str
) -> Row[Any] | None:
    return conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain "
            "AND coalesce(user_id, '') = :user AND coalesce(key, '') = :key "
            "AND content_hash = :hash AND state = 'active'"
        ),
        {"brain": brain_id, "user": user or "", "key": key or "", "hash": digest},
    ).first()


def _duplicate_and_policy(
    conn: Connection,
    scope: Scope,
    user: str | None,
    key: str | None,
    digest: str,
    *,
    recalls: bool,
) -> tuple[Row[Any] | None, BrainPolicy, gate.RecallNotes | None]:
    """`_find_duplicate` and the brain's policy (which the gate reads next) in one statement:
    a round trip less per add, ~1 ms on PostgreSQL; with `recalls`, the caller's recall notes
    too, which the gate's echo guard reads next (another round trip less)."""
    values = {"brain": scope.brain_id, "user": user or "", "key": key or "", "hash": digest}
    notes = ""
    if recalls:
        notes = f", {gate.recalls_column(conn)} AS recalls"
        values |= gate.recalls_values(scope)
    row = conn.execute(
        sql(
            f"SELECT p.*, d.* FROM (SELECT (SELECT policy_json FROM brain_policies "
            f"WHERE brain_id = :brain) AS policy_json{notes}) AS p LEFT JOIN "
            f"(SELECT {COLUMNS} FROM memories WHERE brain_id = :brain "
            "AND coalesce(user_id, '') = :user AND coalesce(key, '') = :key "
            "AND content_hash = :hash AND state = 'active') AS d ON 1 = 1"
        ),
        values,
    ).first()
    assert row is not None  # the policy side always has its one row
    read = gate.RecallNotes.of(row.recalls) if recalls else None
    return (None if row.id is None else row), policy_from_stored(row.policy_json), read


def _current_fact(
    conn: Connection, brain_id: str, user: str | None, key: str, *, lock: bool = False
) -> Row[Any] | None:
    return conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain "
            "AND coalesce(user_id, '') = :user AND key = :key AND type = 'fact' "
            f"AND state = 'active'{_lock_suffix(conn) if lock else ''}"
        ),
        {"brain": brain_id, "user": user or "", "key": key},
    ).first()


def create(
    conn: Connection,
    scope: Scope,
    data: MemoryIn,
    limits: Limits,
    index: Indexer,
    *,
    screen: bool = True,
) -> SaveRecord:
    """Save one memory. With `screen` (every caller but a reviewer approving a quarantined
    write) the write gate decides first what the write becomes (core/memory/gate.py); its
    decision is in the reply as `gate`."""
    scope.require_write()
    user = _check_new(scope, data, limits)
    digest = content_hash(data.content)
    _serialize(conn, scope.brain_id, user, data.key, digest)
    # The gate needs the brain's policy: read with the copy check unless look_ahead has it.
    policy = gate.foreseen_policy(scope, data, user, index) if screen else None
    recalls = None
    if screen and policy is None:
        duplicate, policy, recalls = _duplicate_and_policy(
            conn, scope, user, data.key, digest, recalls=gate.may_echo(data.role)
        )
    else:
        duplicate = _find_duplicate(conn, scope.brain_id, user, data.key, digest)
    if duplicate is not None:
        copy = cast(SavedMemoryRecord, {**to_dict(duplicate), "deduplicated": True})
        if screen:
            copy["gate"] = gate.explain_copy(conn, scope, duplicate.id, data.role).explain()
        return copy
    now = now_ms()
    # A write the caller got wrong is refused before the gate weighs what it says.
    occurred = None if data.occurred_at is None else parse_time(data.occurred_at)
    valid_from, valid_to = validtime.span(
        None if data.valid_from is None else parse_time(data.valid_from),
        None if data.valid_to is None else parse_time(data.valid_to),
        occurred,
        now,
    )
    verdict = gate.screen(conn, scope, data, user, index, policy, recalls) if screen else None
    if verdict is not None and verdict.stops:
        return gate_reply(conn, scope, data, user, verdict)

    memory_id = new_id()
    old = None
    if data.type == "fact" and data.key:
        old = _current_fact(conn, scope.brain_id, user, data.key, lock=True)
    # A fact about an earlier time than the current one is history, not news: it is saved
    # closed and archived, superseded by the current fact, which stays current.
    earlier = old is not None and valid_from < _valid_from(old)
    if earlier:
        assert old is not None and data.key is not None
        # It ends where the next version of the fact begins; the version before it, if any,
        # now ends where it begins.
        before, old = _neighbour_versions(conn, scope.brain_id, user, data.key, valid_from)
        assert old is not None
        valid_to = min(valid_to or _valid_from(old), _valid_from(old))
        if before is not None:
            validtime.close(conn, scope.brain_id, before, valid_from)
    elif old is not None:
        lifecycle.archive_superseded_fact(
            conn, scope, old.id, memory_id, valid_from=valid_from, now=now, index=index
        )
    # The new row comes back from the INSERT itself (and on SQLite its rowid, which the
    # full-text index is keyed by): no read-back statements. On PostgreSQL the rows that come
    # with it, its user's, its tags and its dates, are written by the same statement.
    along = _written_with(conn, scope.brain_id, memory_id, user, data, valid_from)
    withs, values = along or ([], {})
    created = conn.execute(
        sql(
            (f"WITH {', '.join(withs)} " if withs else "")
            + "INSERT INTO memories (id, brain_id, user_id, agent_id, run_id, type, title, key, "
            "content, tags, source, confidence, importance, metadata, state, content_hash, "
            "occurred_at, valid_from, valid_to, created_at, updated_at, archived_at, "
            "superseded_by) VALUES (:id, :brain, :user, :agent, :run, :type, :title, :key, "
            ":content, :tags, :source, :confidence, :importance, :metadata, :state, :hash, "
            ":occurred, :valid_from, :valid_to, :now, :now, :archived_at, :superseded_by) "
            f"RETURNING {_returning(conn)}"
        ),
        {
            "id": memory_id,
            "brain": scope.brain_id,
            "user": user,
            "agent": data.agent_id,
            "run": data.run_id,
            "type": data.type,
            "title": data.title,
            "key": data.key,
            "content": data.content,
            "tags": json.dumps(data.tags),
            "source": data.source,
            "confidence": data.confidence,
            "importance": data.importance,
            "metadata": json.dumps(data.metadata),
            "hash": digest,
            "occurred": occurred,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "now": now,
            "state": "archived" if earlier else "active",
            "archived_at": now if earlier else None,
            "superseded_by": old.id if earlier and old is not None else None,
            **values,
        },
    ).one()
    if along is None:
        write_tags(conn, scope.brain_id, memory_id, data.tags, now)
        validtime.index_dates(conn, scope.brain_id, memory_id, data.content, valid_from, new=True)
    index.on_write(
        conn,
        scope.brain_id,
        memory_id,
        title=data.title,
        key=data.key,
        tags=data.tags,
        content=data.content,
        new=True,
        located=(created.rowid, user) if conn.dialect.name == "sqlite" else None,
    )
    if user is not None and along is None:
        users.touch(conn, scope.brain_id, user)

    actor = {"actor_id": data.actor_id, "role": data.role}
    if old is not None and not earlier:
        lifecycle.superseded_fact(conn, scope, old, memory_id, key=data.key or "", now=now, **actor)
    elif old is not None:
        lifecycle.link_supersedes(conn, scope, old.id, memory_id, actor_id=data.actor_id, at=now)
    detail = None
    if old is not None:
        detail = {"superseded_by": old.id} if earlier else {"supersedes": old.id}
    added = history.entry(
        scope,
        memory_id=memory_id,
        user_id=user,
        event="ADD",
        old=None,
        new=data.content,
        detail=detail,
        at=now,
        **actor,
    )
    label = f"{data.type} {data.key!r}" if data.key else data.type
    changelog.record(
        conn,
        scope,
        event_type="memory.created",
        entity_type="memory",
        entity_id=memory_id,
        summary=f"Added {label}: {changelog.preview(data.content)}",
        user_id=user,
        actor_id=data.actor_id,
        payload={"type": data.type, "key": data.key, "tags": data.tags},
        at=now,
        history=added,
    )
    memory = to_dict(created)
    reply = cast(
        SavedMemoryRecord, {**memory, **index.created(conn, scope, memory), "deduplicated": False}
    )
    if verdict is not None:
        reply["gate"] = verdict.explain()
    return reply


def _written_with(
    conn: Connection,
    brain_id: str,
    memory_id: str,
    user: str | None,
    data: MemoryIn,
    anchor: int,
) -> tuple[list[str], dict[str, Any]] | None:
    """PostgreSQL: what a new memory's INSERT writes with it, as data-modifying WITHs (the
    user's row, the tags, the dates: a round trip each, 0.2-0.3 ms, where SQLite has none
    to save), and their parameters beyond the INSERT's own (which they share: :id, :brain,
    :user, :now). None on SQLite, which has no such WITH: the caller writes them one by
    one. Their foreign keys to the memory are checked at the end of the statement, when its
    row is there."""
    if conn.dialect.name != "postgresql":
        return None
    along = [f"u AS ({users.TOUCH})"] if user is not None else []
    values: dict[str, Any] = {}
    if data.tags:
        along.append(
            "t AS (INSERT INTO memory_tags (memory_id, tag, brain_id, created_at) "
            "SELECT :id, x.tag, :brain, :now FROM unnest(CAST(:t_tags AS text[])) AS x(tag))"
        )
        values["t_tags"] = list(data.tags)
    dates = validtime.dates_written_with(brain_id, memory_id, data.content, anchor)
    if dates is not None:
        along.append(dates[0])
        values |= dates[1]
    return along, values


def gate_reply(
    conn: Connection, scope: Scope, data: MemoryIn, user: str | None, verdict: gate.Verdict
) -> SaveRecord:
    """What a write the gate stopped answers: the memory it restated or echoed (as it is
    now), or the quarantined write, with the decision."""
    if verdict.decision == "quarantined":
        assert verdict.quarantine_id is not None
        held: HeldWriteRecord = {
            "id": verdict.quarantine_id,
            "state": "quarantined",
            "user_id": user,
            "content": data.content,
            "deduplicated": False,
            "gate": verdict.explain(),
        }
        return held
    assert verdict.memory_id is not None
    return cast(
        SavedMemoryRecord,
        {**get(conn, scope, verdict.memory_id), "deduplicated": True, "gate": verdict.explain()},
    )


def _neighbour_versions(
    conn: Connection, brain_id: str, user: str | None, key: str, at: int
) -> tuple[str | None, Row[Any] | None]:
    """Of a fact key's versions (current or superseded): the id of the last one valid before
    `at`, and the first one that begins after it."""
    start = validtime.VALID_FROM_SQL.format(a="")
    where = (
        "brain_id = :brain AND coalesce(user_id, '') = :user AND key = :key AND type = 'fact' "
        "AND (state = 'active' OR (state = 'archived' AND valid_to IS NOT NULL))"
    )
    params = {"brain": brain_id, "user": user or "", "key": key, "at": at}
    before = conn.execute(
        sql(
            f"SELECT id FROM memories WHERE {where} AND {start} < :at ORDER BY {start} DESC LIMIT 1"
        ),
        params,
    ).scalar()
    after = conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE {where} AND {start} > :at "
            f"ORDER BY {start} LIMIT 1"
        ),
        params,
    ).first()
    return before, after


def _valid_from(row: Row[Any]) -> int:
    """When a stored memory became valid (rows older than valid time: when it happened or was
    saved)."""
    return int(row.valid_from or row.occurred_at or row.created_at)


def write_tags(
    conn: Connection, brain_id: str, memory_id: str, tags: list[str], created_at: int
) -> None:
    """The memory's tag rows; they carry its creation time, which orders lists by tag."""
    if tags:
        conn.execute(
            sql(
                "INSERT INTO memory_tags (memory_id, tag, brain_id, created_at) "
                "VALUES (:m, :t, :b, :at)"
            ),
            [{"m": memory_id, "t": tag, "b": brain_id, "at": created_at} for tag in tags],
        )


def create_batch(
    conn: Connection,
    scope: Scope,
    items: Sequence[Mapping[str, Any]],
    limits: Limits,
    index: Indexer,
) -> list[SaveRecord]:
    """All or nothing: every item is validated before the first is written."""
    scope.require_write()
    if len(items) > limits.batch_items:
        raise TooLarge(
            f"{len(items)} memories in one batch; the limit is {limits.batch_items}",
            code="batch_too_large",
            details={"field": "memories", "limit": limits.batch_items},
        )
    parsed: list[MemoryIn] = []
    errors: list[dict[str, Any]] = []
    for position, raw in enumerate(items):
        try:
            item = MemoryIn.model_validate(raw)
            _check_new(scope, item, limits)
            parsed.append(item)
        except ValidationError as exc:
            for error in field_errors(exc.errors(), prefix=("memories", position)):
                errors.append({"index": position, **error})
        except MnemoError as exc:
            field = (exc.details or {}).get("field")
            errors.append(
                {
                    "index": position,
                    "field": f"memories.{position}.{field}" if field else f"memories.{position}",
                    "message": exc.message,
                    "type": exc.code,
                }
            )
    if errors:
        bad = len({e["index"] for e in errors})
        raise InvalidInput(
            f"{bad} of {len(items)} memories are invalid; nothing was saved",
            code="invalid_batch",
            details={"errors": errors},
        )
    # Take every slot's lock up front, in one order, so two overlapping batches cannot deadlock.
    slots = sorted(
        {(scope.user_for_write(i.user_id), i.key, content_hash(i.content)) for i in parsed},
        key=lambda slot: tuple(part or "" for part in slot),
    )
    for user, key, digest in slots:
        _serialize(conn, scope.brain_id, user, key, digest)
    return [create(conn, scope, item, limits, index) for item in parsed]


def get(conn: Connection, scope: Scope, memory_id: str) -> MemoryRecord:
    return to_dict(_fetch(conn, scope, memory_id))


def get_fact(
    conn: Connection,
    scope: Scope,
    key: str,
    user_id: str | None,
    *,
    as_of: Any = None,
    known_at: Any = None,
) -> MemoryRecord:
    """The current fact of a key; with `as_of` the one that was true then, with `known_at` the
    one the store held as current then."""
    if scope.user_id is not None and user_id not in (None, scope.user_id):
        raise NotFound(f"no current fact {key!r}", code="fact_not_found")
    owner = scope.user_id if scope.user_id is not None else user_id
    key = " ".join(key.split())
    if as_of is None and known_at is None:
        row = _current_fact(conn, scope.brain_id, owner, key)
        if row is None:
            raise NotFound(f"no current fact {key!r}", code="fact_not_found")
        return to_dict(row)
    params: dict[str, Any] = {"brain": scope.brain_id, "user": owner or "", "key": key}
    where = ["brain_id = :brain", "coalesce(user_id, '') = :user", "key = :key", "type = 'fact'"]
    if as_of is not None:
        where += validtime.as_of_sql(params, parse_time(as_of))
    if known_at is not None:
        where += validtime.known_at_sql(params, parse_time(known_at))
    row = conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE {' AND '.join(f'({w})' for w in where)} "
            f"ORDER BY {validtime.VALID_FROM_SQL.format(a='')} DESC, created_at DESC LIMIT 1"
        ),
        params,
    ).first()
    if row is None:
        moment = "then" if as_of is None else f"as of {iso(parse_time(as_of))}"
        raise NotFound(f"no fact {key!r} {moment}", code="fact_not_found")
    found = to_dict(row)
    if known_at is not None:
        found = validtime.rebuild(conn, scope, [found], parse_time(known_at))[0]
    return found


def filter_sql(
    scope: Scope, filters: MemoryFilters, params: dict[str, Any], alias: str = ""
) -> list[str]:
    """WHERE clauses (ANDed) for the scope and the list filters; values go into `params`."""
    a = f"{alias}." if alias else ""
    where = [scope.where(params, a)]
    for column in ("type", "user_id", "agent_id", "run_id", "source"):
        value = getattr(filters, column)
        if value is not None:
            where.append(f"{a}{column} = :f_{column}")
            params[f"f_{column}"] = value
    if filters.as_of is not None:
        # Valid time decides instead of the state: superseded facts were true in their time.
        where += validtime.as_of_sql(params, parse_time(filters.as_of), a)
    if filters.known_at is not None:
        # System time: what the store held then, whatever has happened to it since.
        where += validtime.known_at_sql(params, parse_time(filters.known_at), a)
    if filters.state != "all" and filters.as_of is None and filters.known_at is None:
        where.append(f"{a}state = :f_state")
        params["f_state"] = filters.state
    for column, bound, op in (
        ("created_at", filters.created_after, ">="),
        ("created_at", filters.created_before, "<"),
        ("updated_at", filters.updated_after, ">="),
        ("updated_at", filters.updated_before, "<"),
    ):
        if bound is not None:
            name = f"t_{len(params)}"
            where.append(f"{a}{column} {op} :{name}")
            params[name] = parse_time(bound)
    if filters.tag:
        names = [f"tag_{i}" for i in range(len(filters.tag))]
        params.update(zip(names, filters.tag, strict=True))
        members = ", ".join(f":{n}" for n in names)
        tagged = f"SELECT memory_id FROM memory_tags WHERE brain_id = :brain AND tag IN ({members})"
        if filters.tag_mode == "all":
            tagged += f" GROUP BY memory_id HAVING count(*) = {len(names)}"
        where.append(f"{a}id IN ({tagged})")
    return where


def list_memories(
    conn: Connection,
    scope: Scope,
    filters: MemoryFilters,
    *,
    limit: int,
    cursor: str | None = None,
    include_total: bool = False,
) -> MemoryPageRecord:
    """Newest first, with an opaque cursor to the next page."""
    params: dict[str, Any] = {}
    if len(filters.tag) == 1:
        # One tag: walk that tag's rows newest first on their own index and join each to its
        # memory, so a page costs its size whatever the share of the brain the tag has.
        where = filter_sql(scope, filters.model_copy(update={"tag": []}), params, alias="m")
        where += ["t.brain_id = :brain", "t.tag = :tag"]
        params["tag"] = filters.tag[0]
        join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
        source = f"memory_tags t {join} memories m ON m.id = t.memory_id"
        created, ident = "t.created_at", "t.memory_id"
    else:
        where = filter_sql(scope, filters, params, alias="m")
        source, created, ident = "memories m", "m.created_at", "m.id"
    total = None
    if include_total:
        total = conn.execute(
            sql(f"SELECT count(*) FROM {source} WHERE {' AND '.join(where)}"), params
        ).scalar_one()
    if past := cursors.keyset(cursor, params, time=created, ident=ident):
        where.append(past)
    params["limit"] = limit + 1
    rows = conn.execute(
        sql(
            f"SELECT {_M_COLUMNS} FROM {source} WHERE {' AND '.join(where)} "
            f"ORDER BY {created} DESC, {ident} DESC LIMIT :limit"
        ),
        params,
    ).all()
    rows, next_cursor = cursors.page(rows, limit)
    results = [to_dict(r) for r in rows]
    if filters.known_at is not None:
        results = validtime.rebuild(conn, scope, results, parse_time(filters.known_at))
    page: MemoryPageRecord = {"results": results, "next_cursor": next_cursor}
    if include_total:
        page["total"] = total
    return page


def update(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    patch: MemoryPatch,
    limits: Limits,
    index: Indexer,
) -> MemoryRecord:
    scope.require_write()
    changes = patch.changes()
    if not changes:
        raise InvalidInput(
            "nothing to update: pass at least one of content, title, tags, source, "
            "confidence, importance, metadata, occurred_at, valid_from, valid_to",
            code="empty_patch",
        )
    row = _fetch(conn, scope, memory_id, lock=True)
    if row.state == "deleted":
        raise Conflict("this memory is deleted: restore it before editing", code="memory_deleted")
    if "metadata" in changes and patch.metadata_mode == "merge":
        merged = {**json.loads(row.metadata), **changes["metadata"]}
        changes["metadata"] = {k: v for k, v in merged.items() if v is not None}
    check_limits(
        limits,
        content=changes.get("content"),
        tags=changes.get("tags"),
        metadata=changes.get("metadata"),
    )
    values: dict[str, Any] = dict(changes)
    if "content" in values:
        values["content_hash"] = content_hash(values["content"])
        if row.state == "active" and values["content_hash"] != row.content_hash:
            twin = _find_duplicate(
                conn, scope.brain_id, row.user_id, row.key, values["content_hash"]
            )
            if twin is not None:
                raise Conflict(
                    "another active memory already has this content",
                    code="duplicate_content",
                    details={"existing_id": twin.id},
                )
    for name in ("tags", "metadata"):
        if name in values:
            values[name] = json.dumps(values[name])
    for name in ("occurred_at", "valid_from", "valid_to"):
        if name in values and values[name] is not None:
            values[name] = parse_time(values[name])
    if "valid_from" in values or "valid_to" in values:
        start = values.get("valid_from", row.valid_from)
        if start is None:
            start = values["valid_from"] = _valid_from(row)
        end = values.get("valid_to", row.valid_to)
        if end is not None and end <= start:
            raise InvalidInput(
                "valid_to must be later than valid_from",
                code="invalid_valid_time",
                details={"field": "valid_to"},
            )
    now = now_ms()
    values["updated_at"] = now
    assignments = ", ".join(f"{name} = :v_{name}" for name in values)
    updated = conn.execute(
        sql(
            f"UPDATE memories SET {assignments} WHERE brain_id = :brain AND id = :id "
            f"RETURNING {_returning(conn)}"
        ),
        {**{f"v_{k}": v for k, v in values.items()}, "brain": scope.brain_id, "id": memory_id},
    ).one()
    if "tags" in changes:
        conn.execute(
            sql("DELETE FROM memory_tags WHERE brain_id = :brain AND memory_id = :id"),
            {"brain": scope.brain_id, "id": memory_id},
        )
        write_tags(conn, scope.brain_id, memory_id, changes["tags"], row.created_at)
    if {"content", "valid_from", "occurred_at"} & changes.keys():
        validtime.index_dates(
            conn,
            scope.brain_id,
            memory_id,
            updated.content,
            _valid_from(updated),
            new=False,
        )
    if {"content", "title", "tags"} & changes.keys():
        index.on_write(
            conn,
            scope.brain_id,
            memory_id,
            title=changes.get("title", row.title),
            key=row.key,
            tags=changes.get("tags", row.tags),
            content=changes.get("content", row.content),
            located=(updated.rowid, row.user_id) if conn.dialect.name == "sqlite" else None,
        )
    changed = sorted(changes)
    new_content = changes.get("content", row.content)
    entry = history.entry(
        scope,
        memory_id=memory_id,
        user_id=row.user_id,
        event="UPDATE",
        old=row.content,
        new=new_content,
        detail={"changed": changed},
        actor_id=patch.actor_id,
        role=patch.role,
        at=now,
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.updated",
        entity_type="memory",
        entity_id=memory_id,
        summary=f"Updated {', '.join(changed)}: {changelog.preview(new_content)}",
        user_id=row.user_id,
        actor_id=patch.actor_id,
        payload={"changed": changed},
        at=now,
        history=entry,
    )
    return to_dict(updated)


def set_state(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    target: str,
    index: Indexer,
    *,
    actor_id: str | None = None,
    role: str | None = None,
) -> MemoryRecord:
    """Archive, soft-delete or restore. Asking for the state a memory is already in is a no-op."""
    scope.require_write()
    row = _fetch(conn, scope, memory_id, lock=True)
    if row.state == target:
        return to_dict(row)
    if target == "active":
        _check_restorable(conn, scope, row)
    lifecycle.set_state(conn, scope, row, target, index, actor_id=actor_id, role=role)
    return to_dict(_fetch(conn, scope, memory_id))


def _check_restorable(conn: Connection, scope: Scope, row: Row[Any]) -> None:
    twin = _find_duplicate(conn, scope.brain_id, row.user_id, row.key, row.content_hash)
    if twin is not None:
        raise Conflict(
            "an active memory with the same content exists; restoring would duplicate it",
            code="duplicate_content",
            details={"existing_id": twin.id},
        )
    if row.type == "fact" and row.key:
        current = _current_fact(conn, scope.brain_id, row.user_id, row.key)
        if current is not None:
            raise Conflict(
                f"fact {row.key!r} has a current memory; archive it before restoring this one",
                code="fact_key_taken",
                details={"current_id": current.id},
            )


def purge(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    index: Indexer,
    *,
    confirm: bool,
    actor_id: str | None = None,
) -> DeletedRecord:
    """Hard delete: the memory, its tags, links and history go, and earlier changelog entries
    lose its content; the feed keeps one entry that a purge happened."""
    scope.require_write()
    if confirm is not True:
        raise InvalidInput(
            "set confirm to true to purge: a purge cannot be undone", details={"field": "confirm"}
        )
    row = _fetch(conn, scope, memory_id, lock=True)
    lifecycle.purge(conn, scope, row, index, actor_id=actor_id)
    return {"id": memory_id, "purged": True}


def history_of(conn: Connection, scope: Scope, memory_id: str) -> list[HistoryEntryRecord]:
    _fetch(conn, scope, memory_id)
    return history.for_memory(conn, scope, memory_id)


def count_memories(conn: Connection, scope: Scope, filters: MemoryFilters, *, cap: int) -> int:
    """How many memories match the filters, counted no further than `cap`: a page can say
    "1,000+" without reading every row of a large brain."""
    params: dict[str, Any] = {"cap": cap}
    where = filter_sql(scope, filters, params)
    return int(
        conn.execute(
            sql(
                f"SELECT count(*) FROM (SELECT 1 FROM memories WHERE {' AND '.join(where)} "
                "LIMIT :cap) AS capped"
            ),
            params,
        ).scalar_one()
    )
