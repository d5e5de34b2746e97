"""Erasing an end user from a brain, with a receipt.

Every row of the user goes: memories and what hangs off them (tags, history, the full-text row,
the vector, its pgvector copy and the brain's saved vector cache, links, conflicts, aliases,
recall notes), then the user's own rows (the user and its summary, quarantined writes, recall
notes, user-scoped keys and hook sources). The brain's changelog keeps its entries as
tombstones: event type, entity and time stay, so the feed still says that something happened;
summary, payload, user and actor go, and unsent webhook deliveries lose theirs the same way.

The work runs in bounded batches, one transaction each (`erase_batch`), and is resumable: the
receipt (`erasures`) is written with the first batch and counts what each batch removed, so a
run that stops midway is finished by asking again. The receipt names the user only by a salted
hash (`subject`): the id itself is held only while the erasure runs and cleared when it
completes, so a receipt can be shown later without the data. Its `digest` is a SHA-256 chained
over every batch's memory ids and counts: the same erasure of the same rows gives the same
digest, and a receipt cannot be edited without it showing.

On SQLite, connections run with `secure_delete` (core/kernel/db/engine.py), and `compact` merges the
full-text index (FTS5 keeps a deleted row's terms in old segments until a merge) and
checkpoints the WAL, so erased text leaves the database file's bytes. On PostgreSQL a deleted or
updated row stays in its table as a dead tuple, readable in the files, until a VACUUM removes
it; autovacuum comes when a table has changed enough, which for one user's rows in a large
store can be days. So `compact` VACUUMs the tables the erasure touched, once, after the last
batch (plain VACUUM: it takes no lock that stops reads or writes; VACUUM FULL, which rewrites a
table and would also drop the freed bytes, blocks every tenant's use of it and is left to the
operator). It runs in the scheduled maintenance, not the erasure's request (a VACUUM of a large
table can outlast API Gateway's 30 s): the erasure notes it owed (`owe_compaction`, the receipt's
`compaction.status` pending) and maintenance settles it (`owed`, `settle`). Either way the
receipt records what was done (`compaction`). Snapshots are rewritten
without the user by core/transfer/snapshots.py, which also leaves erased users out of any
restore (`erased_subjects`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from core.curation.models import CompactionRecord, ErasureReceiptRecord
from core.events import changelog
from core.kernel.db.engine import sql, transaction
from core.kernel.db.id_lists import id_in
from core.kernel.errors import NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.retrieval import pgvector, vectors

log = logging.getLogger("mnemo.erasure")

BATCH = 500
TOMBSTONE = "(erased)"
# The tables an erasure deletes from or rewrites (changelog and deliveries are tombstoned in
# place, snapshots rewritten, the receipt drops the user id): PostgreSQL keeps the old row
# versions of each until it is vacuumed.
VACUUMED = (
    "memories",
    "memory_tags",
    "memory_dates",
    "memory_history",
    "memory_vectors",
    pgvector.TABLE,
    "memory_links",
    "memory_conflict_resolutions",
    "memory_entity_aliases",
    "memory_recalls",
    "memory_quarantine",
    "users",
    "api_keys",
    "hook_sources",
    "changelog",
    "deliveries",
    "snapshots",
    "vector_images",
    "erasures",
)
# How long one table's VACUUM may run before it is given up (the erasure is done by then; the
# receipt says which tables were left to autovacuum).
_VACUUM_TIMEOUT_MS = 120_000

# The tables a receipt counts, in the order they are reported.
TABLES = (
    "memories",
    "memory_tags",
    "memory_history",
    "memory_fts",
    "memory_vectors",
    "memory_vectors_pgv",
    "memory_links",
    "memory_conflict_resolutions",
    "memory_entity_aliases",
    "memory_recalls",
    "memory_quarantine",
    "users",
    "api_keys",
    "hook_sources",
    "changelog_tombstoned",
    "deliveries_redacted",
    "snapshots_rewritten",
)


def subject_of(brain_id: str, user_id: str) -> str:
    """The user as a receipt names it: salted with the brain, so it matches nothing elsewhere."""
    return hashlib.sha256(f"mnemo-erasure\x1f{brain_id}\x1f{user_id}".encode()).hexdigest()


def _chain(previous: str, part: dict[str, Any]) -> str:
    body = json.dumps(part, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def _out(row: Any) -> ErasureReceiptRecord:
    stored = json.loads(row.counts)
    counts = {name: int(stored.get(name, 0)) for name in TABLES}
    started = iso(row.started_at)
    assert started is not None
    return {
        "id": row.id,
        "subject": row.subject,
        "status": row.status,
        "counts": counts,
        "total": sum(counts.values()),
        # What was done so the erased bytes leave the store's files (None until it ran).
        "compaction": stored.get(_COMPACTION),
        "digest": row.digest,
        "batches": int(row.batches),
        "requested_by": row.requested_by,
        "started_at": started,
        "completed_at": iso(row.completed_at),
    }


_RECEIPT = (
    "SELECT id, subject, pending_user_id, status, counts, digest, batches, requested_by, "
    "started_at, completed_at FROM erasures"
)


def begin(conn: Connection, scope: Scope, user_id: str) -> ErasureReceiptRecord:
    """The receipt of this user's erasure: the one still running (to resume it) or a new one."""
    scope.require_owner_write()
    subject = subject_of(scope.brain_id, user_id)
    running = conn.execute(
        sql(
            f"{_RECEIPT} WHERE brain_id = :brain AND subject = :subject "
            "AND status = 'running' ORDER BY started_at LIMIT 1"
        ),
        {"brain": scope.brain_id, "subject": subject},
    ).first()
    if running is not None:
        return _out(running)
    receipt_id = new_id()
    conn.execute(
        sql(
            "INSERT INTO erasures (id, brain_id, subject, pending_user_id, status, counts, "
            "digest, batches, requested_by, started_at) VALUES (:id, :brain, :subject, :user, "
            "'running', '{}', :digest, 0, :by, :now)"
        ),
        {
            "id": receipt_id,
            "brain": scope.brain_id,
            "subject": subject,
            "user": user_id,
            "digest": hashlib.sha256(subject.encode()).hexdigest(),
            "by": scope.principal,
            "now": now_ms(),
        },
    )
    return get(conn, scope, receipt_id)


def get(conn: Connection, scope: Scope, receipt_id: str) -> ErasureReceiptRecord:
    scope.require_owner()
    row = conn.execute(
        sql(f"{_RECEIPT} WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": receipt_id},
    ).first()
    if row is None:
        raise NotFound(f"no erasure receipt {receipt_id!r}", code="erasure_not_found")
    return _out(row)


def list_receipts(
    conn: Connection, scope: Scope, *, limit: int = 100
) -> list[ErasureReceiptRecord]:
    scope.require_owner()
    rows = conn.execute(
        sql(f"{_RECEIPT} WHERE brain_id = :brain ORDER BY started_at DESC, id DESC LIMIT :n"),
        {"brain": scope.brain_id, "n": limit},
    ).all()
    return [_out(r) for r in rows]


def _running(conn: Connection, scope: Scope, receipt_id: str) -> Any:
    suffix = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    row = conn.execute(
        sql(f"{_RECEIPT} WHERE brain_id = :brain AND id = :id{suffix}"),
        {"brain": scope.brain_id, "id": receipt_id},
    ).first()
    if row is None:
        raise NotFound(f"no erasure receipt {receipt_id!r}", code="erasure_not_found")
    return row


def _run(conn: Connection, statement: str, params: dict[str, Any]) -> int:
    return int(conn.execute(sql(statement), params).rowcount or 0)


def erase_batch(conn: Connection, scope: Scope, receipt_id: str, *, batch: int = BATCH) -> bool:
    """Erase up to `batch` of the user's memories and every row hanging off them, in the
    caller's transaction, and add what went to the receipt. True once none is left.

    The one writer of memories, tags, links and history outside their owners (core/memory,
    core/graph, core/events), on purpose: an erasure deletes a batch from every table with one
    statement each and counts each table's rows for the receipt and its digest, which the
    owners' one-memory paths (a purge writes a changelog entry per memory, which an erasure must
    not leave) cannot do."""
    scope.require_owner_write()
    receipt = _running(conn, scope, receipt_id)
    if receipt.status != "running":
        return True
    user = receipt.pending_user_id
    ids = [
        str(r[0])
        for r in conn.execute(
            sql(
                "SELECT id FROM memories WHERE brain_id = :brain AND user_id = :user "
                "ORDER BY id LIMIT :n"
            ),
            {"brain": scope.brain_id, "user": user, "n": batch},
        )
    ]
    if not ids:
        return True
    inside, bound = id_in(conn, ids)
    p = {"brain": scope.brain_id, "ids": bound}
    counts: dict[str, int] = {}
    if pgvector.mirroring(conn):
        counts["memory_vectors_pgv"] = _run(
            conn, f"DELETE FROM {pgvector.TABLE} WHERE brain_id = :brain AND memory_id {inside}", p
        )
    if conn.dialect.name == "sqlite":
        counts["memory_fts"] = _run(
            conn,
            "DELETE FROM memory_fts WHERE rowid IN "
            f"(SELECT rowid FROM memories WHERE brain_id = :brain AND id {inside})",
            p,
        )
    counts["memory_vectors"] = _run(
        conn, f"DELETE FROM memory_vectors WHERE brain_id = :brain AND memory_id {inside}", p
    )
    # The saved vector cache holds these memories' codes and the user's id: it goes whole
    # (maintenance saves a new one), in the same transaction as the rows it was made from.
    vectors.drop_images(conn, scope.brain_id)
    counts["memory_tags"] = _run(
        conn, f"DELETE FROM memory_tags WHERE brain_id = :brain AND memory_id {inside}", p
    )
    counts["memory_links"] = _run(
        conn,
        f"DELETE FROM memory_links WHERE brain_id = :brain AND (from_id {inside} "
        f"OR to_id {inside})",
        p,
    )
    counts["memory_conflict_resolutions"] = _run(
        conn,
        f"DELETE FROM memory_conflict_resolutions WHERE brain_id = :brain AND (a_id {inside} "
        f"OR b_id {inside})",
        p,
    )
    counts["memory_entity_aliases"] = _run(
        conn,
        f"DELETE FROM memory_entity_aliases WHERE brain_id = :brain AND "
        f"(canonical_memory_id {inside} OR alias_memory_id {inside})",
        p,
    )
    counts["memory_history"] = _run(
        conn, f"DELETE FROM memory_history WHERE brain_id = :brain AND memory_id {inside}", p
    )
    counts["memory_recalls"] = _forget_recalls(conn, scope.brain_id, ids)
    deliveries, tombstones = _tombstone(conn, scope.brain_id, f"entity_id {inside}", p, receipt_id)
    counts["deliveries_redacted"], counts["changelog_tombstoned"] = deliveries, tombstones
    _run(
        conn,
        "UPDATE memories SET superseded_by = NULL "
        f"WHERE brain_id = :brain AND superseded_by {inside}",
        p,
    )
    counts["memories"] = _run(
        conn, f"DELETE FROM memories WHERE brain_id = :brain AND id {inside}", p
    )
    _account(conn, scope, receipt, counts, {"memory_ids": sorted(ids)})
    return len(ids) < batch


def finish(
    conn: Connection, scope: Scope, receipt_id: str, *, snapshots: int = 0
) -> ErasureReceiptRecord:
    """Erase the user's own rows once its memories are gone, and close the receipt: the user
    id leaves it, and one changelog entry (without the id) records the erasure."""
    scope.require_owner_write()
    receipt = _running(conn, scope, receipt_id)
    if receipt.status != "running":
        return _out(receipt)
    p = {"brain": scope.brain_id, "user": receipt.pending_user_id}
    counts: dict[str, int] = {"snapshots_rewritten": snapshots}
    counts["memory_history"] = _run(
        conn, "DELETE FROM memory_history WHERE brain_id = :brain AND user_id = :user", p
    )
    counts["memory_conflict_resolutions"] = _run(
        conn,
        "DELETE FROM memory_conflict_resolutions WHERE brain_id = :brain AND user_id = :user",
        p,
    )
    counts["memory_recalls"] = _run(
        conn, "DELETE FROM memory_recalls WHERE brain_id = :brain AND user_id = :user", p
    )
    counts["memory_quarantine"] = _run(
        conn, "DELETE FROM memory_quarantine WHERE brain_id = :brain AND user_id = :user", p
    )
    counts["users"] = _run(conn, "DELETE FROM users WHERE brain_id = :brain AND user_id = :user", p)
    counts["api_keys"] = _run(
        conn, "DELETE FROM api_keys WHERE brain_id = :brain AND user_id = :user", p
    )
    counts["hook_sources"] = _run(
        conn, "DELETE FROM hook_sources WHERE brain_id = :brain AND user_id = :user", p
    )
    deliveries, tombstones = _tombstone(conn, scope.brain_id, "user_id = :user", p, receipt_id)
    counts["deliveries_redacted"], counts["changelog_tombstoned"] = deliveries, tombstones
    _account(conn, scope, receipt, counts, {"finished": True}, complete=True)
    changelog.record(
        conn,
        scope,
        event_type="user.erased",
        entity_type="erasure",
        entity_id=receipt_id,
        summary=f"Erased an end user (receipt {receipt_id})",
        payload={"receipt_id": receipt_id},
    )
    return get(conn, scope, receipt_id)


def _forget_recalls(conn: Connection, brain_id: str, ids: list[str]) -> int:
    """Recall notes naming any of these memories, whoever searched (they are short-lived:
    core/memory/gate.py prunes them after a day)."""
    if conn.dialect.name == "postgresql":
        matches = "CAST(memory_ids AS jsonb) ?| CAST(:ids AS text[])"
        bound: Any = list(ids)
    else:
        matches = (
            "EXISTS (SELECT 1 FROM json_each(memory_recalls.memory_ids) r "
            "WHERE r.value IN (SELECT value FROM json_each(:ids)))"
        )
        bound = json.dumps(ids)
    return _run(
        conn,
        f"DELETE FROM memory_recalls WHERE brain_id = :brain AND {matches}",
        {"brain": brain_id, "ids": bound},
    )


def _tombstone(
    conn: Connection, brain_id: str, where: str, params: dict[str, Any], receipt_id: str
) -> tuple[int, int]:
    """Redact the changelog entries matching `where` (and the deliveries made from them):
    (deliveries redacted, entries tombstoned). Already-tombstoned entries are not counted again."""
    payload = json.dumps({"erased": receipt_id})
    q = {**params, "tomb": TOMBSTONE, "payload": payload}
    deliveries = _run(
        conn,
        "UPDATE deliveries SET summary = :tomb, payload = :payload WHERE brain_id = :brain "
        "AND summary <> :tomb AND event_id IN "
        f"(SELECT id FROM changelog WHERE brain_id = :brain AND {where})",
        q,
    )
    entries = _run(
        conn,
        "UPDATE changelog SET summary = :tomb, payload = :payload, user_id = NULL, "
        f"actor_id = NULL WHERE brain_id = :brain AND summary <> :tomb AND {where}",
        q,
    )
    return deliveries, entries


_COMPACTION = "compaction"  # kept beside the counts in the receipt's JSON


def _account(
    conn: Connection,
    scope: Scope,
    receipt: Any,
    counts: dict[str, int],
    part: dict[str, Any],
    *,
    complete: bool = False,
) -> None:
    total = json.loads(receipt.counts)
    for name, value in counts.items():
        total[name] = int(total.get(name, 0)) + int(value)
    digest = _chain(receipt.digest, {**part, "counts": dict(sorted(counts.items()))})
    conn.execute(
        sql(
            "UPDATE erasures SET counts = :counts, digest = :digest, batches = batches + 1, "
            "status = :status, pending_user_id = CASE WHEN :done = 1 THEN NULL "
            "ELSE pending_user_id END, completed_at = CASE WHEN :done = 1 THEN :now "
            "ELSE completed_at END WHERE brain_id = :brain AND id = :id"
        ),
        {
            "counts": json.dumps(total, sort_keys=True),
            "digest": digest,
            "status": "complete" if complete else "running",
            "done": int(complete),
            "now": now_ms(),
            "brain": scope.brain_id,
            "id": receipt.id,
        },
    )


def pending_user(conn: Connection, scope: Scope, receipt_id: str) -> str | None:
    """The user a running erasure is for (None once complete): what snapshot rewriting needs."""
    row = _running(conn, scope, receipt_id)
    return None if row.pending_user_id is None else str(row.pending_user_id)


def erased_subjects(conn: Connection, brain_id: str, since: int) -> set[str]:
    """Subjects erased (or being erased) at or after `since`: a restore of a snapshot taken
    before leaves their records out."""
    rows = conn.execute(
        sql(
            "SELECT subject FROM erasures WHERE brain_id = :brain AND "
            "(status = 'running' OR completed_at >= :since)"
        ),
        {"brain": brain_id, "since": since},
    )
    return {str(r[0]) for r in rows}


# An export line, as the caller holds it. Lines stay mappings rather than records on purpose
# (core/transfer/format.py `Line`: JSON from outside, `data` as wide as its table), and this
# filter only drops some: each line goes out as the very object, and type, it came in as.
_Line = TypeVar("_Line", bound=Mapping[str, Any])


def without_users(brain_id: str, subjects: set[str], records: Iterable[_Line]) -> Iterator[_Line]:
    """Export records less those of the erased subjects: their memories, the history and links
    of those memories, their user records. Memories come first in the format, so one pass
    learns which ids to drop."""
    if not subjects:
        yield from records
        return
    dropped: set[str] = set()

    def erased(user: Any) -> bool:
        return isinstance(user, str) and subject_of(brain_id, user) in subjects

    for record in records:
        kind, data = record.get("kind"), record.get("data")
        if isinstance(data, dict):
            if kind == "memory" and erased(data.get("user_id")):
                dropped.add(str(data.get("id")))
                continue
            if kind == "history" and (
                data.get("memory_id") in dropped or erased(data.get("user_id"))
            ):
                continue
            if kind == "link" and (data.get("from_id") in dropped or data.get("to_id") in dropped):
                continue
            if kind == "user" and erased(data.get("user_id")):
                continue
        yield record


def compact(engine: Engine) -> CompactionRecord:
    """Take the erased rows out of the store's files, best effort; returns what was done, for
    the receipt (`record_compaction`). SQLite's runs within the erasure's request; PostgreSQL's
    is owed by it (`owe_compaction`) and run by the scheduled maintenance (`owed`, `settle`):
    a VACUUM of a large table can outlast the 30 s API Gateway gives a request.

    SQLite: merge the full-text index, so no segment keeps an erased row's terms, and
    checkpoint the WAL into the file (secure_delete has zeroed the freed space), so the erased
    text is in neither file. PostgreSQL: VACUUM each table the erasure touched, outside any
    transaction (VACUUM cannot run in one), so the dead tuples holding the erased rows go now
    rather than whenever autovacuum comes; a table it could not vacuum (no privilege, the
    timeout) is named, and left to autovacuum."""
    if engine.dialect.name == "sqlite":
        with transaction(engine) as conn:
            conn.execute(sql("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')"))
        # Outside any transaction (the driver connection is in autocommit:
        # core/kernel/db/engine.py): a checkpoint inside one cannot reset the WAL.
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()
        return {
            "status": "done",
            "method": "fts_optimize+wal_checkpoint",
            "complete": True,
            "at": _now(),
        }
    vacuumed: list[str] = []
    failed: dict[str, str] = {}
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.exec_driver_sql(f"SET statement_timeout = {_VACUUM_TIMEOUT_MS}")
        try:
            for table in VACUUMED:
                if auto.execute(sql("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
                    continue  # not in this store (pgvector's mirror when it is off)
                try:
                    # The names are this module's own constants, never input.
                    auto.exec_driver_sql(f"VACUUM {table}")
                    vacuumed.append(table)
                except Exception as exc:  # best effort: the erasure itself is done
                    log.warning("erasure: VACUUM %s failed, left to autovacuum: %s", table, exc)
                    failed[table] = type(exc).__name__
        finally:
            auto.exec_driver_sql("RESET statement_timeout")
    out: CompactionRecord = {
        "status": "done",
        "method": "vacuum",
        "complete": not failed,
        "vacuumed": vacuumed,
        "at": _now(),
    }
    if failed:
        out["left_to_autovacuum"] = failed
    return out


def _now() -> str:
    at = iso(now_ms())
    assert at is not None
    return at


def record_compaction(
    conn: Connection, scope: Scope, receipt_id: str, outcome: CompactionRecord
) -> ErasureReceiptRecord:
    """Keep `compact`'s outcome on the receipt (beside its counts: not part of its digest,
    which covers what was erased) and return the receipt."""
    scope.require_owner()
    _store_compaction(conn, scope.brain_id, receipt_id, outcome, due=None)
    return get(conn, scope, receipt_id)


def owe_compaction(conn: Connection, scope: Scope, receipt_id: str) -> ErasureReceiptRecord:
    """Note on the receipt that its compaction is owed (`compaction.status` pending), for the
    scheduled maintenance to run; returns the receipt."""
    scope.require_owner()
    now = now_ms()
    pending: CompactionRecord = {"status": "pending", "method": "vacuum", "requested_at": _now()}
    _store_compaction(conn, scope.brain_id, receipt_id, pending, due=now)
    return get(conn, scope, receipt_id)


def owed(conn: Connection) -> list[tuple[str, str]]:
    """(brain id, receipt id) of every erasure whose compaction is owed, oldest first: the
    maintenance run's work (core/app/maintenance.py)."""
    rows = conn.execute(
        sql(
            "SELECT brain_id, id FROM erasures WHERE compaction_due IS NOT NULL "
            "ORDER BY compaction_due, id"
        )
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def settle(conn: Connection, brain_id: str, receipt_id: str, outcome: CompactionRecord) -> None:
    """Record a compaction the maintenance run did for an erasure that owed it."""
    _store_compaction(conn, brain_id, receipt_id, outcome, due=None)


def _store_compaction(
    conn: Connection, brain_id: str, receipt_id: str, outcome: CompactionRecord, *, due: int | None
) -> None:
    row = conn.execute(
        sql("SELECT counts FROM erasures WHERE brain_id = :brain AND id = :id"),
        {"brain": brain_id, "id": receipt_id},
    ).first()
    if row is None:
        raise NotFound(f"no erasure receipt {receipt_id!r}", code="erasure_not_found")
    stored = json.loads(row.counts)
    stored[_COMPACTION] = outcome
    conn.execute(
        sql(
            "UPDATE erasures SET counts = :counts, compaction_due = :due "
            "WHERE brain_id = :brain AND id = :id"
        ),
        {
            "counts": json.dumps(stored, sort_keys=True),
            "due": due,
            "brain": brain_id,
            "id": receipt_id,
        },
    )
