"""Snapshots: a brain's export (core/transfer/format.py), gzip-compressed and kept in the
database, or in S3 when MNEMO_SNAPSHOT_BUCKET is set; restorable in `merge` or `replace` mode
in ONE transaction, so a restore that fails anywhere leaves the brain as it was.

Creating reads the brain in one read transaction (a consistent picture), packs it outside any
write lock, then records the snapshot, its changelog row and the retention it triggers in one
short write transaction. An S3 object is written before its row and removed after its row is
gone, so a row never names a missing object; a failure in between can leave an orphan object,
never a broken snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

from sqlalchemy import Connection, Engine, Row

from core.curation import erasure
from core.embeddings.base import Embedder
from core.events import changelog
from core.kernel import cursor as cursors
from core.kernel.config import SnapshotSettings
from core.kernel.db.engine import sql, transaction
from core.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory.policy import policy_for
from core.transfer import format as fmt
from core.transfer import payloads
from core.transfer.exporting import export_records
from core.transfer.importing import (
    DEFAULT_BATCH,
    ImportRun,
    batches,
    clear_brain,
)
from core.transfer.models import (
    RestoreRecord,
    SnapshotDeletedRecord,
    SnapshotPageRecord,
    SnapshotRecord,
)

log = logging.getLogger("mnemo.snapshots")

MODES = ("merge", "replace")
_META = (
    "id, label, note, include_archived, format_version, encoding, storage, s3_key, size_bytes, "
    "sha256, memory_count, link_count, record_count, created_by, created_at"
)
_LABEL_CHARS = 200
_NOTE_CHARS = 2000


def _out(row: Row[Any]) -> SnapshotRecord:
    out = {
        "id": row.id,
        "label": row.label,
        "note": row.note,
        "include_archived": bool(row.include_archived),
        "format_version": row.format_version,
        "encoding": row.encoding,
        "storage": row.storage,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "memory_count": row.memory_count,
        "link_count": row.link_count,
        "record_count": row.record_count,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
    }
    return cast(SnapshotRecord, out)


def _brain_wide(scope: Scope) -> None:
    if scope.user_id is not None:
        raise Forbidden(
            "snapshots cover the whole brain: use a brain-wide key, not a user-scoped one",
            code="brain_key_required",
        )


def _row(conn: Connection, scope: Scope, snapshot_id: str, *, payload: bool = False) -> Row[Any]:
    columns = _META + (", payload" if payload else "")
    row = conn.execute(
        sql(f"SELECT {columns} FROM snapshots WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": snapshot_id},
    ).first()
    if row is None:
        raise NotFound(f"no snapshot {snapshot_id!r}", code="snapshot_not_found")
    return row


def retention(conn: Connection, brain_id: str) -> int:
    """How many snapshots the brain keeps: its policy's snapshot_retention."""
    return int(policy_for(conn, brain_id).snapshot_retention)


def create(
    engine: Engine,
    scope: Scope,
    settings: SnapshotSettings,
    *,
    label: str,
    note: str | None = None,
    include_archived: bool = False,
) -> SnapshotRecord:
    """Snapshot the brain: active memories, or every memory with `include_archived` (archived
    and soft-deleted ones, which a restore can bring back), with their history and links, and
    the brain's users, trust and policy."""
    scope.require_write()
    _brain_wide(scope)
    label = " ".join(label.split())
    if not label or len(label) > _LABEL_CHARS:
        raise InvalidInput(f"label must be 1-{_LABEL_CHARS} characters", details={"field": "label"})
    if note is not None and len(note) > _NOTE_CHARS:
        raise InvalidInput(f"note is over {_NOTE_CHARS} characters", details={"field": "note"})
    with transaction(engine, write=False) as conn:
        _check_room(conn, scope)  # before packing: refused early, not after the work
    packed = payloads.pack(export_records(engine, scope, include_archived=include_archived))
    snapshot_id = new_id()
    url = None
    if settings.bucket:
        url = payloads.s3_url(settings, scope.brain_id, snapshot_id)
        payloads.upload(settings, url, packed)
    try:
        with transaction(engine) as conn:
            _check_room(conn, scope)
            now = now_ms()
            conn.execute(
                sql(
                    "INSERT INTO snapshots (id, brain_id, label, note, include_archived, "
                    "format_version, encoding, storage, payload, s3_key, size_bytes, sha256, "
                    "memory_count, link_count, record_count, created_by, created_at) VALUES "
                    "(:id, :brain, :label, :note, :archived, :version, :encoding, :storage, "
                    ":payload, :s3_key, :size, :sha, :memories, :links, :records, :by, :now)"
                ),
                {
                    "id": snapshot_id,
                    "brain": scope.brain_id,
                    "label": label,
                    "note": note,
                    "archived": int(include_archived),
                    "version": fmt.FORMAT_VERSION,
                    "encoding": payloads.ENCODING,
                    "storage": "s3" if url else "database",
                    "payload": None if url else packed.read_all(),
                    "s3_key": url,
                    "size": packed.size,
                    "sha": packed.sha256,
                    "memories": packed.counts.get("memory", 0),
                    "links": packed.counts.get("link", 0),
                    "records": sum(packed.counts.values()),
                    "by": scope.principal,
                    "now": now,
                },
            )
            changelog.record(
                conn,
                scope,
                event_type="snapshot.created",
                entity_type="snapshot",
                entity_id=snapshot_id,
                summary=f"Snapshot {label!r}: {packed.counts.get('memory', 0)} memories",
                payload={
                    "label": label,
                    "include_archived": include_archived,
                    "memory_count": packed.counts.get("memory", 0),
                    "link_count": packed.counts.get("link", 0),
                    "storage": "s3" if url else "database",
                },
                at=now,
            )
            expired = _expire(conn, scope, keep=retention(conn, scope.brain_id))
            created = _out(_row(conn, scope, snapshot_id))
    except Exception:
        if url is not None:
            _remove_objects(settings, [url])
        raise
    finally:
        packed.file.close()
    _remove_objects(settings, expired)
    return created


def _check_room(conn: Connection, scope: Scope) -> None:
    """Retention deletes the oldest snapshots, and deleting is for owners: a non-owner may
    snapshot only while the brain keeps fewer than its retention."""
    if scope.is_owner:
        return
    keep = retention(conn, scope.brain_id)
    count = conn.execute(
        sql("SELECT count(*) FROM snapshots WHERE brain_id = :brain"), {"brain": scope.brain_id}
    ).scalar()
    if int(count or 0) >= keep:
        raise Conflict(
            f"this brain keeps {keep} snapshots and has them: a new one would delete the oldest, "
            "which only an owner may do (an owner can snapshot or delete one)",
            code="snapshot_retention_reached",
        )


def _expire(conn: Connection, scope: Scope, *, keep: int) -> list[str]:
    """Delete the snapshots beyond the newest `keep`; returns the S3 objects to remove once the
    transaction has committed."""
    rows = conn.execute(
        sql(
            "SELECT id, label, s3_key FROM snapshots WHERE brain_id = :brain "
            "ORDER BY created_at DESC, id DESC"
        ),
        {"brain": scope.brain_id},
    ).all()
    objects = []
    for row in rows[keep:]:
        _delete_row(conn, scope, row.id, row.label, reason="retention")
        if row.s3_key:
            objects.append(str(row.s3_key))
    return objects


def _delete_row(conn: Connection, scope: Scope, snapshot_id: str, label: str, reason: str) -> None:
    conn.execute(
        sql("DELETE FROM snapshots WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": snapshot_id},
    )
    changelog.record(
        conn,
        scope,
        event_type="snapshot.deleted",
        entity_type="snapshot",
        entity_id=snapshot_id,
        summary=f"Snapshot {label!r} deleted ({reason})",
        payload={"label": label, "reason": reason},
    )


def _remove_objects(settings: SnapshotSettings, urls: list[str]) -> None:
    for url in urls:
        try:
            payloads.delete_object(settings, url)
        except Exception:  # an orphan object costs storage, never correctness
            log.warning("could not delete snapshot object %s", url, exc_info=True)


def list_snapshots(
    conn: Connection, scope: Scope, *, limit: int, cursor: str | None = None
) -> SnapshotPageRecord:
    """Newest first."""
    _brain_wide(scope)
    where = "brain_id = :brain"
    params: dict[str, Any] = {"brain": scope.brain_id, "limit": limit + 1}
    if past := cursors.keyset(cursor, params):
        where += f" AND {past}"
    rows = conn.execute(
        sql(
            f"SELECT {_META} FROM snapshots WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    ).all()
    rows, next_cursor = cursors.page(rows, limit)
    return {"results": [_out(r) for r in rows], "next_cursor": next_cursor}


def get(conn: Connection, scope: Scope, snapshot_id: str) -> SnapshotRecord:
    _brain_wide(scope)
    return _out(_row(conn, scope, snapshot_id))


def _payload(
    engine: Engine, scope: Scope, snapshot_id: str, settings: SnapshotSettings
) -> tuple[SnapshotRecord, IO[bytes]]:
    with transaction(engine, write=False) as conn:
        row = _row(conn, scope, snapshot_id, payload=True)
    meta = _out(row)
    if row.format_version != fmt.FORMAT_VERSION or row.encoding != payloads.ENCODING:
        raise Conflict(
            f"snapshot {snapshot_id} is format {row.format_version} ({row.encoding}); this "
            f"Mnemo restores format {fmt.FORMAT_VERSION} ({payloads.ENCODING})",
            code="snapshot_format_unsupported",
        )
    if row.storage == "s3":
        file = payloads.download(settings, str(row.s3_key))
    else:
        file = payloads.spool_bytes(bytes(row.payload))
    if payloads.sha256_of(file) != row.sha256:
        file.close()
        raise Conflict(
            f"snapshot {snapshot_id}'s payload does not match its checksum; nothing was restored",
            code="snapshot_corrupt",
        )
    return meta, file


def restore(
    engine: Engine,
    scope: Scope,
    snapshot_id: str,
    settings: SnapshotSettings,
    *,
    mode: str,
    embedder: Embedder | None,
    batch_size: int = DEFAULT_BATCH,
) -> RestoreRecord:
    """Bring the brain back to the snapshot. `merge`: the snapshot's memories, links, users,
    trust and policy come back as they were, what was added since stays. `replace`: the brain
    becomes exactly the snapshot. Either way ONE transaction (embedding included), so a restore
    that fails midway leaves the brain untouched."""
    scope.require_owner_write()
    _brain_wide(scope)
    if mode not in MODES:
        raise InvalidInput(
            f"mode must be one of {', '.join(MODES)}, got {mode!r}", details={"field": "mode"}
        )
    meta, file = _payload(engine, scope, snapshot_id, settings)
    run = ImportRun(
        scope,
        "replace" if mode == "replace" else "merge",
        remap_ids=False,
        embedder=embedder,
        atomic=True,
        changelog_event="snapshot.restored",
        changelog_payload={"snapshot_id": snapshot_id, "label": meta["label"], "mode": mode},
        changelog_entity=("snapshot", snapshot_id),
        changelog_label=f"Restored snapshot {meta['label']!r} ({mode})",
    )
    cleared: dict[str, int] = {}
    try:
        with transaction(engine) as conn:
            row = _row(conn, scope, snapshot_id)  # still there: not deleted while we read it
            purged = _purged_since(conn, scope, row.created_at)
            # Users erased since the snapshot was taken stay erased (their erasure rewrote
            # it too; this holds for one it could not rewrite).
            erased = erasure.erased_subjects(conn, scope.brain_id, row.created_at)
            if mode == "replace":
                cleared = clear_brain(conn, scope)
            records = _erased_left_out(
                scope.brain_id, erased, _without(purged, payloads.unpack(file))
            )
            for batch in batches(records, batch_size):
                run.write(conn, batch)
            run.finish(conn)
    finally:
        file.close()
    return {
        "snapshot": meta,
        "mode": mode,
        "cleared": cleared,
        "purged_left_out": len(purged),
        "erased_users_left_out": len(erased),
        "report": run.report.to_dict(),
    }


def _purged_since(conn: Connection, scope: Scope, taken_at: int) -> set[str]:
    """Memories purged after the snapshot was taken. A purge is a promise that the text is
    gone for good (the changelog and unsent webhooks are scrubbed too): a restore keeps it."""
    rows = conn.execute(
        sql(
            "SELECT entity_id FROM changelog WHERE brain_id = :brain "
            "AND event_type = 'memory.purged' AND created_at >= :taken"
        ),
        {"brain": scope.brain_id, "taken": taken_at},
    )
    return {str(r[0]) for r in rows}


def _without(purged: set[str], records: Iterable[fmt.Line]) -> Iterator[fmt.Line]:
    """The snapshot's records less the purged memories and their history and links."""
    for record in records:
        data = record.get("data")
        if purged and isinstance(data, dict):
            kind = record.get("kind")
            if kind == "memory" and data.get("id") in purged:
                continue
            if kind == "history" and data.get("memory_id") in purged:
                continue
            if kind == "link" and (data.get("from_id") in purged or data.get("to_id") in purged):
                continue
        yield record


def delete(
    engine: Engine, scope: Scope, snapshot_id: str, settings: SnapshotSettings
) -> SnapshotDeletedRecord:
    scope.require_owner_write()
    _brain_wide(scope)
    with transaction(engine) as conn:
        row = _row(conn, scope, snapshot_id)
        _delete_row(conn, scope, snapshot_id, row.label, reason="deleted by request")
    if row.s3_key:
        _remove_objects(settings, [str(row.s3_key)])
    return {"id": snapshot_id, "deleted": True}


def _erased_left_out(
    brain_id: str, subjects: set[str], records: Iterable[fmt.Line]
) -> Iterator[fmt.Line]:
    """`erasure.without_users`, with the end record's counts made true again."""
    counts: dict[str, int] = {}
    for record in erasure.without_users(brain_id, subjects, records):
        kind = str(record.get("kind"))
        if kind == fmt.END:
            yield {**record, "counts": counts}
            continue
        counts[kind] = counts.get(kind, 0) + 1
        yield record


def forget_user(engine: Engine, scope: Scope, user_id: str, settings: SnapshotSettings) -> int:
    """Rewrite every snapshot of the brain that holds this user without it (part of the
    user's erasure, core/app/erasure.py): its memories, their history and links, its user
    record. Each snapshot is replaced in its own transaction (its object in S3 overwritten
    first); returns how many were rewritten. A snapshot that cannot be read (corrupt, or its
    object gone) is left alone: a restore refuses it anyway, and a restore of any snapshot
    taken before the erasure leaves the user out (`restore`)."""
    scope.require_owner_write()
    subjects = {erasure.subject_of(scope.brain_id, user_id)}
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            sql("SELECT id, s3_key FROM snapshots WHERE brain_id = :brain ORDER BY created_at, id"),
            {"brain": scope.brain_id},
        ).all()
    rewritten = 0
    for snapshot_id, url in rows:
        try:
            _, file = _payload(engine, scope, snapshot_id, settings)
        except (Conflict, NotFound):
            continue
        try:
            before = sum(1 for r in payloads.unpack(file) if r.get("kind") in fmt.RECORD_KINDS)
            packed = payloads.pack(
                _erased_left_out(scope.brain_id, subjects, payloads.unpack(file))
            )
        finally:
            file.close()
        try:
            if sum(packed.counts.values()) == before:
                continue
            if url:
                payloads.upload(settings, str(url), packed)
            with transaction(engine) as conn:
                conn.execute(
                    sql(
                        "UPDATE snapshots SET payload = :payload, size_bytes = :size, "
                        "sha256 = :sha, memory_count = :memories, link_count = :links, "
                        "record_count = :records WHERE brain_id = :brain AND id = :id"
                    ),
                    {
                        "payload": None if url else packed.read_all(),
                        "size": packed.size,
                        "sha": packed.sha256,
                        "memories": packed.counts.get("memory", 0),
                        "links": packed.counts.get("link", 0),
                        "records": sum(packed.counts.values()),
                        "brain": scope.brain_id,
                        "id": snapshot_id,
                    },
                )
            rewritten += 1
        finally:
            packed.file.close()
    return rewritten
