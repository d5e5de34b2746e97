"""Versioned migrations and `ensure_schema`.

Migrations are an ordered, named set of SQL scripts (the sqlite-utils way: SQL beside the code
that runs it). Each migration and its `schema_version` row are applied in one transaction. An
applied migration is never edited: a change to the schema is a new migration, and
`core/kernel/db/schema.py` declares the end state that a test compares the migrated database
against.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from core.kernel.db.engine import is_sqlite, transaction
from core.kernel.ids import now_ms

log = logging.getLogger("mnemo.migrate")

# Dialect spellings; everything else in the scripts is common SQL.
_TYPES = {
    "sqlite": {"blob": "BLOB"},
    "postgresql": {"blob": "BYTEA"},
}
# Arbitrary, fixed: the PostgreSQL advisory lock that serialises concurrent migrators.
_PG_LOCK_KEY = 0x6D6E656D6F


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    # Extra SQL for one dialect only (full-text indexes differ), run after `sql`.
    dialect_sql: Mapping[str, str] = field(default_factory=dict)

    def statements(self, dialect: str) -> list[str]:
        script = self.sql.format(**_TYPES[dialect]) + ";" + self.dialect_sql.get(dialect, "")
        return [s.strip() for s in script.split(";") if s.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "brains and api keys",
        """
        CREATE TABLE brains (
            id TEXT NOT NULL PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE TABLE api_keys (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            name TEXT,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            user_id TEXT,
            read_only INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT,
            revoked_at BIGINT
        );
        CREATE INDEX ix_api_keys_brain ON api_keys (brain_id);
        """,
    ),
    Migration(
        2,
        "memories, history, changelog and users",
        """
        CREATE TABLE memories (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            user_id TEXT,
            agent_id TEXT,
            run_id TEXT,
            type TEXT NOT NULL CHECK (type IN ('note', 'fact', 'journal')),
            title TEXT,
            key TEXT,
            content TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            source TEXT,
            confidence DOUBLE PRECISION NOT NULL DEFAULT 0.7
                CHECK (confidence >= 0 AND confidence <= 1),
            importance DOUBLE PRECISION NOT NULL DEFAULT 0.5
                CHECK (importance >= 0 AND importance <= 1),
            metadata TEXT NOT NULL DEFAULT '{{}}',
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'archived', 'deleted')),
            content_hash TEXT NOT NULL,
            superseded_by TEXT,
            occurred_at BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            archived_at BIGINT,
            deleted_at BIGINT,
            access_count INTEGER NOT NULL DEFAULT 0,
            last_accessed_at BIGINT
        );
        CREATE INDEX ix_memories_brain_created ON memories (brain_id, created_at, id);
        CREATE INDEX ix_memories_brain_user_created
            ON memories (brain_id, user_id, created_at, id);
        CREATE INDEX ix_memories_brain_updated ON memories (brain_id, updated_at);
        CREATE UNIQUE INDEX ux_memories_active_content
            ON memories (brain_id, coalesce(user_id, ''), coalesce(key, ''), content_hash)
            WHERE state = 'active';
        CREATE UNIQUE INDEX ux_memories_active_fact
            ON memories (brain_id, coalesce(user_id, ''), key)
            WHERE state = 'active' AND type = 'fact';
        CREATE TABLE memory_tags (
            memory_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            brain_id TEXT NOT NULL,
            PRIMARY KEY (memory_id, tag)
        );
        CREATE INDEX ix_memory_tags_brain_tag ON memory_tags (brain_id, tag);
        CREATE TABLE memory_links (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            from_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            to_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            relation TEXT NOT NULL CHECK (relation IN (
                'related', 'supports', 'contradicts', 'supersedes', 'causes', 'example_of')),
            label TEXT,
            weight DOUBLE PRECISION NOT NULL DEFAULT 1.0,
            created_at BIGINT NOT NULL,
            UNIQUE (brain_id, from_id, to_id, relation)
        );
        CREATE INDEX ix_memory_links_to ON memory_links (brain_id, to_id);
        CREATE TABLE memory_history (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            memory_id TEXT NOT NULL,
            user_id TEXT,
            event TEXT NOT NULL
                CHECK (event IN ('ADD', 'UPDATE', 'DELETE', 'ARCHIVE', 'RESTORE')),
            old_memory TEXT,
            new_memory TEXT,
            detail TEXT,
            actor_id TEXT,
            role TEXT,
            is_deleted INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT
        );
        CREATE INDEX ix_memory_history_memory ON memory_history (brain_id, memory_id, created_at);
        CREATE TABLE changelog (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            user_id TEXT,
            event_type TEXT NOT NULL,
            entity_type TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            actor_id TEXT,
            summary TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{{}}',
            created_at BIGINT NOT NULL
        );
        CREATE INDEX ix_changelog_brain_created ON changelog (brain_id, created_at, id);
        CREATE TABLE users (
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            summary TEXT,
            reflection_count INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (brain_id, user_id)
        );
        """,
    ),
    Migration(
        3,
        "maintenance stats",
        """
        CREATE TABLE stats (
            id TEXT NOT NULL PRIMARY KEY,
            type TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            detail TEXT,
            ts BIGINT NOT NULL
        );
        CREATE INDEX ix_stats_ts ON stats (ts);
        CREATE INDEX ix_stats_type ON stats (type);
        """,
    ),
    Migration(
        4,
        "search: full-text index and memory vectors",
        """
        CREATE TABLE memory_vectors (
            memory_id TEXT NOT NULL PRIMARY KEY REFERENCES memories (id) ON DELETE CASCADE,
            brain_id TEXT NOT NULL,
            model TEXT NOT NULL,
            dims INTEGER NOT NULL,
            vector {blob} NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE INDEX ix_memory_vectors_brain_model
            ON memory_vectors (brain_id, model, updated_at)
        """,
        dialect_sql={
            # Kept in step by core/retrieval/lexical.py in the memory's own transaction; the
            # rowid is the memory's rowid, and `scope` holds brain and user tokens so a
            # search only ever scores its own tenant's memories.
            "sqlite": """
            CREATE VIRTUAL TABLE memory_fts USING fts5(
                title, key, tags, content, scope,
                tokenize = 'porter unicode61 remove_diacritics 2'
            );
            CREATE VIRTUAL TABLE memory_fts_vocab USING fts5vocab(memory_fts, 'row')
            """,
            # A generated column: PostgreSQL keeps it in step with the row by itself.
            "postgresql": """
            ALTER TABLE memories ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', coalesce(title, '')), 'A')
                || setweight(to_tsvector('english', coalesce(key, '')), 'A')
                || setweight(to_tsvector('english', tags), 'B')
                || setweight(to_tsvector('english', content), 'C')
            ) STORED;
            CREATE INDEX ix_memories_search ON memories USING GIN (search_vector)
            """,
        },
    ),
    Migration(
        5,
        "accounts, sessions, oauth and rate limits",
        """
        CREATE TABLE accounts (
            id TEXT NOT NULL PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            display_name TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE TABLE brain_members (
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
            created_at BIGINT NOT NULL,
            PRIMARY KEY (brain_id, account_id)
        );
        CREATE INDEX ix_brain_members_account ON brain_members (account_id);
        CREATE TABLE oauth_clients (
            client_id TEXT NOT NULL PRIMARY KEY,
            client_name TEXT,
            redirect_uris TEXT NOT NULL,
            grant_types TEXT NOT NULL,
            response_types TEXT NOT NULL,
            token_endpoint_auth_method TEXT NOT NULL DEFAULT 'none',
            client_secret_hash TEXT,
            scope TEXT,
            metadata TEXT NOT NULL DEFAULT '{{}}',
            created_at BIGINT NOT NULL
        );
        CREATE TABLE auth_sessions (
            id TEXT NOT NULL PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            brain_id TEXT REFERENCES brains (id) ON DELETE SET NULL,
            client_id TEXT REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
            audience TEXT,
            scope TEXT,
            user_agent TEXT,
            ip TEXT,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            revoked_at BIGINT,
            revoked_reason TEXT
        );
        CREATE INDEX ix_auth_sessions_account ON auth_sessions (account_id, created_at);
        CREATE TABLE auth_tokens (
            token_hash TEXT NOT NULL PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_at BIGINT
        );
        CREATE INDEX ix_auth_tokens_session ON auth_tokens (session_id);
        CREATE INDEX ix_auth_tokens_expires ON auth_tokens (expires_at);
        CREATE TABLE oauth_codes (
            code_hash TEXT NOT NULL PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
            account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            redirect_uri TEXT NOT NULL,
            code_challenge TEXT NOT NULL,
            scope TEXT,
            resource TEXT,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_at BIGINT,
            session_id TEXT
        );
        CREATE INDEX ix_oauth_codes_expires ON oauth_codes (expires_at);
        CREATE TABLE rate_limits (
            bucket TEXT NOT NULL,
            window_start BIGINT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (bucket, window_start)
        );
        CREATE INDEX ix_rate_limits_expires ON rate_limits (expires_at)
        """,
    ),
    Migration(
        6,
        "user summaries",
        # summarized_at: when the memories the summary was made from were read; the user's
        # memories created after it are what counts towards the next automatic refresh, so
        # saving a memory writes nothing extra (no counter row to lock on every add).
        # summary_source: 'extractive' or 'llm', what made the current summary.
        """
        ALTER TABLE users ADD COLUMN summarized_at BIGINT;
        ALTER TABLE users ADD COLUMN summary_source TEXT
        """,
    ),
    Migration(
        7,
        "links: origin and graph indexes",
        # origin: who made a link. 'manual' (POST /v1/links), 'inferred' (waypoints: similar
        # memories linked on add) or 'system' (a superseded fact); the links made before this
        # migration are all supersessions. The incoming-side index carries the far end and the
        # relation, so a graph walk reads both directions from indexes alone (the unique
        # constraint already covers the outgoing side).
        """
        ALTER TABLE memory_links ADD COLUMN origin TEXT NOT NULL DEFAULT 'manual'
            CHECK (origin IN ('manual', 'inferred', 'system'));
        ALTER TABLE memory_links ADD COLUMN created_by TEXT;
        UPDATE memory_links SET origin = 'system';
        DROP INDEX ix_memory_links_to;
        CREATE INDEX ix_memory_links_to_from
            ON memory_links (brain_id, to_id, from_id, relation)
        """,
    ),
    Migration(
        8,
        "conflicts, aliases and merges",
        # A conflict is one row per unordered pair (pair_key: the two ids sorted, "a|b"), so a
        # pair found again by another rule or another run is the same conflict. conflict_scans
        # is where the maintenance detection left off in each brain (memories by updated_at,
        # contradicts links by created_at), so each run reads one bounded batch. The memory
        # columns lead their own indexes: deleting a memory looks its rows up by them.
        """
        CREATE TABLE memory_conflict_resolutions (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            pair_key TEXT NOT NULL,
            a_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            b_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            user_id TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('key', 'link', 'value')),
            reason TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{{}}',
            status TEXT NOT NULL DEFAULT 'needs_review'
                CHECK (status IN ('needs_review', 'resolved', 'superseded', 'dismissed')),
            canonical_id TEXT,
            mode TEXT CHECK (mode IN ('archive', 'demote')),
            note TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            resolved_at BIGINT,
            UNIQUE (brain_id, pair_key)
        );
        CREATE INDEX ix_conflicts_brain_status
            ON memory_conflict_resolutions (brain_id, status, created_at, id);
        CREATE INDEX ix_conflicts_a ON memory_conflict_resolutions (a_id);
        CREATE INDEX ix_conflicts_b ON memory_conflict_resolutions (b_id);
        CREATE TABLE memory_entity_aliases (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            canonical_memory_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            alias_memory_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            note TEXT,
            confidence DOUBLE PRECISION NOT NULL DEFAULT 0.9
                CHECK (confidence >= 0 AND confidence <= 1),
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (brain_id, alias_memory_id)
        );
        CREATE INDEX ix_aliases_canonical ON memory_entity_aliases (canonical_memory_id);
        CREATE INDEX ix_aliases_alias ON memory_entity_aliases (alias_memory_id);
        CREATE TABLE conflict_scans (
            brain_id TEXT NOT NULL PRIMARY KEY REFERENCES brains (id) ON DELETE CASCADE,
            memory_at BIGINT NOT NULL DEFAULT 0,
            memory_id TEXT NOT NULL DEFAULT '',
            link_at BIGINT NOT NULL DEFAULT 0,
            link_id TEXT NOT NULL DEFAULT '',
            updated_at BIGINT NOT NULL
        );
        CREATE INDEX ix_memories_brain_key ON memories (brain_id, lower(key))
            WHERE key IS NOT NULL;
        CREATE INDEX ix_memory_links_brain_relation
            ON memory_links (brain_id, relation, created_at, id)
        """,
    ),
    Migration(
        9,
        "brain policy, source trust and decay",
        # brain_policies.policy_json holds only the values a brain set (core/memory/policy.py fills
        # in the defaults). memories.decayed_at: when decay last lowered the memory's importance, so
        # a second run within the decay period changes nothing. maintenance_leases: one row per
        # brain and task while a run holds it; a concurrent run finds it unexpired and skips.
        # stats.brain_id: NULL for process-wide tasks, the brain for per-brain ones.
        """
        CREATE TABLE brain_policies (
            brain_id TEXT NOT NULL PRIMARY KEY REFERENCES brains (id) ON DELETE CASCADE,
            policy_json TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE TABLE brain_source_trust (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            source_key TEXT NOT NULL,
            trust DOUBLE PRECISION NOT NULL DEFAULT 0.5 CHECK (trust >= 0 AND trust <= 1),
            notes TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (brain_id, source_key)
        );
        CREATE TABLE maintenance_leases (
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            task TEXT NOT NULL,
            holder TEXT NOT NULL,
            acquired_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (brain_id, task)
        );
        ALTER TABLE memories ADD COLUMN decayed_at BIGINT;
        ALTER TABLE stats ADD COLUMN brain_id TEXT REFERENCES brains (id) ON DELETE CASCADE;
        CREATE INDEX ix_stats_brain_ts ON stats (brain_id, ts)
        """,
    ),
    Migration(
        10,
        "watches, outbox and inbound hooks",
        # watches.secret and hook_sources.secret are stored as given, not hashed: an HMAC
        # needs the raw key on both sides (we sign outbound bodies with it, and verify inbound
        # ones), and the receiver was shown the same raw secret once at creation.
        # event_types is a JSON list (["*"] for every event); query_folded is the text filter,
        # case-folded once here rather than on every event the outbox matches.
        # A delivery's id is event id + ":" + watch id: one per (event, watch), the same on
        # every attempt (the receiver's idempotency key). next_attempt_at doubles as the lease:
        # a drainer claims a due row by pushing it forward, so a crashed drainer's claim
        # comes due again by itself.
        """
        CREATE TABLE watches (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            event_types TEXT NOT NULL,
            query TEXT,
            query_folded TEXT,
            webhook_url TEXT NOT NULL,
            secret TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            last_triggered_at BIGINT,
            last_error TEXT
        );
        CREATE INDEX ix_watches_brain_active ON watches (brain_id, active);
        CREATE TABLE deliveries (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            watch_id TEXT NOT NULL REFERENCES watches (id) ON DELETE CASCADE,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            entity_type TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            summary TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{{}}',
            event_at BIGINT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL,
            claim_token TEXT,
            last_status_code INTEGER,
            last_error TEXT,
            delivered_at BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE INDEX ix_deliveries_due ON deliveries (status, next_attempt_at);
        CREATE INDEX ix_deliveries_watch ON deliveries (brain_id, watch_id, created_at);
        CREATE TABLE hook_sources (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            secret TEXT NOT NULL,
            user_id TEXT,
            active INTEGER NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            last_received_at BIGINT,
            UNIQUE (brain_id, name)
        );
        CREATE TABLE hook_receipts (
            source_id TEXT NOT NULL REFERENCES hook_sources (id) ON DELETE CASCADE,
            delivery_id TEXT NOT NULL,
            brain_id TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (source_id, delivery_id)
        );
        CREATE INDEX ix_hook_receipts_received ON hook_receipts (received_at)
        """,
    ),
    Migration(
        11,
        "snapshots",
        # A snapshot is a brain's export (core/transfer/format.py) compressed: `payload` holds
        # it when storage is 'database', `s3_key` names the object when it is 's3'.
        # format_version and encoding say how to read it back; sha256 is over the stored bytes,
        # so a restore refuses a payload that changed before writing anything.
        """
        CREATE TABLE snapshots (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            note TEXT,
            include_archived INTEGER NOT NULL DEFAULT 0,
            format_version INTEGER NOT NULL,
            encoding TEXT NOT NULL,
            storage TEXT NOT NULL CHECK (storage IN ('database', 's3')),
            payload {blob},
            s3_key TEXT,
            size_bytes BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            memory_count INTEGER NOT NULL DEFAULT 0,
            link_count INTEGER NOT NULL DEFAULT 0,
            record_count INTEGER NOT NULL DEFAULT 0,
            created_by TEXT,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX ix_snapshots_brain_created ON snapshots (brain_id, created_at, id)
        """,
    ),
    Migration(
        12,
        "tag lists in creation order",
        # A memory's creation time never changes, so its tag rows can carry it: a list by tag
        # then reads the newest page straight off one index instead of testing every memory
        # of the brain, newest first, for the tag.
        """
        ALTER TABLE memory_tags ADD COLUMN created_at BIGINT;
        UPDATE memory_tags SET created_at =
            (SELECT m.created_at FROM memories m WHERE m.id = memory_tags.memory_id);
        CREATE INDEX ix_memory_tags_brain_tag_created
            ON memory_tags (brain_id, tag, created_at, memory_id);
        DROP INDEX ix_memory_tags_brain_tag
        """,
    ),
    Migration(
        13,
        "valid time and dated mentions",
        # Valid time beside system time: valid_from / valid_to say when what a memory states
        # was true (created_at / updated_at say when the store learned it). Existing rows
        # become valid from when they happened, else from when they were saved; a fact that a
        # newer fact of its key superseded stops being valid when the newer one starts (never
        # before it starts itself). memory_dates: the dates a memory's content mentions
        # ("yesterday", "in May 2023"), resolved against the memory's own time (core/memory/
        # dates.py); a row without a span marks content that speaks of time without naming
        # one. Rows of memories saved before this migration are written by the next edit.
        """
        ALTER TABLE memories ADD COLUMN valid_from BIGINT;
        ALTER TABLE memories ADD COLUMN valid_to BIGINT;
        UPDATE memories SET valid_from = coalesce(occurred_at, created_at);
        UPDATE memories SET valid_to = (
            SELECT CASE WHEN n.valid_from > memories.valid_from THEN n.valid_from
                ELSE memories.valid_from END
            FROM memories n
            WHERE n.id = memories.superseded_by AND n.brain_id = memories.brain_id
                AND n.type = 'fact' AND n.key = memories.key)
        WHERE superseded_by IS NOT NULL AND type = 'fact' AND key IS NOT NULL;
        CREATE INDEX ix_memories_brain_valid ON memories (brain_id, valid_from);
        CREATE TABLE memory_dates (
            memory_id TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            brain_id TEXT NOT NULL,
            starts_at BIGINT,
            ends_at BIGINT,
            phrase TEXT NOT NULL
        );
        CREATE INDEX ix_memory_dates_memory ON memory_dates (brain_id, memory_id);
        CREATE INDEX ix_memory_dates_brain_starts ON memory_dates (brain_id, starts_at)
        """,
    ),
    Migration(
        14,
        "write gate, recalls and erasures",
        # memory_quarantine: writes the gate held back (core/memory/gate.py); `payload` is the
        # request as given, saved on approval. memory_recalls: which memories a search or
        # context pack returned to which caller, one row per reply, read by the echo guard
        # within the policy's window. erasures: one receipt per erased user; `subject` is a
        # salted hash of the user id, and the id itself is kept only while the erasure runs
        # (to resume it), so a finished receipt can be shown without the data it erased.
        """
        CREATE TABLE memory_quarantine (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            user_id TEXT,
            content TEXT NOT NULL,
            payload TEXT NOT NULL,
            reason TEXT NOT NULL,
            explanation TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'rejected')),
            memory_id TEXT,
            created_by TEXT,
            decided_by TEXT,
            created_at BIGINT NOT NULL,
            decided_at BIGINT
        );
        CREATE INDEX ix_quarantine_brain_status
            ON memory_quarantine (brain_id, status, created_at, id);
        CREATE INDEX ix_quarantine_brain_user ON memory_quarantine (brain_id, user_id);
        CREATE TABLE memory_recalls (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            principal TEXT NOT NULL,
            user_id TEXT,
            memory_ids TEXT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX ix_recalls_caller ON memory_recalls (brain_id, principal, created_at);
        CREATE INDEX ix_recalls_user ON memory_recalls (brain_id, user_id);
        CREATE TABLE erasures (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            subject TEXT NOT NULL,
            pending_user_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'complete')),
            counts TEXT NOT NULL DEFAULT '{{}}',
            digest TEXT NOT NULL,
            batches INTEGER NOT NULL DEFAULT 0,
            requested_by TEXT,
            started_at BIGINT NOT NULL,
            completed_at BIGINT
        );
        CREATE INDEX ix_erasures_brain_subject ON erasures (brain_id, subject, started_at)
        """,
    ),
    Migration(
        15,
        "conversation ingestion jobs",
        # mem0's add with async_mode: the conversation waits here while an LLM extracts its
        # facts after the answer was sent; the caller reads the status and results by id.
        """
        CREATE TABLE ingest_jobs (
            id TEXT NOT NULL PRIMARY KEY,
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            user_id TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
            request TEXT NOT NULL,
            results TEXT,
            error TEXT,
            created_by TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE INDEX ix_ingest_jobs_brain_created ON ingest_jobs (brain_id, created_at, id)
        """,
    ),
    Migration(
        16,
        "rotated webhook and hook secrets",
        # A rotated secret stays valid until previous_secret_expires_at, so the system at the
        # other end can switch to the new one without a moment where nothing verifies.
        """
        ALTER TABLE watches ADD COLUMN previous_secret TEXT;
        ALTER TABLE watches ADD COLUMN previous_secret_expires_at BIGINT;
        ALTER TABLE hook_sources ADD COLUMN previous_secret TEXT;
        ALTER TABLE hook_sources ADD COLUMN previous_secret_expires_at BIGINT
        """,
    ),
    Migration(
        17,
        "vector cache images",
        # A brain's vector cache as maintenance last saw it (core/retrieval/vectors.py), in
        # parts of up to 16,384 vectors: a cold process reads a few large rows of int8 codes
        # instead of every vector row joined with its memory, then catches up from `watermark`.
        # Derived data only: dropped with the brain, rewritten or deleted by maintenance and
        # erasure.
        """
        CREATE TABLE vector_images (
            brain_id TEXT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            part INTEGER NOT NULL,
            parts INTEGER NOT NULL,
            total INTEGER NOT NULL,
            dims INTEGER NOT NULL,
            watermark BIGINT NOT NULL,
            ids {blob} NOT NULL,
            codes {blob} NOT NULL,
            scales {blob} NOT NULL,
            owners {blob} NOT NULL,
            states {blob} NOT NULL,
            users TEXT NOT NULL,
            written_at BIGINT NOT NULL,
            PRIMARY KEY (brain_id, model, part)
        )
        """,
    ),
    Migration(
        18,
        "per-token audience",
        # RFC 8707: a refresh may ask for an access token bound to fewer resources than the
        # grant holds, while the refresh token keeps the grant's; so each token carries its
        # own audience (core/identity/sessions.py). Tokens issued before carried their
        # session's.
        """
        ALTER TABLE auth_tokens ADD COLUMN audience TEXT;
        UPDATE auth_tokens SET audience =
            (SELECT s.audience FROM auth_sessions s WHERE s.id = auth_tokens.session_id)
        """,
    ),
    Migration(
        19,
        "erasure compaction owed",
        # When an erasure's compaction (PostgreSQL: VACUUM of the tables it touched) is owed,
        # NULL once done: the scheduled maintenance runs it (core/app/maintenance.py), where
        # the request that erased could outrun API Gateway's 30 s waiting for it.
        """
        ALTER TABLE erasures ADD COLUMN compaction_due BIGINT
        """,
    ),
    Migration(
        20,
        "full-text index without fast update",
        # GIN's fast update queues new entries in a pending list that every lookup scans in
        # full until VACUUM merges it: after an import of 10,000 memories a word no memory
        # holds cost 1.8 ms to look up instead of 7 us, and a search's near-word lookup
        # (~150 such words a typo) 280 ms instead of 1 ms. Memories arrive a few at a time,
        # so entries go straight into the index, and what is queued now is merged.
        "",
        dialect_sql={
            "postgresql": """
            ALTER INDEX ix_memories_search SET (fastupdate = off);
            SELECT gin_clean_pending_list('ix_memories_search')
            """,
        },
    ),
    Migration(
        21,
        "per-token scope",
        # RFC 6749 section 6: a refresh may ask for fewer scopes than the grant holds; the
        # access token it issues carries only those, the refresh token keeps the grant's.
        # NULL: the session's scope, as every token before this had.
        """
        ALTER TABLE auth_tokens ADD COLUMN scope TEXT
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)
"""

Reporter = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


def current_version(conn: Connection) -> int | None:
    """The newest applied migration, or None on a database Mnemo has never touched."""
    try:
        with conn.begin_nested():
            value = conn.execute(text("SELECT max(version) FROM schema_version")).scalar()
    except DBAPIError:
        return None
    return None if value is None else int(value)


def applied(engine: Engine) -> dict[int, int]:
    """version -> applied_at (ms) for every applied migration."""
    with transaction(engine, write=False) as conn:
        if current_version(conn) is None:
            return {}
        rows = conn.execute(text("SELECT version, applied_at FROM schema_version")).all()
    return {int(v): int(at) for v, at in rows}


def pending(engine: Engine) -> list[Migration]:
    done = applied(engine)
    return [m for m in MIGRATIONS if m.version not in done]


def dry_run_sql(engine: Engine) -> list[tuple[Migration, list[str]]]:
    dialect = engine.dialect.name
    return [(m, m.statements(dialect)) for m in pending(engine)]


def migrate(
    engine: Engine, report: Reporter = _quiet, *, target: int | None = None
) -> list[Migration]:
    """Apply pending migrations up to `target` (default: all), each in its own transaction;
    safe when several processes migrate at once."""
    report("[MIGRATE] Checking for pending migrations...")
    with transaction(engine, write=False) as conn:
        version = current_version(conn)
    report(f"[MIGRATE] Current database version: {version if version is not None else 'none'}")
    done: list[Migration] = []
    for migration in MIGRATIONS:
        if version is not None and migration.version <= version:
            continue
        if target is not None and migration.version > target:
            break
        if _apply(engine, migration, report):
            done.append(migration)
    report("[MIGRATE] All migrations completed")
    return done


def _apply(engine: Engine, migration: Migration, report: Reporter) -> bool:
    """Apply one migration unless a concurrent migrator got there first."""
    with transaction(engine, write=True) as conn:
        _lock_for_migration(conn, engine)
        conn.execute(text(_CREATE_VERSION_TABLE))
        already = conn.execute(
            text("SELECT 1 FROM schema_version WHERE version = :v"), {"v": migration.version}
        ).first()
        if already:
            return False
        report(f"[MIGRATE] Running migration: {migration.version} - {migration.name}")
        for statement in migration.statements(engine.dialect.name):
            conn.exec_driver_sql(statement)
        conn.execute(
            text("INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)"),
            {"v": migration.version, "n": migration.name, "t": now_ms()},
        )
    report(f"[MIGRATE] Migration {migration.version} completed successfully")
    return True


def _lock_for_migration(conn: Connection, engine: Engine) -> None:
    # SQLite: the transaction began with BEGIN IMMEDIATE, which already holds the write lock.
    if not is_sqlite(engine):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


@dataclass
class _Checked:
    version: int
    at: float


_checked: dict[Engine, _Checked] = {}
_checked_lock = threading.Lock()


def ensure_schema(engine: Engine, *, probe_seconds: float = 5.0) -> int:
    """Bring the database to the newest schema; on a warm process this costs next to nothing.

    The result is memoised per engine; after `probe_seconds` one cheap version probe runs again,
    so a migration applied by another process (a newer deployment) is still noticed.
    """
    checked = _checked.get(engine)
    if checked is not None and time.monotonic() - checked.at < probe_seconds:
        return checked.version
    with _checked_lock:
        with transaction(engine, write=False) as conn:
            version = current_version(conn)
        if version is None or version < LATEST_VERSION:
            migrate(engine, report=log.info)
            with transaction(engine, write=False) as conn:
                version = current_version(conn)
        assert version is not None
        if version > LATEST_VERSION and (checked is None or checked.version != version):
            log.warning(
                "database schema is at version %d, newer than this code's %d: "
                "deploy the newer code",
                version,
                LATEST_VERSION,
            )
        _checked[engine] = _Checked(version, time.monotonic())
        return version


def forget(engine: Engine | None = None) -> None:
    """Drop the memo (tests, and tools that change the schema behind the app's back)."""
    if engine is None:
        _checked.clear()
    else:
        _checked.pop(engine, None)
