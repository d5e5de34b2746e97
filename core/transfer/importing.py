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
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, NoReturn

from sqlalchemy import Connection, Engine, inspect

from core import changelog
from core.brains import ensure_brain
from core.db.engine import sql, transaction
from core.embeddings.base import Embedder
from core.errors import Forbidden, InvalidInput
from core.ids import new_id, now_ms
from core.memories import content_hash, write_tags
from core.scope import Scope
from core.search import lexical
from core.search.indexing import IndexedMemory, Indexer, document_text
from core.transfer import format as fmt

log = logging.getLogger("mnemo.transfer")

Strategy = Literal["merge", "skip_existing", "replace"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "skip_existing", "replace")
DEFAULT_BATCH = 1000
_SAMPLES = 50

# The tables behind the record kinds other parts of the schema own; a kind whose table does
# not exist (yet) is skipped as `unsupported`, never an error.
TABLES: dict[str, str] = {
    "memory": "memories",
    "history": "memory_history",
    "link": "memory_links",
    "user": "users",
    # Source trust and brain policy (migration 9).
    "trust": "brain_source_trust",
    "policy": "brain_policies",
}
# Within a brain a row is found by these columns rather than its primary key (a trust row's
# id is global; its source_key is what it is about). brain_policies has one row per brain.
_NATURAL_KEYS: dict[str, tuple[str, ...]] = {"brain_source_trust": ("source_key",)}
# Never exported nor imported: derived from other columns, or the tenant itself.
_DERIVED = {"brain_id", "content_hash", "search_vector"}
MEMORY_FIELDS = (
    "id", "user_id", "agent_id", "run_id", "type", "title", "key", "content", "tags", "source",
    "confidence", "importance", "metadata", "state", "occurred_at", "created_at", "updated_at",
    "archived_at", "deleted_at", "access_count", "last_accessed_at", "superseded_by",
)  # fmt: skip
_TYPES = ("note", "fact", "journal")
_STATES = ("active", "archived", "deleted")
_EVENTS = ("ADD", "UPDATE", "DELETE", "ARCHIVE", "RESTORE")
_RELATIONS = ("related", "supports", "contradicts", "supersedes", "causes", "example_of")


# -- table shapes -------------------------------------------------------------------------


@dataclass(frozen=True)
class TableShape:
    name: str
    columns: tuple[str, ...]  # data columns (brain_id and derived ones left out)
    key: tuple[str, ...]  # primary key without brain_id
    timestamps: frozenset[str]


_shapes: dict[tuple[str, str], TableShape | None] = {}


def table_shape(conn: Connection, table: str) -> TableShape | None:
    """The table's columns as the database has them (None if it does not exist), so columns
    other parts of the schema add round-trip without this module knowing them."""
    cache_key = (str(conn.engine.url), table)
    if cache_key in _shapes:
        return _shapes[cache_key]
    inspector = inspect(conn)
    if not inspector.has_table(table):
        return None  # not cached: the migration that makes it may run later in this process
    described = inspector.get_columns(table)
    columns = tuple(c["name"] for c in described if c["name"] not in _DERIVED)
    key = _NATURAL_KEYS.get(table) or tuple(
        c for c in inspector.get_pk_constraint(table)["constrained_columns"] if c != "brain_id"
    )
    stamps = frozenset(
        c["name"]
        for c in described
        if c["name"].endswith("_at") and "INT" in str(c["type"]).upper()
    )
    shape = TableShape(table, columns, key, stamps)
    _shapes[cache_key] = shape
    return shape


# -- the report ---------------------------------------------------------------------------


@dataclass
class KindReport:
    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
        }


@dataclass
class ImportReport:
    brain_id: str
    strategy: Strategy
    remap_ids: bool
    kinds: dict[str, KindReport] = field(
        default_factory=lambda: {kind: KindReport() for kind in fmt.RECORD_KINDS}
    )
    remapped: int = 0
    batches: int = 0
    header: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    @property
    def read(self) -> int:
        return sum(k.read for k in self.kinds.values())

    @property
    def imported(self) -> int:
        return sum(k.imported for k in self.kinds.values())

    @property
    def updated(self) -> int:
        return sum(k.updated for k in self.kinds.values())

    @property
    def skipped(self) -> int:
        return sum(sum(k.skipped.values()) for k in self.kinds.values())

    def skip(self, kind: str, reason: str, record_id: Any, message: str | None = None) -> None:
        self.kinds[kind].skip(reason)
        if len(self.samples) < _SAMPLES:
            sample = {"kind": kind, "id": record_id, "reason": reason}
            if message:
                sample["message"] = message
            self.samples.append(sample)

    def to_dict(self) -> dict[str, Any]:
        return {
            "brain_id": self.brain_id,
            "strategy": self.strategy,
            "remap_ids": self.remap_ids,
            "read": self.read,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "remapped": self.remapped,
            "batches": self.batches,
            "complete": self.complete,
            "by_kind": {
                kind: report.to_dict() for kind, report in self.kinds.items() if report.read
            },
            "skipped_samples": self.samples,
        }


class _Skip(Exception):
    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


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
) -> ImportReport:
    """Import `records` (export-format dicts, the header line optional) into a brain: a Scope,
    or a brain slug created if new. `embedder` makes the memories' vectors (default: the
    configured one). `on_batch` is called after each committed batch (progress bars)."""
    scope = resolve_scope(engine, target)
    chosen = check_options(str(strategy), scope)
    if embedder is None:
        embedder = _configured_embedder()
    run = ImportRun(
        scope, chosen, remap_ids=remap_ids, embedder=embedder, atomic=chosen == "replace"
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
    from core.config import get_settings
    from core.embeddings import get_embedder

    return get_embedder(get_settings().embedder)


def batches(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
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
        changelog_payload: dict[str, Any] | None = None,
        changelog_entity: tuple[str, str] | None = None,
        changelog_label: str | None = None,
    ) -> None:
        self.scope = scope
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
        self._indexer = Indexer(embedder)
        self._prepared = False
        # (source id, row, insert parameters) of new memories not written yet.
        self._pending: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._history_queue: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._first = True

    # Embedding happens here, outside the batch's transaction.
    def prepare(self, batch: list[dict[str, Any]]) -> None:
        self._indexer = Indexer(self.embedder)  # one per batch: it keeps what it embedded
        texts = []
        for line in batch:
            data = line.get("data")
            if line.get("kind") == "memory" and isinstance(data, dict):
                content = data.get("content")
                if isinstance(content, str) and content:
                    tags = data.get("tags")
                    texts.append(
                        document_text(
                            _text_or_none(data.get("title")),
                            _text_or_none(data.get("key")),
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
        known = _Known(conn, self.scope.brain_id, batch)
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

    def _line(self, conn: Connection, known: _Known, line: dict[str, Any]) -> None:
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
        except _Skip as skip:
            record_id = data.get("id", data.get("user_id"))
            self.report.skip(str(kind), skip.reason, record_id, skip.message)

    # -- memories --

    def _memory(self, conn: Connection, known: _Known, data: dict[str, Any]) -> None:
        shape = _shape(conn, "memories")
        row = _memory_row(shape, data)
        source_id = row["id"]
        target_id, existing = self._target_id(known.memories, source_id)
        row["id"] = target_id
        if source_id in self.memory_ids and not existing:  # queued or written already
            raise _Skip("duplicate_id", "the same memory id twice in one import")
        successor = row.get("superseded_by")
        if successor is not None:
            mapped = self.memory_ids.get(successor)
            if mapped is None:
                self.successors.append((target_id, successor))
            row["superseded_by"] = mapped or successor
        if existing:
            self.memory_ids[source_id] = target_id
            if self.strategy == "skip_existing":
                raise _Skip("exists")
            self._flush(conn, known)
            self._overwrite_memory(conn, shape, row)
            return
        # Queued, and written with the memories around it in one executemany (`_flush`); the
        # map points at the new id now and is corrected if the row turns out to conflict.
        self.memory_ids[source_id] = target_id
        self._pending.append((source_id, row, _memory_params(self.scope.brain_id, row)))

    def _flush(self, conn: Connection, known: _Known) -> None:
        """Insert the queued memories, their tags, full-text rows and vectors, a statement
        each for all of them; a row that hit a unique index is explained and skipped."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        brain = self.scope.brain_id
        shape = _shape(conn, "memories")
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
        present = _owners(conn, "memories", brain, [row["id"] for _s, row, _p in pending])
        inserted = []
        for source_id, row, params in pending:
            if present.get(row["id"]):
                inserted.append(row)
                known.memories[row["id"]] = True
                continue
            del self.memory_ids[source_id]
            try:
                self._explain_conflict(conn, source_id, row, params["content_hash"])
            except _Skip as skip:
                self.report.skip("memory", skip.reason, source_id, skip.message)
        tag_rows = [
            {"m": row["id"], "t": tag, "b": brain, "at": row["created_at"]}
            for row in inserted
            for tag in dict.fromkeys(row["tags"])
        ]
        if tag_rows:
            with_time = "created_at" in _shape(conn, "memory_tags").columns
            conn.execute(
                sql(
                    "INSERT INTO memory_tags (memory_id, tag, brain_id"
                    + (", created_at) VALUES (:m, :t, :b, :at)" if with_time else ") VALUES "
                       "(:m, :t, :b)")
                ),
                tag_rows,
            )  # fmt: skip
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
        twin = _active_twin(conn, self.scope.brain_id, row, digest, exclude=None)
        if twin is not None:
            self.memory_ids[source_id] = twin
            raise _Skip("duplicate_content", f"an active memory {twin} has the same content")
        if row["type"] == "fact":
            current = _active_fact(conn, self.scope.brain_id, row, exclude=None)
            if current is not None:
                raise _Skip("fact_key_taken", f"fact {row['key']!r} is held by {current}")
        raise _Skip("conflict", "the row conflicts with one written meanwhile")

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
        before = _memory_row(shape, dict(current))
        changed = sorted(c for c in shape.columns if c in row and before.get(c) != row[c])
        if not changed:
            raise _Skip("unchanged")
        params = _memory_params(brain, row)
        if row["state"] == "active":
            twin = _active_twin(conn, brain, row, params["content_hash"], exclude=row["id"])
            if twin is not None:
                raise _Skip("duplicate_content", f"an active memory {twin} has the same content")
            if row["type"] == "fact" and _active_fact(conn, brain, row, exclude=row["id"]):
                raise _Skip("fact_key_taken", f"fact {row['key']!r} has a current memory")
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
        _write_tags(conn, brain, row["id"], row["tags"], params["created_at"])
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

    def _history(self, conn: Connection, known: _Known, data: dict[str, Any]) -> None:
        shape = _shape(conn, "memory_history")
        row = _plain(shape, data, required=("memory_id", "event"))
        if row["event"] not in _EVENTS:
            raise _Skip("invalid", f"event must be one of {', '.join(_EVENTS)}")
        row["memory_id"] = self._memory_ref(conn, known, str(row["memory_id"]))
        row["detail"] = self._detail(row.get("detail"))
        row["is_deleted"] = int(bool(row.get("is_deleted") or 0))
        if row.get("created_at") is None:
            row["created_at"] = now_ms()
        source_id = row.get("id") or new_id()
        target_id, existing = self._target_id(known.history, str(source_id))
        if existing:
            raise _Skip("exists")
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
        shape = _shape(conn, "memory_history")
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

    def _memory_ref(self, conn: Connection, known: _Known, source_id: str) -> str:
        mapped = self.memory_ids.get(source_id)
        if mapped is not None:
            return mapped
        if not self.remap_ids:
            ours = known.memories.get(source_id)
            if ours is None:
                ours = _memory_is_ours(conn, self.scope.brain_id, source_id)
            if ours:
                return source_id
        raise _Skip("missing_memory", f"memory {source_id} is not in this import nor the brain")

    # -- links --

    def _link(self, conn: Connection, known: _Known, data: dict[str, Any]) -> None:
        shape = _shape(conn, "memory_links")
        row = _plain(shape, data, required=("from_id", "to_id", "relation"))
        if row["relation"] not in _RELATIONS:
            raise _Skip("invalid", f"relation must be one of {', '.join(_RELATIONS)}")
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
                raise _Skip("exists")
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
                raise _Skip("unchanged")
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
            raise _Skip("exists", "the brain has this link (same memories and relation)")
        known.links[target_id] = True
        if existing:
            self.report.kinds["link"].updated += 1
        else:
            self.report.kinds["link"].imported += 1

    # -- users, trust, policy: rows keyed by their primary key within the brain --

    def _plain_row(self, conn: Connection, kind: str, data: dict[str, Any]) -> None:
        shape = table_shape(conn, TABLES[kind])
        if shape is None:
            raise _Skip("unsupported", f"this database has no {TABLES[kind]} table")
        row = _plain(shape, data, required=shape.key)
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
                raise _Skip("exists")
            changes = [n for n in names if n not in (*shape.key, "id") and current[n] != row[n]]
            if not changes:
                raise _Skip("unchanged")
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

    def _provenance(self) -> dict[str, Any]:
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


class _Known:
    """Which of a batch's ids exist already, and whether in this brain: one query per table
    per batch instead of one per record."""

    def __init__(self, conn: Connection, brain_id: str, batch: list[dict[str, Any]]) -> None:
        ids: dict[str, list[str]] = {"memory": [], "history": [], "link": []}
        for line in batch:
            data = line.get("data")
            kind = line.get("kind")
            if kind in ids and isinstance(data, dict):
                if isinstance(data.get("id"), str):
                    ids[str(kind)].append(data["id"])
                for ref in ("memory_id", "from_id", "to_id"):
                    if isinstance(data.get(ref), str):
                        ids["memory"].append(data[ref])
        self.memories = _owners(conn, "memories", brain_id, ids["memory"])
        self.history = _owners(conn, "memory_history", brain_id, ids["history"])
        self.links = _owners(conn, "memory_links", brain_id, ids["link"])


def _owners(conn: Connection, table: str, brain_id: str, ids: list[str]) -> dict[str, bool]:
    """id -> True if this brain has it, False if another brain does; absent ids left out."""
    found: dict[str, bool] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 900):
        chunk = unique[start : start + 900]
        names = {f"i{i}": value for i, value in enumerate(chunk)}
        rows = conn.execute(
            sql(
                f"SELECT id, CASE WHEN brain_id = :brain THEN 1 ELSE 0 END AS ours FROM {table} "
                f"WHERE id IN ({', '.join(':' + n for n in names)})"
            ),
            {"brain": brain_id, **names},
        ).all()
        found.update((str(r.id), bool(r.ours)) for r in rows)
    return found


def _memory_is_ours(conn: Connection, brain_id: str, memory_id: str) -> bool:
    row = conn.execute(
        sql("SELECT 1 FROM memories WHERE brain_id = :brain AND id = :id"),
        {"brain": brain_id, "id": memory_id},
    ).first()
    return row is not None


def _shape(conn: Connection, table: str) -> TableShape:
    shape = table_shape(conn, table)
    assert shape is not None, f"the {table} table is missing: run the migrations"
    return shape


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Skip("invalid", f"{name} must be a number")
    if not 0 <= value <= 1:
        raise _Skip("invalid", f"{name} must be between 0 and 1")
    return float(value)


def _stamp(value: Any, name: str) -> int | None:
    try:
        return fmt.to_ms(value, field=name)
    except InvalidInput as exc:
        raise _Skip("invalid", exc.message) from None


def _memory_row(shape: TableShape, data: dict[str, Any]) -> dict[str, Any]:
    """A memory record checked and completed with the defaults a new memory gets."""
    content = data.get("content")
    if not isinstance(content, str) or not content:
        raise _Skip("invalid", "content must be a non-empty string")
    # Columns a memory always has; columns the schema gained since are taken when present
    # and otherwise left to their database defaults.
    row: dict[str, Any] = {c: data.get(c) for c in MEMORY_FIELDS}
    row.update({c: data[c] for c in shape.columns if c not in MEMORY_FIELDS and c in data})
    row["id"] = str(data["id"]) if data.get("id") else new_id()
    row["type"] = data.get("type") or "note"
    if row["type"] not in _TYPES:
        raise _Skip("invalid", f"type must be one of {', '.join(_TYPES)}")
    row["state"] = data.get("state") or "active"
    if row["state"] not in _STATES:
        raise _Skip("invalid", f"state must be one of {', '.join(_STATES)}")
    if row["type"] == "fact" and not row.get("key"):
        raise _Skip("invalid", "a fact needs a key")
    tags = data.get("tags")
    if isinstance(tags, str):
        tags = json.loads(tags)
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _Skip("invalid", "tags must be a list of strings")
    row["tags"] = tags
    metadata = data.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _Skip("invalid", "metadata must be an object")
    row["metadata"] = metadata
    row["confidence"] = _number(data.get("confidence"), "confidence", 0.7)
    row["importance"] = _number(data.get("importance"), "importance", 0.5)
    count = data.get("access_count") or 0
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _Skip("invalid", "access_count must be a whole number >= 0")
    row["access_count"] = count
    for name in shape.timestamps:
        if name in row:
            row[name] = _stamp(row[name], name)
    if row.get("created_at") is None:
        row["created_at"] = now_ms()
    if row.get("updated_at") is None:
        row["updated_at"] = row["created_at"]
    return row


def _memory_params(brain_id: str, row: dict[str, Any]) -> dict[str, Any]:
    params = dict(row)
    params["brain_id"] = brain_id
    params["tags"] = json.dumps(row["tags"])
    params["metadata"] = json.dumps(row["metadata"])
    params["content_hash"] = content_hash(row["content"])
    return params


def _plain(shape: TableShape, data: dict[str, Any], *, required: Iterable[str]) -> dict[str, Any]:
    for name in required:
        if data.get(name) in (None, ""):
            raise _Skip("invalid", f"{name} is required")
    row = {c: data[c] for c in shape.columns if c in data}
    for name in shape.timestamps:
        if name in row:
            row[name] = _stamp(row[name], name)
    for name, value in row.items():
        if isinstance(value, dict | list):
            row[name] = json.dumps(value)
    return row


def _write_tags(
    conn: Connection, brain_id: str, memory_id: str, tags: list[str], created_at: int
) -> None:
    write_tags(conn, brain_id, memory_id, list(dict.fromkeys(tags)), created_at)


def _active_twin(
    conn: Connection, brain_id: str, row: dict[str, Any], digest: str, *, exclude: str | None
) -> str | None:
    found = conn.execute(
        sql(
            "SELECT id FROM memories WHERE brain_id = :brain AND coalesce(user_id, '') = :user "
            "AND coalesce(key, '') = :key AND content_hash = :hash AND state = 'active' "
            "AND id <> :exclude"
        ),
        {
            "brain": brain_id,
            "user": row.get("user_id") or "",
            "key": row.get("key") or "",
            "hash": digest,
            "exclude": exclude or "",
        },
    ).scalar()
    return None if found is None else str(found)


def _active_fact(
    conn: Connection, brain_id: str, row: dict[str, Any], *, exclude: str | None
) -> str | None:
    found = conn.execute(
        sql(
            "SELECT id FROM memories WHERE brain_id = :brain AND coalesce(user_id, '') = :user "
            "AND key = :key AND type = 'fact' AND state = 'active' AND id <> :exclude"
        ),
        {
            "brain": brain_id,
            "user": row.get("user_id") or "",
            "key": row.get("key") or "",
            "exclude": exclude or "",
        },
    ).scalar()
    return None if found is None else str(found)
