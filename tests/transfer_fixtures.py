"""A brain with something of everything (for export, import and snapshot tests), and a dump of
a brain's rows to compare two brains field by field."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

from core.embeddings import BuiltinEmbedder
from core.kernel.config import Limits
from core.kernel.db.engine import transaction
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.models import MemoryIn, MemoryPatch
from core.retrieval.indexing import SearchIndexer

EMBEDDER = BuiltinEmbedder(64)
LIMITS = Limits()


def owner_scope(engine: Engine, slug: str) -> Scope:
    with transaction(engine, write=False) as conn:
        brain = conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar()
    return Scope(brain_id=str(brain), principal="test-owner", role="owner")


def add(engine: Engine, scope: Scope, **fields: Any) -> dict[str, Any]:
    with transaction(engine) as conn:
        return memories.create(conn, scope, MemoryIn(**fields), LIMITS, SearchIndexer(EMBEDDER))


def fill(engine: Engine, scope: Scope) -> dict[str, str]:
    """Notes, a superseded fact (with its link), an edited, an archived and a deleted memory,
    a manual link, two users (one with a summary), source trust and a policy. Returns ids."""
    tea = add(
        engine,
        scope,
        content="Alice prefers green tea in the morning",
        user_id="alice",
        tags=["drinks", "morning"],
        metadata={"mood": "calm", "n": 3, "nested": {"a": [1, 2]}},
        source="chat",
        confidence=0.9,
        importance=0.8,
        agent_id="agent-7",
        run_id="run-1",
        title="Tea",
        occurred_at="2026-03-01T10:00:00.123Z",
    )
    lyon = add(engine, scope, type="fact", key="home city", content="Alice lives in Lyon",
               user_id="alice")  # fmt: skip
    paris = add(engine, scope, type="fact", key="home city", content="Alice lives in Paris",
                user_id="alice")  # fmt: skip
    # Names a date: its memory_dates rows must come through a transfer as a write makes them.
    journal = add(engine, scope, type="journal", content="Shipped billing v2 last Friday",
                  user_id="bob")  # fmt: skip
    edited = add(engine, scope, content="Bob likes jazz", user_id="bob")
    archived = add(engine, scope, content="An old plan about the garden")
    deleted = add(engine, scope, content="A mistaken note")
    index = SearchIndexer(EMBEDDER)
    with transaction(engine) as conn:
        memories.update(
            conn,
            scope,
            edited["id"],
            MemoryPatch(content="Bob loves jazz and blues", tags=["music"]),
            LIMITS,
            index,
        )
        memories.set_state(conn, scope, archived["id"], "archived", index)
        memories.set_state(conn, scope, deleted["id"], "deleted", index)
        now = now_ms()
        conn.execute(
            text(
                "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, label, weight, "
                "created_at) VALUES (:id, :brain, :a, :b, 'supports', 'same person', 0.5, :now)"
            ),
            {"id": new_id(), "brain": scope.brain_id, "a": tea["id"], "b": paris["id"], "now": now},
        )
        conn.execute(
            text(
                "UPDATE users SET summary = 'Alice: tea, Paris', reflection_count = 2, "
                "summarized_at = :now, summary_source = 'extractive' "
                "WHERE brain_id = :brain AND user_id = 'alice'"
            ),
            {"brain": scope.brain_id, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO brain_source_trust (id, brain_id, source_key, trust, notes, "
                "created_at, updated_at) VALUES (:id, :brain, 'chat', 0.8, 'mostly right', "
                ":now, :now)"
            ),
            {"id": new_id(), "brain": scope.brain_id, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
                "VALUES (:brain, :policy, :now, :now)"
            ),
            {"brain": scope.brain_id, "policy": json.dumps({"snapshot_retention": 5}), "now": now},
        )
    return {
        "tea": tea["id"],
        "lyon": lyon["id"],
        "paris": paris["id"],
        "journal": journal["id"],
        "edited": edited["id"],
        "archived": archived["id"],
        "deleted": deleted["id"],
    }


_TABLES = {
    "memories": "created_at, content",
    "memory_history": "memory_id, created_at, id",
    "memory_links": "from_id, to_id, relation",
    "users": "user_id",
    "brain_source_trust": "source_key",
    "brain_policies": "brain_id",
}


def dump(engine: Engine, brain_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the brain's data tables, brain_id left out, in a stable order."""
    out: dict[str, list[dict[str, Any]]] = {}
    with transaction(engine, write=False) as conn:
        for table, order in _TABLES.items():
            rows = conn.execute(
                text(f"SELECT * FROM {table} WHERE brain_id = :b ORDER BY {order}"),
                {"b": brain_id},
            ).mappings()
            out[table] = [
                {k: v for k, v in row.items() if k not in ("brain_id", "search_vector")}
                for row in rows
            ]
        out["memory_tags"] = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT memory_id, tag FROM memory_tags WHERE brain_id = :b "
                    "ORDER BY memory_id, tag"
                ),
                {"b": brain_id},
            ).mappings()
        ]
        out["memory_dates"] = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT memory_id, starts_at, ends_at, phrase FROM memory_dates "
                    "WHERE brain_id = :b ORDER BY memory_id, starts_at, phrase"
                ),
                {"b": brain_id},
            ).mappings()
        ]
        out["vectors"] = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT memory_id, model, dims, vector FROM memory_vectors "
                    "WHERE brain_id = :b ORDER BY memory_id"
                ),
                {"b": brain_id},
            ).mappings()
        ]
    return out


def canonical(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The dump with every id replaced by the position of its memory (by creation), and history
    and link ids dropped: what must match when ids were remapped."""
    position = {m["id"]: f"m{i}" for i, m in enumerate(rows["memories"])}

    def swap(value: Any) -> Any:
        return position.get(value, value) if isinstance(value, str) else value

    out: dict[str, list[dict[str, Any]]] = {}
    for table, table_rows in rows.items():
        cleaned = []
        for row in table_rows:
            row = {k: swap(v) for k, v in row.items()}
            if table in ("memory_history", "memory_links", "brain_source_trust"):
                row.pop("id", None)
            if table == "memory_history" and row.get("detail"):
                detail = json.loads(row["detail"])
                row["detail"] = {k: swap(v) for k, v in detail.items()}
            cleaned.append(row)
        out[table] = sorted(cleaned, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out
