"""Importing a brain from records in the export format (core/transfer/format.py).

    report = import_records(engine, "acme", parse_lines(open("acme.jsonl", "rb")),
                            strategy="merge", remap_ids=False)

Records stream through in batches: a batch's texts are embedded before its transaction opens
(a remote model is never called under the write lock), and each batch is one transaction with
its changelog row. What the whole import needs in memory is the id map (one entry per memory),
never the records.

Strategies, for a record whose id the brain already has:
- `merge`: the imported version wins (a memory is rewritten, with an UPDATE history row saying
  so; an identical one is left alone as `unchanged`); everything else in the brain stays.
- `skip_existing`: the brain's version stays (`exists`).
- `replace`: the brain is emptied first (memories, links, history, users, trust, policy), then
  filled. Atomicity: a replace runs in ONE transaction, the emptying included, so a replace
  that fails anywhere leaves the brain as it was; merge and skip_existing commit batch by batch,
  so a failure keeps the batches before it, and running the same import again with either
  strategy finishes the job without duplicating anything.

Tables: this module writes memories, tags, users, links and history rows itself, in bulk
(one executemany per batch and table), rather than through core/memory, core/graph and
core/events, which write one memory at a time with a changelog entry each: an import keeps the
source's ids, timestamps, states and history as they were, and records one changelog row per
batch. Indexing still goes through the memory layer's Indexer (`on_insert_many`).

Ids: kept as in the source, except an id another brain already uses (ids are global), which
gets a new one. With `remap_ids` every memory, link and history row gets a new id. Either way
references follow: links and history rows point at the ids their memories got, and so does
`superseded_by` (fixed up at the end, since a memory usually comes before its successor).

An active memory whose content (or fact key) an active memory of the brain already holds is
`duplicate_content` (or `fact_key_taken`): skipped, and for duplicates its links and history
attach to the memory that holds the content. Original timestamps and user ids are kept. A
memory that arrives without any history row gets one ADD row (detail `{"imported": true}`), so
no memory exists without history.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine

from core.embeddings.base import Embedder
from core.events import changelog
from core.identity.brains import ensure_brain
from core.kernel.config import Limits
from core.kernel.db.engine import sql, transaction
from core.kernel.errors import Forbidden, InvalidInput, MnemoError
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory import gate, validtime
from core.memory.indexing import IndexedMemory, document_text
from core.memory.models import NAME_CHARS, MemoryIn
from core.memory.store import check_limits
from core.retrieval import lexical
from core.retrieval.indexing import SearchIndexer
from core.transfer import format as fmt
from core.transfer.report import STRATEGIES, ImportReport, Strategy
from core.transfer.rows import (
    EVENTS,
    LINK_ORIGINS,
    RELATIONS,
    Known,
    Skip,
    active_fact,
    active_twin,
    memory_is_ours,
    memory_params,
    memory_row,
    owners,
    plain_row,
    text_or_none,
    write_tags,
)
from core.transfer.tables import TABLES, TableShape, shape_of, table_shape

__all__ = [
    "DEFAULT_BATCH",
    "STRATEGIES",
    "TABLES",
    "ImportReport",
    "ImportRun",
    "Strategy",
    "TableShape",
    "batches",
    "check_options",
    "clear_brain",
    "import_records",
    "resolve_scope",
    "table_shape",
]

log = logging.getLogger("mnemo.transfer")

# What a changelog row says of the import that wrote it: its id, then whatever its caller (a
# restore, a migration) adds; changelog payloads are JSON objects each event shapes its own way.
Provenance = dict[str, Any]

DEFAULT_BATCH = 1000


# -- entry points -------------------------------------------------------------------------


def check_options(strategy: str, scope: Scope) -> Strategy:
    if strategy not in STRATEGIES:
        raise InvalidInput(
            f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}",
            details={"field": "strategy"},
        )
    scope.require_write()
    if scope.user_id is not None:
        raise Forbidden(
            "importing and exporting a brain needs a brain-wide key, not a user-scoped one",
            code="brain_key_required",
        )
    if strategy == "replace":
        scope.require_owner()  # it empties the brain first
    return strategy


def resolve_scope(engine: Engine, target: Scope | str) -> Scope:
    """A Scope as given, or a brain slug (created if new) imported into with full rights."""
    if isinstance(target, Scope):
        return target
    with transaction(engine) as conn:
        brain = ensure_brain(conn, target)
    return Scope(brain_id=brain, principal="import", role="owner")


def import_records(
    engine: Engine,
    target: Scope | str,
    records: Iterable[dict[str, Any]],
    *,
    strategy: Strategy | str = "merge",
    remap_ids: bool = False,
    embedder: Embedder | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[ImportReport], None] | None = None,
    limits: Limits | None = None,
    gate: bool = False,
) -> ImportReport:
    """Import `records` (export-format dicts, the header line optional) into a brain: a Scope,
    or a brain slug created if new. `embedder` makes the memories' vectors (default: the
    configured one). `on_batch` is called after each committed batch (progress bars).
    `limits`, the API's content, tag and metadata limits (and its 256-character names), skip
    the memories over them (reason over_limit); None takes every memory as it is (a snapshot
    restores what was). `gate` screens each new active memory with the brain's write gate
    (core/memory/gate.py), as a save would be: a restatement of a memory already in reinforces
    it (skipped as `near_duplicate`, its history and links attached to that memory), an
    instruction or boilerplate is held in quarantine (skipped as `quarantined`)."""
    scope = resolve_scope(engine, target)
    chosen = check_options(str(strategy), scope)
    if embedder is None:
        embedder = _configured_embedder()
    run = ImportRun(
        scope,
        chosen,
        remap_ids=remap_ids,
        embedder=embedder,
        atomic=chosen == "replace",
        limits=limits,
        gate=gate,
    )
    chunks = batches(records, batch_size)
    if chosen == "replace":
        with transaction(engine) as conn:
            clear_brain(conn, scope)
            for batch in chunks:
                run.write(conn, batch)
                if on_batch is not None:
                    on_batch(run.report)
            run.finish(conn)
        return run.report
    for batch in chunks:
        run.prepare(batch)
        with transaction(engine) as conn:
            run.write(conn, batch)
        if on_batch is not None:
            on_batch(run.report)
    with transaction(engine) as conn:
        run.finish(conn)
    return run.report


def _configured_embedder() -> Embedder:
    from core.embeddings import get_embedder
    from core.kernel.config import get_settings

    return get_embedder(get_settings().embedder)


def batches(records: Iterable[fmt.Line], size: int) -> Iterator[list[fmt.Line]]:
    iterator = iter(records)
    while batch := list(islice(iterator, max(1, size))):
        yield batch


def clear_brain(conn: Connection, scope: Scope) -> dict[str, int]:
    """Empty the brain's data (memories and everything hanging off them, users, trust, policy),
    keeping the brain, its keys, members, snapshots and changelog. Counts what went."""
    params = {"brain": scope.brain_id}
    if conn.dialect.name == "sqlite":
        conn.execute(
            sql(
                "DELETE FROM memory_fts WHERE rowid IN "
                "(SELECT rowid FROM memories WHERE brain_id = :brain)"
            ),
            params,
        )
    counts: dict[str, int] = {}
    for kind, table in (
        ("link", "memory_links"),
        ("history", "memory_history"),
        ("vector", "memory_vectors"),
        ("tag", "memory_tags"),
        ("user", "users"),
        ("trust", TABLES["trust"]),
        ("policy", TABLES["policy"]),
    ):
        if kind in ("trust", "policy") and table_shape(conn, table) is None:
            continue
        result = conn.execute(sql(f"DELETE FROM {table} WHERE brain_id = :brain"), params)
        counts[kind] = result.rowcount
    # Tables other parts of the schema hang off memories with ON DELETE CASCADE follow.
    result = conn.execute(sql("DELETE FROM memories WHERE brain_id = :brain"), params)
    counts["memory"] = result.rowcount
    return counts


# -- the import itself --------------------------------------------------------------------


_NAMES = ("title", "key", "source", "user_id", "agent_id", "run_id")


def _dated_from(row: dict[str, Any]) -> int:
    """The moment an imported memory's relative dates ("yesterday") are read against: when it
    became valid, else happened, else was saved (core/memory/store.py does the same)."""
    for name in ("valid_from", "occurred_at", "created_at"):
        if isinstance(row.get(name), int):
            return int(row[name])
    return now_ms()


def _check_limits(row: dict[str, Any], limits: Limits) -> None:
    """What POST /v1/memories refuses, an import skips: no way around the API's limits."""
    try:
        check_limits(limits, content=row["content"], tags=row["tags"], metadata=row["metadata"])
    except MnemoError as error:
        raise Skip("over_limit", error.message) from None
    for name in _NAMES:
        value = row.get(name)
        if value is not None and len(value) > NAME_CHARS:
            message = f"{name} is {len(value)} characters; the limit is {NAME_CHARS}"
            raise Skip("over_limit", message)


class ImportRun:
    """The state of one import across its batches: the id map, the report, and the fix-ups
    that can only be made once every memory is in."""

    def __init__(
        self,
        scope: Scope,
        strategy: Strategy,
        *,
        remap_ids: bool,
        embedder: Embedder | None,
        atomic: bool = False,
        changelog_event: str = "brain.imported",
        changelog_payload: Provenance | None = None,
        changelog_entity: tuple[str, str] | None = None,
        changelog_label: str | None = None,
        limits: Limits | None = None,
        gate: bool = False,
    ) -> None:
        self.scope = scope
        self.limits = limits
        self.gate = gate
        # One transaction for the whole import: one changelog row, written by `finish`.
        self.atomic = atomic
        self.strategy = strategy
        self.remap_ids = remap_ids
        self.embedder = embedder
        self.report = ImportReport(scope.brain_id, strategy, remap_ids)
        self.changelog_event = changelog_event
        self.changelog_payload = changelog_payload or {}
        self.changelog_entity = changelog_entity or ("brain", scope.brain_id)
        self.changelog_label = changelog_label or f"Import ({strategy})"
        self.import_id = new_id()
        # Source memory id -> the id it has in this brain (imported, kept or its duplicate).
        self.memory_ids: dict[str, str] = {}
        # Memories inserted by this import that no history record has arrived for yet.
        self.without_history: set[str] = set()
        # (memory id in this brain, source id of its successor) to resolve at the end.
        self.successors: list[tuple[str, str]] = []
        self._indexer = SearchIndexer(embedder)
        self._prepared = False
        # (source id, row, insert parameters) of new memories not written yet.
        self._pending: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._history_queue: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._first = True

    # Embedding happens here, outside the batch's transaction.
    def prepare(self, batch: list[dict[str, Any]]) -> None:
        self._indexer = SearchIndexer(self.embedder)  # one per batch: it keeps what it embedded
        texts = []
        for line in batch:
            data = line.get("data")
            if line.get("kind") == "memory" and isinstance(data, dict):
                content = data.get("content")
                if isinstance(content, str) and content:
                    tags = data.get("tags")
                    texts.append(
                        document_text(
                            text_or_none(data.get("title")),
                            text_or_none(data.get("key")),
                            [t for t in tags if isinstance(t, str)]
                            if isinstance(tags, list)
                            else [],
                            content,
                        )
                    )
        if texts:
            self._indexer.prepare(texts)
        self._prepared = True

    def write(self, conn: Connection, batch: list[dict[str, Any]]) -> None:
        if not self._prepared:
            self.prepare(batch)  # atomic imports embed inside their one transaction
        known = Known(conn, self.scope.brain_id, batch)
        for line in batch:
            if line.get("kind") != "memory":
                self._flush(conn, known)  # what follows may refer to the memories queued
            self._line(conn, known, line)
        self._flush(conn, known)
        self._flush_history(conn)
        self.report.batches += 1
        if not self.atomic:
            self._log(conn)
        self._prepared = False

    def _line(self, conn: Connection, known: Known, line: dict[str, Any]) -> None:
        kind = line.get("kind")
        first, self._first = self._first, False
        if kind == fmt.FORMAT_KIND:
            if not first:
                raise InvalidInput(
                    "an export header must be the first line", code="malformed_export"
                )
            self.report.header = fmt.check_header(line)
            return
        if kind == fmt.END:
            self.report.complete = True
            return
        if kind not in fmt.RECORD_KINDS:
            raise InvalidInput(
                f"unknown record kind {kind!r}: expected one of {', '.join(fmt.RECORD_KINDS)}",
                code="malformed_export",
            )
        data = line.get("data")
        kinds = self.report.kinds[str(kind)]
        kinds.read += 1
        if not isinstance(data, dict):
            self.report.skip(str(kind), "invalid", None, "data must be an object")
            return
        try:
            handler = {
                "memory": self._memory,
                "history": self._history,
                "link": self._link,
            }.get(str(kind))
            if handler is not None:
                handler(conn, known, data)
            else:
                self._plain_row(conn, str(kind), data)
        except Skip as skip:
            record_id = data.get("id", data.get("user_id"))
            self.report.skip(str(kind), skip.reason, record_id, skip.message)

    # -- memories --

    def _memory(self, conn: Connection, known: Known, data: dict[str, Any]) -> None:
        shape = shape_of(conn, "memories")
        row = memory_row(shape, data)
        if self.limits is not None:
            _check_limits(row, self.limits)
        source_id = row["id"]
        target_id, existing = self._target_id(known.memories, source_id)
        row["id"] = target_id
        if source_id in self.memory_ids and not existing:  # queued or written already
            raise Skip("duplicate_id", "the same memory id twice in one import")
        successor = row.get("superseded_by")
        if successor is not None:
            mapped = self.memory_ids.get(successor)
            if mapped is None:
                self.successors.append((target_id, successor))
            row["superseded_by"] = mapped or successor
        if existing:
            self.memory_ids[source_id] = target_id
            if self.strategy == "skip_existing":
                raise Skip("exists")
            self._flush(conn, known)
            self._overwrite_memory(conn, shape, row)
            return
        if self.gate and row.get("state", "active") == "active":
            self._flush(conn, known)  # what the gate compares with must be in the table
            self._screen(conn, source_id, row)
        # Queued, and written with the memories around it in one executemany (`_flush`); the
        # map points at the new id now and is corrected if the row turns out to conflict.
        self.memory_ids[source_id] = target_id
        self._pending.append((source_id, row, memory_params(self.scope.brain_id, row)))

    def _screen(self, conn: Connection, source_id: str, row: dict[str, Any]) -> None:
        """The write gate's word on an imported memory (`gate`); raises Skip unless it is new."""
        tags = row.get("tags") or []
        data = MemoryIn.model_construct(
            content=row["content"],
            type=row.get("type") or "note",
            title=row.get("title"),
            key=row.get("key"),
            tags=list(tags) if isinstance(tags, list) else [],
            source=row.get("source"),
            user_id=row.get("user_id"),
            agent_id=row.get("agent_id"),
            run_id=row.get("run_id"),
            metadata=metadata if isinstance(metadata := row.get("metadata"), dict) else {},
            actor_id=None,
            role=None,
        )
        verdict = gate.screen(conn, self.scope, data, row.get("user_id"), self._indexer)
        if verdict.decision == "quarantined":
            raise Skip("quarantined", verdict.message)
        if verdict.stops and verdict.memory_id is not None:
            self.memory_ids[source_id] = verdict.memory_id  # its history and links go there
            raise Skip("near_duplicate", verdict.message)

    def _flush(self, conn: Connection, known: Known) -> None:
        """Insert the queued memories, their tags, full-text rows and vectors, a statement
        each for all of them; a row that hit a unique index is explained and skipped."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        brain = self.scope.brain_id
        shape = shape_of(conn, "memories")
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for _source, row, params in pending:
            names = (*(c for c in shape.columns if c in row), "content_hash")
            groups.setdefault(names, []).append(params)
        for names, rows in groups.items():
            conn.execute(
                sql(
                    f"INSERT INTO memories (brain_id, {', '.join(names)}) VALUES (:brain_id, "
                    f"{', '.join(':' + n for n in names)}) ON CONFLICT DO NOTHING"
                ),
                rows,
            )
        present = owners(conn, "memories", brain, [row["id"] for _s, row, _p in pending])
        inserted = []
        for source_id, row, params in pending:
            if present.get(row["id"]):
                inserted.append(row)
                known.memories[row["id"]] = True
                continue
            del self.memory_ids[source_id]
            try:
                self._explain_conflict(conn, source_id, row, params["content_hash"])
            except Skip as skip:
                self.report.skip("memory", skip.reason, source_id, skip.message)
        tag_rows = [
            {"m": row["id"], "t": tag, "b": brain, "at": row["created_at"]}
            for row in inserted
            for tag in dict.fromkeys(row["tags"])
        ]
        if tag_rows:
            with_time = "created_at" in shape_of(conn, "memory_tags").columns
            conn.execute(
                sql(
                    "INSERT INTO memory_tags (memory_id, tag, brain_id"
                    + (", created_at) VALUES (:m, :t, :b, :at)" if with_time else ") VALUES "
                       "(:m, :t, :b)")
                ),
                tag_rows,
            )  # fmt: skip
        # The dates their content names, as a write's (time-aware ranking reads them).
        validtime.index_dates_many(
            conn, brain, [(row["id"], row["content"], _dated_from(row)) for row in inserted]
        )
        self._indexer.on_insert_many(
            conn,
            brain,
            [
                IndexedMemory(
                    row["id"], row.get("user_id"), row.get("title"), row.get("key"),
                    row["tags"], row["content"],
                )
                for row in inserted
            ],
        )  # fmt: skip
        self.without_history.update(row["id"] for row in inserted)
        self.report.kinds["memory"].imported += len(inserted)

    def _target_id(self, known: dict[str, bool], source_id: str) -> tuple[str, bool]:
        """(the id the record gets here, whether this brain already has it)."""
        if self.remap_ids:
            self.report.remapped += 1
            return new_id(), False
        ours = known.get(source_id)
        if ours is None:
            return source_id, False
        if ours:
            return source_id, True
        self.report.remapped += 1  # taken by another brain: ids are global
        return new_id(), False

    def _explain_conflict(
        self, conn: Connection, source_id: str, row: dict[str, Any], digest: str
    ) -> NoReturn:
        twin = active_twin(conn, self.scope.brain_id, row, digest, exclude=None)
        if twin is not None:
            self.memory_ids[source_id] = twin
            raise Skip("duplicate_content", f"an active memory {twin} has the same content")
        if row["type"] == "fact":
            current = active_fact(conn, self.scope.brain_id, row, exclude=None)
            if current is not None:
                raise Skip("fact_key_taken", f"fact {row['key']!r} is held by {current}")
        raise Skip("conflict", "the row conflicts with one written meanwhile")

    def _overwrite_memory(self, conn: Connection, shape: TableShape, row: dict[str, Any]) -> None:
        brain = self.scope.brain_id
        current = (
            conn.execute(
                sql(
                    f"SELECT {', '.join(shape.columns)} FROM memories "
                    "WHERE brain_id = :brain AND id = :id"
                ),
                {"brain": brain, "id": row["id"]},
            )
            .mappings()
            .one()
        )
        before = memory_row(shape, dict(current))
        changed = sorted(c for c in shape.columns if c in row and before.get(c) != row[c])
        if not changed:
            raise Skip("unchanged")
        params = memory_params(brain, row)
        if row["state"] == "active":
            twin = active_twin(conn, brain, row, params["content_hash"], exclude=row["id"])
            if twin is not None:
                raise Skip("duplicate_content", f"an active memory {twin} has the same content")
            if row["type"] == "fact" and active_fact(conn, brain, row, exclude=row["id"]):
                raise Skip("fact_key_taken", f"fact {row['key']!r} has a current memory")
        names = [c for c in shape.columns if c != "id" and c in row] + ["content_hash"]
        conn.execute(
            sql(
                f"UPDATE memories SET {', '.join(f'{n} = :{n}' for n in names)} "
                "WHERE brain_id = :brain_id AND id = :id"
            ),
            params,
        )
        conn.execute(
            sql("DELETE FROM memory_tags WHERE brain_id = :brain AND memory_id = :id"),
            {"brain": brain, "id": row["id"]},
        )
        write_tags(conn, brain, row["id"], row["tags"], params["created_at"])
        validtime.index_dates(conn, brain, row["id"], row["content"], _dated_from(row), new=False)
        self._index(conn, row["id"], row, new=False)
        self._history_row(
            conn,
            {
                "id": new_id(),
                "memory_id": row["id"],
                "user_id": row.get("user_id"),
                "event": "UPDATE",
                "old_memory": current["content"],
                "new_memory": row["content"],
                "detail": json.dumps(
                    {"reason": self.changelog_event, "changed": changed, **self._provenance()}
                ),
                "actor_id": self.scope.principal,
                "role": None,
                "is_deleted": int(row["state"] == "deleted"),
                "created_at": now_ms(),
                "updated_at": None,
            },
        )
        self.report.kinds["memory"].updated += 1

    def _index(self, conn: Connection, memory_id: str, row: dict[str, Any], *, new: bool) -> None:
        brain = self.scope.brain_id
        if self.embedder is None:
            lexical.index(conn, brain, memory_id, new=new)
            return
        self._indexer.on_write(
            conn,
            brain,
            memory_id,
            title=row.get("title"),
            key=row.get("key"),
            tags=row["tags"],
            content=row["content"],
            new=new,
        )

    # -- history --

    def _history(self, conn: Connection, known: Known, data: dict[str, Any]) -> None:
        shape = shape_of(conn, "memory_history")
        row = plain_row(shape, data, required=("memory_id", "event"))
        if row["event"] not in EVENTS:
            raise Skip("invalid", f"event must be one of {', '.join(EVENTS)}")
        row["memory_id"] = self._memory_ref(conn, known, str(row["memory_id"]))
        row["detail"] = self._detail(row.get("detail"))
        row["is_deleted"] = int(bool(row.get("is_deleted") or 0))
        if row.get("created_at") is None:
            row["created_at"] = now_ms()
        source_id = row.get("id") or new_id()
        target_id, existing = self._target_id(known.history, str(source_id))
        if existing:
            raise Skip("exists")
        row["id"] = target_id
        known.history[target_id] = True
        self._history_row(conn, row)
        self.without_history.discard(row["memory_id"])
        self.report.kinds["history"].imported += 1

    def _detail(self, detail: Any) -> str | None:
        """A history row's detail, with the memory ids it names (supersedes, superseded_by...)
        pointing where those memories went."""
        if detail is None:
            return None
        if isinstance(detail, str):
            text = detail
            try:
                detail = json.loads(text)
            except ValueError:
                return text
        if isinstance(detail, dict) and self.memory_ids:
            detail = {k: self._follow(v) for k, v in detail.items()}
        return json.dumps(detail)

    def _follow(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.memory_ids.get(value, value)
        if isinstance(value, list):
            return [self.memory_ids.get(v, v) if isinstance(v, str) else v for v in value]
        return value

    def _history_row(self, conn: Connection, row: dict[str, Any]) -> None:
        """Queue a history row; `_flush_history` writes the batch's rows in one executemany
        per column set (nothing in an import reads them back before that)."""
        shape = shape_of(conn, "memory_history")
        names = tuple(c for c in shape.columns if c in row)
        values = {"brain_id": self.scope.brain_id, **{n: row[n] for n in names}}
        self._history_queue.setdefault(names, []).append(values)

    def _flush_history(self, conn: Connection) -> None:
        queued, self._history_queue = self._history_queue, {}
        for names, rows in queued.items():
            conn.execute(
                sql(
                    f"INSERT INTO memory_history (brain_id, {', '.join(names)}) VALUES "
                    f"(:brain_id, {', '.join(':' + n for n in names)})"
                ),
                rows,
            )

    def _memory_ref(self, conn: Connection, known: Known, source_id: str) -> str:
        mapped = self.memory_ids.get(source_id)
        if mapped is not None:
            return mapped
        if not self.remap_ids:
            ours = known.memories.get(source_id)
            if ours is None:
                ours = memory_is_ours(conn, self.scope.brain_id, source_id)
            if ours:
                return source_id
        raise Skip("missing_memory", f"memory {source_id} is not in this import nor the brain")

    # -- links --

    def _link(self, conn: Connection, known: Known, data: dict[str, Any]) -> None:
        shape = shape_of(conn, "memory_links")
        row = plain_row(shape, data, required=("from_id", "to_id", "relation"))
        if row["relation"] not in RELATIONS:
            raise Skip("invalid", f"relation must be one of {', '.join(RELATIONS)}")
        if row.get("origin") is not None and row["origin"] not in LINK_ORIGINS:
            raise Skip("invalid", f"origin must be one of {', '.join(LINK_ORIGINS)}")
        row["from_id"] = self._memory_ref(conn, known, str(row["from_id"]))
        row["to_id"] = self._memory_ref(conn, known, str(row["to_id"]))
        if row.get("created_at") is None:
            row["created_at"] = now_ms()
        if row.get("weight") is None:
            row["weight"] = 1.0
        source_id = row.get("id") or new_id()
        target_id, existing = self._target_id(known.links, str(source_id))
        row["id"] = target_id
        brain = self.scope.brain_id
        names = [c for c in shape.columns if c in row]
        if existing:
            if self.strategy == "skip_existing":
                raise Skip("exists")
            current = (
                conn.execute(
                    sql(
                        f"SELECT {', '.join(names)} FROM memory_links "
                        "WHERE brain_id = :brain AND id = :id"
                    ),
                    {"brain": brain, "id": target_id},
                )
                .mappings()
                .one()
            )
            if all(current[n] == row[n] for n in names):
                raise Skip("unchanged")
            conn.execute(
                sql("DELETE FROM memory_links WHERE brain_id = :brain AND id = :id"),
                {"brain": brain, "id": target_id},
            )
        inserted = conn.execute(
            sql(
                f"INSERT INTO memory_links (brain_id, {', '.join(names)}) VALUES (:brain_id, "
                f"{', '.join(':' + n for n in names)}) ON CONFLICT DO NOTHING"
            ),
            {"brain_id": brain, **{n: row[n] for n in names}},
        ).rowcount
        if not inserted:
            raise Skip("exists", "the brain has this link (same memories and relation)")
        known.links[target_id] = True
        if existing:
            self.report.kinds["link"].updated += 1
        else:
            self.report.kinds["link"].imported += 1

    # -- users, trust, policy: rows keyed by their primary key within the brain --

    def _plain_row(self, conn: Connection, kind: str, data: dict[str, Any]) -> None:
        if kind == "policy" and not self.scope.is_owner:
            # PUT /v1/policy is for owners; an import must not be the way around that.
            raise Skip("owner_only", "only an owner of this brain can import its policy")
        shape = table_shape(conn, TABLES[kind])
        if shape is None:
            raise Skip("unsupported", f"this database has no {TABLES[kind]} table")
        row = plain_row(shape, data, required=shape.key)
        if kind == "trust" and not 0 <= float(row.get("trust", 0)) <= 1:
            raise Skip("invalid", "trust must be between 0 and 1")
        now = now_ms()
        for stamp in ("created_at", "updated_at"):
            if stamp in shape.columns and row.get(stamp) is None:
                row[stamp] = row.get("created_at") or now
        brain = self.scope.brain_id
        where = " AND ".join(["brain_id = :brain_id", *(f"{k} = :{k}" for k in shape.key)])
        names = [c for c in shape.columns if c in row]
        params = {"brain_id": brain, **{n: row[n] for n in names}}
        current = (
            conn.execute(
                sql(f"SELECT {', '.join(shape.columns)} FROM {shape.name} WHERE {where}"), params
            )
            .mappings()
            .first()
        )
        report = self.report.kinds[kind]
        if current is not None:
            if self.strategy == "skip_existing":
                raise Skip("exists")
            changes = [n for n in names if n not in (*shape.key, "id") and current[n] != row[n]]
            if not changes:
                raise Skip("unchanged")
            conn.execute(
                sql(
                    f"UPDATE {shape.name} SET {', '.join(f'{n} = :{n}' for n in changes)} "
                    f"WHERE {where}"
                ),
                params,
            )
            report.updated += 1
            return
        if "id" in shape.columns and "id" not in shape.key:
            # A global id: kept when free, else (or when remapping) a new one.
            taken = (
                row.get("id") is None
                or conn.execute(
                    sql(f"SELECT 1 FROM {shape.name} WHERE id = :id"), {"id": row["id"]}
                ).first()
            )
            if self.remap_ids or taken:
                params["id"] = new_id()
                if "id" not in names:
                    names.append("id")
        conn.execute(
            sql(
                f"INSERT INTO {shape.name} (brain_id, {', '.join(names)}) VALUES (:brain_id, "
                f"{', '.join(':' + n for n in names)})"
            ),
            params,
        )
        report.imported += 1

    # -- the end --

    def finish(self, conn: Connection) -> None:
        """What needs every memory in: successors named by source id, history for memories
        that came without any, user rows for the users memories name."""
        brain = self.scope.brain_id
        for memory_id, successor in self.successors:
            mapped = self.memory_ids.get(successor)
            if mapped is not None and mapped != successor:
                conn.execute(
                    sql(
                        "UPDATE memories SET superseded_by = :successor "
                        "WHERE brain_id = :brain AND id = :id"
                    ),
                    {"successor": mapped, "brain": brain, "id": memory_id},
                )
        pending = sorted(self.without_history)
        detail = json.dumps({"imported": True, **self._provenance()})
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            names = {f"m{i}": memory_id for i, memory_id in enumerate(chunk)}
            rows = conn.execute(
                sql(
                    "SELECT id, user_id, content, state, created_at FROM memories "
                    f"WHERE brain_id = :brain AND id IN ({', '.join(':' + n for n in names)})"
                ),
                {"brain": brain, **names},
            ).all()
            for row in rows:
                self._history_row(
                    conn,
                    {
                        "id": new_id(),
                        "memory_id": row.id,
                        "user_id": row.user_id,
                        "event": "ADD",
                        "old_memory": None,
                        "new_memory": row.content,
                        "detail": detail,
                        "actor_id": self.scope.principal,
                        "role": None,
                        "is_deleted": 0,
                        "created_at": row.created_at,
                        "updated_at": None,
                    },
                )
        self.without_history.clear()
        self._flush_history(conn)
        # Users the memories name and no user record brought: first seen at their oldest memory.
        conn.execute(
            sql(
                "INSERT INTO users (brain_id, user_id, reflection_count, created_at, updated_at) "
                "SELECT brain_id, user_id, 0, min(created_at), max(created_at) FROM memories "
                "WHERE brain_id = :brain AND user_id IS NOT NULL GROUP BY brain_id, user_id "
                "ON CONFLICT (brain_id, user_id) DO NOTHING"
            ),
            {"brain": brain},
        )
        self._log(conn, final=True)

    def _provenance(self) -> Provenance:
        return {"import_id": self.import_id, **self.changelog_payload}

    def _log(self, conn: Connection, *, final: bool = False) -> None:
        report = self.report
        changelog.record(
            conn,
            self.scope,
            event_type=self.changelog_event,
            entity_type=self.changelog_entity[0],
            entity_id=self.changelog_entity[1],
            summary=(
                f"{self.changelog_label}: {report.imported} records added, "
                f"{report.updated} updated, {report.skipped} skipped" + ("" if final else " so far")
            ),
            payload={
                **self._provenance(),
                "strategy": self.strategy,
                "remap_ids": self.remap_ids,
                "batch": report.batches,
                "final": final,
                "imported": report.imported,
                "updated": report.updated,
                "skipped": report.skipped,
            },
        )


# -- helpers ------------------------------------------------------------------------------
