"""Full-text search: SQLite FTS5 with BM25, PostgreSQL tsvector with a GIN index.

Queries never reach the FTS syntax: they are cut into words, and each word goes in as a quoted
phrase (SQLite) or a bound lexeme (PostgreSQL), so quotes, operators and any Unicode are inert.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import Connection, text

from core.embeddings.text import STOPWORDS

# Field weights: a hit in the title or key counts most, tags next, content last.
WEIGHTS = {"title": 4.0, "key": 4.0, "tags": 2.0, "content": 1.0}
_MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(query: str) -> list[str]:
    """Distinct lower-case words of the query, stopwords dropped (unless nothing else is left)."""
    normal = unicodedata.normalize("NFKC", query).casefold()
    words = list(dict.fromkeys(_WORD.findall(normal)))
    kept = [w for w in words if w not in STOPWORDS]
    return (kept or words)[:_MAX_TERMS]


def _tags_text(column: str) -> str:
    return f"(SELECT coalesce(group_concat(value, ' '), '') FROM json_each({column}))"


def index(conn: Connection, brain_id: str, memory_id: str) -> None:
    """(Re)index one memory; SQLite only: PostgreSQL keeps its generated column in step."""
    if conn.dialect.name != "sqlite":
        return
    params = {"brain": brain_id, "id": memory_id}
    unindex(conn, brain_id, memory_id)
    conn.execute(
        text(
            "INSERT INTO memory_fts (rowid, title, key, tags, content) "
            "SELECT rowid, coalesce(title, ''), coalesce(key, ''), "
            f"{_tags_text('tags')}, content FROM memories WHERE brain_id = :brain AND id = :id"
        ),
        params,
    )


def unindex(conn: Connection, brain_id: str, memory_id: str) -> None:
    if conn.dialect.name != "sqlite":
        return
    conn.execute(
        text(
            "DELETE FROM memory_fts WHERE rowid = "
            "(SELECT rowid FROM memories WHERE brain_id = :brain AND id = :id)"
        ),
        {"brain": brain_id, "id": memory_id},
    )


def candidates(
    conn: Connection, terms: list[str], where: list[str], params: dict[str, Any], limit: int
) -> list[tuple[str, float]]:
    """(memory id, raw score) of the best `limit` matches; higher is better. `where` filters
    the memories (alias m) and `params` carries its values."""
    if not terms:
        return []
    params = {**params, "lex_limit": limit}
    if conn.dialect.name == "sqlite":
        params["lex_query"] = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        weights = ", ".join(str(w) for w in WEIGHTS.values())
        sql = (
            f"SELECT m.id, -bm25(memory_fts, {weights}) AS score FROM memory_fts "
            "JOIN memories m ON m.rowid = memory_fts.rowid "
            f"WHERE memory_fts MATCH :lex_query AND {' AND '.join(where)} "
            f"ORDER BY bm25(memory_fts, {weights}) LIMIT :lex_limit"
        )
    else:
        # Each word is a bound value turned into lexemes by the same 'english' configuration
        # the index uses; || ORs them, so no user text is ever parsed as tsquery syntax.
        names = [f"lex_{i}" for i in range(len(terms))]
        params.update(zip(names, terms, strict=True))
        tsquery = " || ".join(f"plainto_tsquery('english', :{n})" for n in names)
        sql = (
            "SELECT m.id, ts_rank(m.search_vector, q.query, 1) AS score "
            f"FROM memories m, (SELECT {tsquery} AS query) q "
            f"WHERE m.search_vector @@ q.query AND {' AND '.join(where)} "
            "ORDER BY score DESC, m.id LIMIT :lex_limit"
        )
    rows = conn.execute(text(sql), params).all()
    return [(str(r[0]), float(r[1])) for r in rows]
