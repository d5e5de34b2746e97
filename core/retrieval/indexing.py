"""Keeps the search index in step with memories, inside the memory's own transaction.

The memory layer asks for this through `core.memory.indexing.Indexer` (a protocol) and never
imports it: whoever runs a write (core/app, transfer, a benchmark) builds a `SearchIndexer`.

Embedding may call a remote model, so `prepare` embeds a request's texts before the
transaction opens; `on_write` then only stores what was prepared (embedding inline only what
was not, which is cheap for the builtin embedder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.embeddings.base import Embedder
from core.kernel.scope import Scope
from core.memory.indexing import Candidate, CreatedHook, IndexedMemory, document_text
from core.memory.models import CreatedFields, MemoryRecord
from core.retrieval import lexical, restatements, vectors


class SearchIndexer:
    """The full-text rows and vectors of memories, written in the memory's transaction."""

    def __init__(self, embedder: Embedder | None) -> None:
        self.embedder = embedder
        self._prepared: dict[str, np.ndarray] = {}
        # Checks of the layers above on every new memory (inferred links, contradictions caught
        # on write: core/app/remember.py), installed by whoever builds the indexer, so the
        # memory layer imports none of them.
        self.on_created: list[CreatedHook] = []
        self._new_vectors: dict[str, np.ndarray] = {}
        self.foresight: dict[tuple[str, ...], Any] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        if self.embedder is None:
            return
        todo = [t for t in dict.fromkeys(texts) if t not in self._prepared]
        if todo:
            for t, v in zip(todo, self.embedder.embed(todo), strict=True):
                self._prepared[t] = v

    def on_write(
        self,
        conn: Connection,
        brain_id: str,
        memory_id: str,
        *,
        title: str | None,
        key: str | None,
        tags: Iterable[str] | str,
        content: str,
        new: bool = False,
        located: tuple[int, str | None] | None = None,
    ) -> None:
        lexical.index(conn, brain_id, memory_id, new=new, located=located)
        if self.embedder is None:
            return
        doc = document_text(title, key, tags, content)
        if doc not in self._prepared:
            self.prepare([doc])
        vectors.store(conn, brain_id, memory_id, self.embedder.name, self._prepared[doc])
        if self.on_created and new:
            self._new_vectors[memory_id] = self._prepared[doc]

    def created(self, conn: Connection, scope: Scope, memory: MemoryRecord) -> CreatedFields:
        """Run the installed checks on a memory just created; the fields they add."""
        extra: CreatedFields = {}
        vector = self._new_vectors.pop(memory["id"], None)
        for hook in self.on_created:
            extra.update(hook(conn, scope, memory, vector))
        return extra

    def on_insert_many(
        self, conn: Connection, brain_id: str, memories: Sequence[IndexedMemory]
    ) -> None:
        """Index many new memories at once (imports): one statement for the full-text rows,
        one for the vectors, the texts embedded in one call unless prepared already."""
        lexical.index_new(conn, brain_id, [(m.memory_id, m.user_id) for m in memories])
        if self.embedder is None or not memories:
            return
        docs = [document_text(m.title, m.key, m.tags, m.content) for m in memories]
        self.prepare(docs)
        vectors.store_many(
            conn,
            brain_id,
            self.embedder.name,
            [(m.memory_id, self._prepared[doc]) for m, doc in zip(memories, docs, strict=True)],
        )

    def similar(
        self,
        conn: Connection,
        brain_id: str,
        user_id: str | None,
        *,
        content: str,
        key: str | None,
        doc: str,
        n: int,
        any_key: bool = False,
    ) -> list[Candidate]:
        """The write gate's near-duplicate candidates: active memories of exactly this owner
        and fact key (or any key) whose words best match `content` (full-text, best first),
        each with the cosine of its vector and the document's (None without one).

        Words, not a scan of every vector: a restatement shares most of its words with what
        it restates (core/memory/gate.py asks for that), so the full-text index finds it at a
        cost that does not grow with the owner's memories, where a matrix product over them
        would (10,000 vectors of 512 floats are 20 MB read per write)."""
        params: dict[str, object] = {"brain": brain_id}
        where = ["m.brain_id = :brain", "m.state = 'active'"]
        if not any_key:
            where.append("coalesce(m.key, '') = :gate_key")
            params["gate_key"] = key or ""
        if user_id is None:
            where.append("m.user_id IS NULL")
        else:
            where.append("m.user_id = :gate_user")
            params["gate_user"] = user_id
        columns = "m.id AS id, m.user_id, m.content, m.importance, m.key"
        late = ""
        if self.embedder is not None:
            # The candidates' vectors in the same statement: a round trip fewer on PostgreSQL.
            late = (
                "(SELECT v.vector FROM memory_vectors v "
                "WHERE v.memory_id = x.id AND v.model = :gate_model)"
            )
            params["gate_model"] = self.embedder.name
        found = restatements.restatement_candidates(
            conn, content, where, params, n, brain_id=brain_id, user_id=user_id,
            columns=columns, late=late,
        )  # fmt: skip
        if not found or self.embedder is None:
            return [_candidate(row, None) for row in found]
        if doc not in self._prepared:
            self.prepare([doc])
        mine = np.asarray(self._prepared[doc], dtype=np.float32)
        stored = {
            str(row[1]): np.frombuffer(row[6], dtype=np.float32)
            for row in found
            if row[6] is not None
        }
        cosines = _cosines(mine, [stored[row[1]] for row in found if row[1] in stored])
        return [_candidate(row, next(cosines) if row[1] in stored else None) for row in found]

    def cosines(self, docs: Sequence[str]) -> np.ndarray | None:
        if self.embedder is None:
            return None
        self.prepare(docs)
        matrix = np.vstack([np.asarray(self._prepared[d], dtype=np.float32) for d in docs])
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        unit = matrix / norms[:, None]
        return np.asarray(unit @ unit.T)

    def on_state(self, conn: Connection, brain_id: str, memory_id: str) -> None:
        vectors.touch(conn, brain_id, memory_id)

    def on_purge(self, conn: Connection, brain_id: str, memory_id: str) -> None:
        lexical.unindex(conn, brain_id, memory_id)


def _candidate(row: Sequence[Any], cosine: float | None) -> Candidate:
    """(score, id, user_id, content, importance, key, ...) as a Candidate."""
    return Candidate(str(row[1]), row[2], str(row[3]), float(row[4]), row[5], cosine)


def _cosines(a: np.ndarray, rows: list[np.ndarray]) -> Iterator[float]:
    """The cosine of `a` with each of `rows` (a few rows of one model). One dot product per
    row: stacking them into a matrix for one product cost 3x more for the gate's 3-8 rows
    (80 against 30 microseconds a write, in bench.gate's adds)."""
    if not rows:
        return iter(())
    norm = math.sqrt(float(np.dot(a, a)))
    out: list[float] = []
    for row in rows:
        n = math.sqrt(float(np.dot(row, row))) * norm
        out.append(float(np.dot(row, a)) / n if n else 0.0)
    return iter(out)
