"""User summaries kept on the `users` row, and the brain digest.

A summary is made from the user's current memories (active, never superseded) and stored with
`summarized_at`, the time those memories were read. Memories the user saved after that are
what makes the summary due again: once `MNEMO_USER_SUMMARY_INTERVAL` of them exist it is
remade and `reflection_count` goes up by one.

Where the automatic refresh runs, and why not after the add's response:
  * On Lambda, Mangum runs the ASGI app to the end, Starlette BackgroundTasks included, before
    it hands the response back (mangum/protocols/http.py: `loop.run_until_complete` on the
    whole app, then the response is returned), and Lambda freezes the instance as soon as the
    handler returns. A task "after the response" would run before it, adding the summary's
    time to the add that crossed the interval (tests/api/test_summaries.py shows this).
  * So the MaintenanceFunction does it (`refresh_due`, from core/app/maintenance.py): off the
    request path, with its own 300 s timeout, batching every due user of every brain.
  * And reading a summary remakes it first when it is due (or was never made), because the
    schedule is hourly and `mnemo serve` has no schedule at all. That costs the reader one
    summary (a few milliseconds for a thousand memories), never the writer: saving a memory
    writes nothing for summaries, not even a counter.
Both paths write with a compare-and-set on `summarized_at`, so when they race one summary is
stored and `reflection_count` goes up once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, Row, text

from core.curation.conflicts import open_pairs
from core.curation.summaries import llm
from core.curation.summaries.extractive import F32, Candidate, Extract, extract, statement_text
from core.curation.summaries.models import DigestRecord, RefreshRecord, Source, UserSummaryRecord
from core.embeddings import BuiltinEmbedder, EmbeddingError, get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.errors import MnemoError, NotFound
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from core.memory import users, validtime
from core.memory.indexing import document_text
from core.memory.store import COLUMNS, to_dict

log = logging.getLogger("mnemo.summaries")

_MEMORY_COLUMNS = (
    "m.id, m.type, m.title, m.key, m.content, m.tags, m.importance, m.confidence, "
    "m.occurred_at, m.created_at, m.access_count"
)
# Users the maintenance run looks at per query while it walks every brain.
_SWEEP_BATCH = 200
# Best statements shown per theme in the digest.
_EXAMPLES = 3
# Unresolved conflicts a user summary lists, both sides of each.
_CONTESTED = 5


@dataclass(frozen=True)
class UserSummary:
    brain_id: str
    user_id: str
    summary: str | None
    source: str | None
    reflection_count: int
    summarized_at: int | None
    created_at: int
    updated_at: int
    new_memories: int  # saved since the summary (counted up to the refresh interval)
    refresh_interval: int

    def as_json(self) -> UserSummaryRecord:
        """The native API's shape: times as ISO 8601."""
        return {
            "user_id": self.user_id,
            "summary": self.summary,
            "source": cast(Source | None, self.source),
            "reflection_count": self.reflection_count,
            "new_memories": self.new_memories,
            "refresh_interval": self.refresh_interval,
            "summarized_at": iso(self.summarized_at),
            "created_at": iso(self.created_at) or "",
            "updated_at": iso(self.updated_at) or "",
        }


@dataclass(frozen=True)
class Made:
    """A summary made but not stored yet."""

    text: str
    source: str  # "extractive" or "llm"
    extract: Extract
    read_at: int


# --- reading ------------------------------------------------------------------------------------


def _user_row(conn: Connection, brain_id: str, user_id: str) -> Row[Any] | None:
    return conn.execute(
        text(
            "SELECT user_id, summary, summary_source, reflection_count, summarized_at, "
            "created_at, updated_at FROM users WHERE brain_id = :brain AND user_id = :user"
        ),
        {"brain": brain_id, "user": user_id},
    ).first()


def _new_memories(
    conn: Connection, brain_id: str, user_id: str, since: int | None, cap: int
) -> int:
    """Memories the user saved after `since`, counted no further than `cap` (the index on
    (brain_id, user_id, created_at) stops there)."""
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM memories WHERE brain_id = :brain "
                "AND user_id = :user AND created_at > :since LIMIT :cap) AS fresh"
            ),
            {
                "brain": brain_id,
                "user": user_id,
                "since": -1 if since is None else since,
                "cap": cap,
            },
        ).scalar_one()
    )


def _summary_of(row: Row[Any], brain_id: str, new_memories: int, interval: int) -> UserSummary:
    return UserSummary(
        brain_id=brain_id,
        user_id=row.user_id,
        summary=row.summary,
        source=row.summary_source,
        reflection_count=int(row.reflection_count),
        summarized_at=row.summarized_at,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
        new_memories=new_memories,
        refresh_interval=interval,
    )


def _current(conn: Connection, brain_id: str, user_id: str, interval: int) -> UserSummary | None:
    row = _user_row(conn, brain_id, user_id)
    if row is None:
        return None
    fresh = _new_memories(conn, brain_id, user_id, row.summarized_at, interval)
    return _summary_of(row, brain_id, fresh, interval)


def _candidates(
    conn: Connection,
    brain_id: str,
    user_id: str | None,
    model: str,
    limit: int,
    as_of: int | None = None,
    known_at: int | None = None,
) -> tuple[list[Candidate], list[str], list[bytes | None]]:
    """The newest `limit` current memories (of one user, or the whole brain), with the texts
    their vectors are made from and their stored vectors of `model` where there is one. With
    `as_of`, the memories valid then instead (a fact superseded since included); with
    `known_at`, the memories the store held then, as it held them (core/memory/validtime.py)."""
    params: dict[str, Any] = {"brain": brain_id, "model": model, "limit": limit}
    who = ""
    if user_id is not None:
        who = "AND m.user_id = :user "
        params["user"] = user_id
    clauses = ["m.state = 'active' AND m.superseded_by IS NULL"]
    if as_of is not None or known_at is not None:
        clauses = []
    if as_of is not None:
        clauses += validtime.as_of_sql(params, as_of, "m.")
        clauses.append("(m.superseded_by IS NULL OR m.valid_to IS NOT NULL)")
    if known_at is not None:
        clauses += validtime.known_at_sql(params, known_at, "m.")
    current = " AND ".join(clauses)
    rows = conn.execute(
        text(
            f"SELECT {_MEMORY_COLUMNS}, v.vector FROM memories m "
            "LEFT JOIN memory_vectors v ON v.memory_id = m.id AND v.model = :model "
            f"WHERE m.brain_id = :brain {who}AND {current} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT :limit"
        ),
        params,
    ).all()
    then = {}
    if known_at is not None:
        then = validtime.contents_then(conn, brain_id, [row.id for row in rows], known_at)
    candidates, documents, blobs = [], [], []
    for row in rows:
        tags = json.loads(row.tags)
        content, vector = row.content, row.vector
        if row.id in then and then[row.id][0] != content:
            # Changed since: its stored vector is of the later text, so it is embedded again.
            content, vector = then[row.id][0], None
        candidates.append(
            Candidate(
                id=row.id,
                content=content,
                type=row.type,
                tags=tuple(tags),
                importance=float(row.importance),
                confidence=float(row.confidence),
                when=int(row.occurred_at if row.occurred_at is not None else row.created_at),
                access_count=int(row.access_count),
            )
        )
        documents.append(document_text(row.title, row.key, tags, content))
        blobs.append(None if vector is None else bytes(vector))
    return candidates, documents, blobs


def _vectors(settings: Settings, documents: list[str], blobs: list[bytes | None]) -> F32:
    """One unit vector per memory: the stored ones, the missing ones embedded now. Should the
    embedder fail, every memory is embedded with the builtin embedder instead, so the vectors
    compared are always of one model."""
    if not documents:
        return np.zeros((0, 1), dtype=np.float32)
    stored = [b for b in blobs if b is not None]
    dims = len(stored[0]) // 4 if stored else 0
    missing = [i for i, b in enumerate(blobs) if b is None or len(b) != dims * 4]
    try:
        if not missing:
            return np.stack([np.frombuffer(b, dtype=np.float32) for b in stored])
        embedder = get_embedder(settings.embedder)
        made = embedder.embed([documents[i] for i in missing])
        if stored and made.shape[1] != dims:
            raise EmbeddingError("stored vectors and the embedder disagree on dims")
        out = np.zeros((len(documents), made.shape[1]), dtype=np.float32)
        out[missing] = made
        skip = set(missing)
        for i, blob in enumerate(blobs):
            if i not in skip and blob is not None:
                out[i] = np.frombuffer(blob, dtype=np.float32)
        return out
    except MnemoError as error:
        log.warning("summary vectors: %s; using the builtin embedder", error.message)
        builtin = BuiltinEmbedder(settings.embedder.builtin_dims)
        return builtin.embed(documents)


def _make(
    settings: Settings,
    candidates: list[Candidate],
    vectors: F32,
    read_at: int,
    max_tokens: int,
    contested: list[tuple[str, str]] | None = None,
) -> Made:
    """The extractive summary, or the LLM's when one is configured and answers; either way
    followed by the unresolved conflicts, both sides of each."""
    found = extract(candidates, vectors, max_tokens)
    model = llm.chat_model(settings.summaries)
    made = Made(found.text, "extractive", found, read_at)
    if model is not None and found.themes:
        try:
            made = Made(llm.summarise(model, found, max_tokens), "llm", found, read_at)
        except Exception as error:  # any failure of the model leaves the extractive summary
            log.warning("summary LLM %s failed, extractive summary kept: %s", model.name, error)
    if not contested:
        return made
    return Made(_with_contested(made.text, contested), made.source, found, read_at)


def _with_contested(summary: str, contested: list[tuple[str, str]]) -> str:
    """Until a conflict is resolved a summary shows both sides, marked, never one alone."""
    sides = "; ".join(f'"{statement_text(a)}" against "{statement_text(b)}"' for a, b in contested)
    line = f"Contested (unresolved, both kept): {sides}"
    return f"{summary}\n{line}" if summary else line


def make_user_summary(
    engine: Engine,
    settings: Settings,
    brain_id: str,
    user_id: str,
    as_of: int | None = None,
    known_at: int | None = None,
) -> Made:
    """Read the user's memories (one short read transaction), then summarise them outside it:
    embedding a missing vector or asking an LLM may take a network round trip."""
    s = settings.summaries
    model = get_embedder(settings.embedder).name
    with transaction(engine, write=False) as conn:
        read_at = now_ms()
        candidates, documents, blobs = _candidates(
            conn, brain_id, user_id, model, s.max_memories, as_of, known_at
        )
        contested = open_pairs(
            conn, brain_id, user_id, limit=_CONTESTED, as_of=as_of, known_at=known_at
        )
    vectors = _vectors(settings, documents, blobs)
    return _make(settings, candidates, vectors, read_at, s.max_tokens, contested)


# --- writing ------------------------------------------------------------------------------------

_ANY = object()


def _store(
    conn: Connection, brain_id: str, user_id: str, made: Made, expected: object = _ANY
) -> bool:
    """Save the summary; with `expected`, only if the stored one is still the one replaced
    (its summarized_at), so two refreshes racing store one summary and count one reflection."""
    return users.store_summary(
        conn,
        brain_id,
        user_id,
        summary=made.text,
        source=made.source,
        read_at=made.read_at,
        guard=expected is not _ANY,
        expected=expected if isinstance(expected, int) else None,
    )


# --- the API ------------------------------------------------------------------------------------


def _check_user(scope: Scope, user_id: str) -> None:
    if scope.user_id is not None and scope.user_id != user_id:
        # A key scoped to another user learns nothing, not even that this user exists.
        raise NotFound(f"no user {user_id!r}", code="user_not_found")


def _load(engine: Engine, scope: Scope, user_id: str, interval: int) -> UserSummary:
    _check_user(scope, user_id)
    with transaction(engine, write=False) as conn:
        found = _current(conn, scope.brain_id, user_id, interval)
    if found is None:
        raise NotFound(f"no user {user_id!r}", code="user_not_found")
    return found


def get_user_summary(engine: Engine, settings: Settings, scope: Scope, user_id: str) -> UserSummary:
    """The user's summary, remade first when it is due or was never made."""
    interval = settings.summaries.user_interval
    found = _load(engine, scope, user_id, interval)
    if found.summarized_at is not None and found.new_memories < interval:
        return found
    return _refresh(engine, settings, scope.brain_id, user_id, expected=found.summarized_at)


def user_summary_then(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    user_id: str,
    *,
    as_of: int | None = None,
    known_at: int | None = None,
) -> UserSummaryRecord:
    """A summary of the past, made on demand and never stored (the stored summary is of the
    present): with `as_of`, of what was true of the user then (the memories valid then); with
    `known_at`, of what the store held about the user then (audit: "what did the agent know?"),
    each memory as it read at that moment; with both, of what the store held then that was
    true at `as_of`."""
    found = _load(engine, scope, user_id, settings.summaries.user_interval)
    made = make_user_summary(engine, settings, scope.brain_id, user_id, as_of, known_at)
    out = cast(
        UserSummaryRecord,
        {**found.as_json(), "summary": made.text, "source": cast(Source, made.source)},
    )
    if as_of is not None:
        out["as_of"] = iso(as_of)
    if known_at is not None:
        out["known_at"] = iso(known_at)
    return out


def regenerate_user_summary(
    engine: Engine, settings: Settings, scope: Scope, user_id: str
) -> UserSummary:
    """Remake the summary now, due or not."""
    interval = settings.summaries.user_interval
    _load(engine, scope, user_id, interval)
    return _refresh(engine, settings, scope.brain_id, user_id, expected=_ANY)


def _refresh(
    engine: Engine, settings: Settings, brain_id: str, user_id: str, *, expected: object
) -> UserSummary:
    made = make_user_summary(engine, settings, brain_id, user_id)
    interval = settings.summaries.user_interval
    with transaction(engine, write=True) as conn:
        _store(conn, brain_id, user_id, made, expected)
        # Stored or beaten to it by a concurrent refresh: either way, what is there now.
        current = _current(conn, brain_id, user_id, interval)
    if current is None:
        raise NotFound(f"no user {user_id!r}", code="user_not_found")
    return current


def refresh_due(
    engine: Engine, settings: Settings, *, budget_seconds: float = 120.0
) -> RefreshRecord:
    """The maintenance task: remake the summary of every user, in every brain, who saved
    `user_interval` memories since their last one. Stops starting new users after
    `budget_seconds`; the next run carries on."""
    interval = settings.summaries.user_interval
    deadline = time.monotonic() + budget_seconds
    counts: RefreshRecord = {
        "due": 0,
        "refreshed": 0,
        "raced": 0,
        "failed": 0,
        "llm": 0,
        "complete": False,
    }
    after = ("", "")
    while time.monotonic() < deadline:
        with transaction(engine, write=False) as conn:
            rows = conn.execute(
                text(
                    "SELECT u.brain_id, u.user_id, u.summarized_at FROM users u "
                    "WHERE (u.brain_id > :b OR (u.brain_id = :b AND u.user_id > :u)) AND ("
                    "SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.brain_id = u.brain_id "
                    "AND m.user_id = u.user_id AND m.created_at > coalesce(u.summarized_at, -1) "
                    "LIMIT :interval) AS fresh) >= :interval "
                    "ORDER BY u.brain_id, u.user_id LIMIT :batch"
                ),
                {"b": after[0], "u": after[1], "interval": interval, "batch": _SWEEP_BATCH},
            ).all()
        for brain_id, user_id, summarized_at in rows:
            if time.monotonic() >= deadline:
                return counts
            after = (brain_id, user_id)
            counts["due"] += 1
            try:
                made = make_user_summary(engine, settings, brain_id, user_id)
                with transaction(engine, write=True) as conn:
                    stored = _store(conn, brain_id, user_id, made, summarized_at)
            except Exception:  # one user's failure must not stop the others'
                log.exception("summary refresh failed for a user of brain %s", brain_id)
                counts["failed"] += 1
                continue
            if stored:
                counts["refreshed"] += 1
            else:
                counts["raced"] += 1
            counts["llm"] += made.source == "llm"
        if len(rows) < _SWEEP_BATCH:
            counts["complete"] = True
            break
    return counts


def digest(
    engine: Engine, settings: Settings, scope: Scope, *, max_tokens: int, important: int
) -> DigestRecord:
    """The brain's main themes and most important memories (only a user's, for a key scoped
    to one user). Made on each call, never stored."""
    s = settings.summaries
    model = get_embedder(settings.embedder).name
    with transaction(engine, write=False) as conn:
        read_at = now_ms()
        candidates, documents, blobs = _candidates(
            conn, scope.brain_id, scope.user_id, model, s.max_memories
        )
        params: dict[str, Any] = {"brain": scope.brain_id, "n": important}
        who = ""
        if scope.user_id is not None:
            who = " AND user_id = :user"
            params["user"] = scope.user_id
        total = conn.execute(
            text(
                f"SELECT count(*) FROM memories WHERE brain_id = :brain{who} AND state = 'active'"
            ),
            params,
        ).scalar_one()
        top = conn.execute(
            text(
                f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain{who} "
                "AND state = 'active' ORDER BY importance DESC, access_count DESC, "
                "created_at DESC, id DESC LIMIT :n"
            ),
            params,
        ).all()
    vectors = _vectors(settings, documents, blobs)
    made = _make(settings, candidates, vectors, read_at, max_tokens)
    return {
        "summary": made.text,
        "source": cast(Source, made.source),
        "memory_count": int(total),
        "considered": made.extract.considered,
        "themes": [
            {
                "label": theme.label,
                "memory_count": theme.memory_count,
                "examples": [{"id": st.id, "text": st.text} for st in theme.ranked[:_EXAMPLES]],
            }
            for theme in made.extract.themes
        ],
        "important": [to_dict(row) for row in top],
    }
