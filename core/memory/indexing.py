"""What the memory layer needs from the search index, as a protocol.

Every write keeps the full-text rows and vectors in step inside the memory's own transaction,
and the write gate asks the index for near-duplicates. The index itself lives above this layer
(core/retrieval/indexing.py); the caller hands one in, so writing a memory loads no search code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection

from core.kernel.scope import Scope
from core.memory.models import CreatedFields, MemoryRecord

# A check that runs on a new memory in its own transaction (connection, scope, the memory as
# returned, its vector or None) and returns fields to add to the reply.
CreatedHook = Callable[[Connection, Scope, MemoryRecord, np.ndarray | None], CreatedFields]


def document_text(
    title: str | None, key: str | None, tags: Iterable[str] | str, content: str
) -> str:
    """What a memory's vector is made from: its title, key and tags carry meaning too."""
    if isinstance(tags, str):
        tags = json.loads(tags)
    parts = [title or "", key or "", " ".join(tags), content]
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Candidate:
    """A memory the write gate compares a new one with."""

    id: str
    user_id: str | None
    content: str
    importance: float
    key: str | None
    cosine: float | None


@dataclass(frozen=True)
class IndexedMemory:
    memory_id: str
    user_id: str | None
    title: str | None
    key: str | None
    tags: Sequence[str]
    content: str


class Indexer(Protocol):
    """Keeps the search index in step with memories; every method runs in the caller's
    transaction. `prepare` embeds texts before that transaction opens (a remote model may be
    slow), so the writes inside it only store what was prepared."""

    on_created: list[CreatedHook]
    # What the write gate read for each write before its transaction opened, by the write's
    # (brain, user, key, content): core/memory/gate.py `look_ahead`.
    foresight: dict[tuple[str, ...], Any]

    def prepare(self, texts: Sequence[str]) -> None: ...

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
        """(Re)index one memory; `located` is its (rowid, user_id) when the caller has them."""

    def created(self, conn: Connection, scope: Scope, memory: MemoryRecord) -> CreatedFields:
        """Run the installed `on_created` checks on a memory just created; the fields they
        add to the reply."""

    def on_insert_many(
        self, conn: Connection, brain_id: str, memories: Sequence[IndexedMemory]
    ) -> None:
        """Index many new memories at once (imports)."""

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
        """The write gate's near-duplicate candidates: at most `n` active memories of exactly
        this owner and fact key (any key with `any_key`: the search the gate shares with the
        contradiction check) that best match `content`, best first."""

    def cosines(self, docs: Sequence[str]) -> np.ndarray | None:
        """The cosine of each pair of these documents' vectors, a square matrix (embedded now
        if they were not prepared); None without an embedder. The write gate compares the
        writes of one batch with one another."""

    def on_state(self, conn: Connection, brain_id: str, memory_id: str) -> None:
        """A memory's state or owner changed: caches must see it."""

    def on_purge(self, conn: Connection, brain_id: str, memory_id: str) -> None:
        """A memory is about to be deleted for good: drop its index rows."""
