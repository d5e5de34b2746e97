"""The declared schema: what the database looks like once every migration has run.

Migrations (core/kernel/db/migrations.py) are the history; this is the end state, kept in step by a
test that migrates an empty database one version at a time and compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()


def _ts(name: str, *, nullable: bool = True) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


def _brain_fk() -> Column[str]:
    return Column("brain_id", Text, ForeignKey("brains.id", ondelete="CASCADE"), nullable=False)


schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    _ts("applied_at", nullable=False),
)

brains = Table(
    "brains",
    metadata,
    Column("id", Text, primary_key=True),
    Column("slug", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("name", Text),
    Column("prefix", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("user_id", Text),
    Column("read_only", Integer, nullable=False, server_default=text("0")),
    _ts("created_at", nullable=False),
    _ts("last_used_at"),
    _ts("revoked_at"),
    Index("ix_api_keys_brain", "brain_id"),
)

memories = Table(
    "memories",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("user_id", Text),
    Column("agent_id", Text),
    Column("run_id", Text),
    Column("type", Text, nullable=False),
    Column("title", Text),
    Column("key", Text),
    Column("content", Text, nullable=False),
    Column("tags", Text, nullable=False, server_default=text("'[]'")),
    Column("source", Text),
    Column("confidence", Float, nullable=False, server_default=text("0.7")),
    Column("importance", Float, nullable=False, server_default=text("0.5")),
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),
    Column("state", Text, nullable=False, server_default=text("'active'")),
    Column("content_hash", Text, nullable=False),
    Column("superseded_by", Text),
    _ts("occurred_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("archived_at"),
    _ts("deleted_at"),
    Column("access_count", Integer, nullable=False, server_default=text("0")),
    _ts("last_accessed_at"),
    # Migration 9: when decay last lowered importance (core/curation/hygiene.py).
    _ts("decayed_at"),
    # Migration 13: when what the memory states was true (core/memory/validtime.py).
    _ts("valid_from"),
    _ts("valid_to"),
    CheckConstraint("type IN ('note', 'fact', 'journal')"),
    CheckConstraint("confidence >= 0 AND confidence <= 1"),
    CheckConstraint("importance >= 0 AND importance <= 1"),
    CheckConstraint("state IN ('active', 'archived', 'deleted')"),
)
Index("ix_memories_brain_created", memories.c.brain_id, memories.c.created_at, memories.c.id)
Index(
    "ix_memories_brain_user_created",
    memories.c.brain_id,
    memories.c.user_id,
    memories.c.created_at,
    memories.c.id,
)
Index("ix_memories_brain_updated", memories.c.brain_id, memories.c.updated_at)
Index("ix_memories_brain_valid", memories.c.brain_id, memories.c.valid_from)
Index(
    "ux_memories_active_content",
    memories.c.brain_id,
    func.coalesce(memories.c.user_id, ""),
    func.coalesce(memories.c.key, ""),
    memories.c.content_hash,
    unique=True,
    sqlite_where=text("state = 'active'"),
    postgresql_where=text("state = 'active'"),
)
Index(
    "ux_memories_active_fact",
    memories.c.brain_id,
    func.coalesce(memories.c.user_id, ""),
    memories.c.key,
    unique=True,
    sqlite_where=text("state = 'active' AND type = 'fact'"),
    postgresql_where=text("state = 'active' AND type = 'fact'"),
)

memory_tags = Table(
    "memory_tags",
    metadata,
    Column("memory_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("tag", Text, nullable=False),
    Column("brain_id", Text, nullable=False),
    _ts("created_at"),  # the memory's; always written, nullable only because it came later
    PrimaryKeyConstraint("memory_id", "tag"),
    Index("ix_memory_tags_brain_tag_created", "brain_id", "tag", "created_at", "memory_id"),
)

# Migration 13: dates a memory's content mentions, resolved (core/memory/dates.py).
memory_dates = Table(
    "memory_dates",
    metadata,
    Column("memory_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("brain_id", Text, nullable=False),
    _ts("starts_at"),
    _ts("ends_at"),
    Column("phrase", Text, nullable=False),
    Index("ix_memory_dates_memory", "brain_id", "memory_id"),
    Index("ix_memory_dates_brain_starts", "brain_id", "starts_at"),
)

memory_links = Table(
    "memory_links",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("from_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("to_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("relation", Text, nullable=False),
    Column("label", Text),
    Column("weight", Float, nullable=False, server_default=text("1.0")),
    _ts("created_at", nullable=False),
    # Migration 7: who made the link, and the incoming-side index of graph walks.
    Column("origin", Text, nullable=False, server_default=text("'manual'")),
    Column("created_by", Text),
    UniqueConstraint("brain_id", "from_id", "to_id", "relation"),
    CheckConstraint(
        "relation IN ('related', 'supports', 'contradicts', 'supersedes', 'causes', 'example_of')"
    ),
    CheckConstraint("origin IN ('manual', 'inferred', 'system')"),
    Index("ix_memory_links_to_from", "brain_id", "to_id", "from_id", "relation"),
)

memory_history = Table(
    "memory_history",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("memory_id", Text, nullable=False),
    Column("user_id", Text),
    Column("event", Text, nullable=False),
    Column("old_memory", Text),
    Column("new_memory", Text),
    Column("detail", Text),
    Column("actor_id", Text),
    Column("role", Text),
    Column("is_deleted", Integer, nullable=False, server_default=text("0")),
    _ts("created_at", nullable=False),
    _ts("updated_at"),
    CheckConstraint("event IN ('ADD', 'UPDATE', 'DELETE', 'ARCHIVE', 'RESTORE')"),
    Index("ix_memory_history_memory", "brain_id", "memory_id", "created_at"),
)

changelog = Table(
    "changelog",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("user_id", Text),
    Column("event_type", Text, nullable=False),
    Column("entity_type", Text, nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("actor_id", Text),
    Column("summary", Text, nullable=False),
    Column("payload", Text, nullable=False, server_default=text("'{}'")),
    _ts("created_at", nullable=False),
    Index("ix_changelog_brain_created", "brain_id", "created_at", "id"),
)

users = Table(
    "users",
    metadata,
    _brain_fk(),
    Column("user_id", Text, nullable=False),
    Column("summary", Text),
    Column("reflection_count", Integer, nullable=False, server_default=text("0")),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # Migration 6: user summaries.
    _ts("summarized_at"),
    Column("summary_source", Text),
    PrimaryKeyConstraint("brain_id", "user_id"),
)

stats = Table(
    "stats",
    metadata,
    Column("id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("detail", Text),
    _ts("ts", nullable=False),
    # Migration 9: the brain a per-brain maintenance task ran for (NULL: process-wide).
    Column("brain_id", Text, ForeignKey("brains.id", ondelete="CASCADE")),
    Index("ix_stats_ts", "ts"),
    Index("ix_stats_type", "type"),
    Index("ix_stats_brain_ts", "brain_id", "ts"),
)

memory_vectors = Table(
    "memory_vectors",
    metadata,
    Column(
        "memory_id",
        Text,
        ForeignKey("memories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("brain_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("dims", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    _ts("updated_at", nullable=False),
    Index("ix_memory_vectors_brain_model", "brain_id", "model", "updated_at"),
)

# Migration 5: accounts, brain memberships, sessions, OAuth and rate limits.

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("display_name", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

brain_members = Table(
    "brain_members",
    metadata,
    _brain_fk(),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("role", Text, nullable=False),
    _ts("created_at", nullable=False),
    PrimaryKeyConstraint("brain_id", "account_id"),
    CheckConstraint("role IN ('owner', 'member')"),
    Index("ix_brain_members_account", "account_id"),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("client_name", Text),
    Column("redirect_uris", Text, nullable=False),
    Column("grant_types", Text, nullable=False),
    Column("response_types", Text, nullable=False),
    Column("token_endpoint_auth_method", Text, nullable=False, server_default=text("'none'")),
    Column("client_secret_hash", Text),
    Column("scope", Text),
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),
    _ts("created_at", nullable=False),
)

auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # NULL: the active brain was deleted or the account left it; the session can switch.
    Column("brain_id", Text, ForeignKey("brains.id", ondelete="SET NULL")),
    Column("client_id", Text, ForeignKey("oauth_clients.client_id", ondelete="CASCADE")),
    Column("audience", Text),
    Column("scope", Text),
    Column("user_agent", Text),
    Column("ip", Text),
    _ts("created_at", nullable=False),
    _ts("last_used_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("revoked_at"),
    Column("revoked_reason", Text),
    Index("ix_auth_sessions_account", "account_id", "created_at"),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("session_id", Text, ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("used_at"),
    # The resources the token is bound to (RFC 8707), separated by spaces; NULL for a
    # first-party login's. A refresh token's are its grant's, an access token's may be fewer.
    Column("audience", Text),
    # An access token's scopes when a refresh asked for fewer than the grant's; NULL: the
    # session's (a refresh token always keeps the whole grant).
    Column("scope", Text),
    CheckConstraint("kind IN ('access', 'refresh')"),
    Index("ix_auth_tokens_session", "session_id"),
    Index("ix_auth_tokens_expires", "expires_at"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column(
        "client_id",
        Text,
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    _brain_fk(),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("scope", Text),
    Column("resource", Text),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("used_at"),
    Column("session_id", Text),
    Index("ix_oauth_codes_expires", "expires_at"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("bucket", Text, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("count", Integer, nullable=False, server_default=text("0")),
    _ts("expires_at", nullable=False),
    PrimaryKeyConstraint("bucket", "window_start"),
    Index("ix_rate_limits_expires", "expires_at"),
)

# Migration 9: brain policy, source trust and maintenance leases.

brain_policies = Table(
    "brain_policies",
    metadata,
    Column("brain_id", Text, ForeignKey("brains.id", ondelete="CASCADE"), primary_key=True),
    Column("policy_json", Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

brain_source_trust = Table(
    "brain_source_trust",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("source_key", Text, nullable=False),
    Column("trust", Float, nullable=False, server_default=text("0.5")),
    Column("notes", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("brain_id", "source_key"),
    CheckConstraint("trust >= 0 AND trust <= 1"),
)

maintenance_leases = Table(
    "maintenance_leases",
    metadata,
    _brain_fk(),
    Column("task", Text, nullable=False),
    Column("holder", Text, nullable=False),
    _ts("acquired_at", nullable=False),
    _ts("expires_at", nullable=False),
    PrimaryKeyConstraint("brain_id", "task"),
)

# Migration 10: watches, the webhook outbox, inbound hook sources and their replay receipts.

watches = Table(
    "watches",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("name", Text, nullable=False),
    Column("event_types", Text, nullable=False),
    Column("query", Text),
    Column("query_folded", Text),
    Column("webhook_url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("active", Integer, nullable=False, server_default=text("1")),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("last_triggered_at"),
    Column("last_error", Text),
    # Migration 16: the secret before the last rotation, valid until it expires.
    Column("previous_secret", Text),
    _ts("previous_secret_expires_at"),
    Index("ix_watches_brain_active", "brain_id", "active"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("watch_id", Text, ForeignKey("watches.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("entity_type", Text, nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("payload", Text, nullable=False, server_default=text("'{}'")),
    _ts("event_at", nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    _ts("next_attempt_at", nullable=False),
    Column("claim_token", Text),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    _ts("delivered_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_watch", "brain_id", "watch_id", "created_at"),
)

hook_sources = Table(
    "hook_sources",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("name", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("user_id", Text),
    Column("active", Integer, nullable=False, server_default=text("1")),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("last_received_at"),
    Column("previous_secret", Text),
    _ts("previous_secret_expires_at"),
    UniqueConstraint("brain_id", "name"),
)

hook_receipts = Table(
    "hook_receipts",
    metadata,
    Column(
        "source_id",
        Text,
        ForeignKey("hook_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("delivery_id", Text, nullable=False),
    Column("brain_id", Text, nullable=False),
    _ts("received_at", nullable=False),
    PrimaryKeyConstraint("source_id", "delivery_id"),
    Index("ix_hook_receipts_received", "received_at"),
)

# Migration 8: conflicts, entity aliases, where conflict detection left off, and the indexes
# detection reads (memories by key, links by relation).

memory_conflict_resolutions = Table(
    "memory_conflict_resolutions",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("pair_key", Text, nullable=False),
    Column("a_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("b_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Text),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("'{}'")),
    Column("status", Text, nullable=False, server_default=text("'needs_review'")),
    Column("canonical_id", Text),
    Column("mode", Text),
    Column("note", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("resolved_at"),
    UniqueConstraint("brain_id", "pair_key"),
    CheckConstraint("kind IN ('key', 'link', 'value')"),
    CheckConstraint("status IN ('needs_review', 'resolved', 'superseded', 'dismissed')"),
    CheckConstraint("mode IN ('archive', 'demote')"),
    Index("ix_conflicts_brain_status", "brain_id", "status", "created_at", "id"),
    Index("ix_conflicts_a", "a_id"),
    Index("ix_conflicts_b", "b_id"),
)

memory_entity_aliases = Table(
    "memory_entity_aliases",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column(
        "canonical_memory_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("alias_memory_id", Text, ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("note", Text),
    Column("confidence", Float, nullable=False, server_default=text("0.9")),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("brain_id", "alias_memory_id"),
    CheckConstraint("confidence >= 0 AND confidence <= 1"),
    Index("ix_aliases_canonical", "canonical_memory_id"),
    Index("ix_aliases_alias", "alias_memory_id"),
)

conflict_scans = Table(
    "conflict_scans",
    metadata,
    Column("brain_id", Text, ForeignKey("brains.id", ondelete="CASCADE"), primary_key=True),
    _ts("memory_at", nullable=False),
    Column("memory_id", Text, nullable=False, server_default=text("''")),
    _ts("link_at", nullable=False),
    Column("link_id", Text, nullable=False, server_default=text("''")),
    _ts("updated_at", nullable=False),
)

Index(
    "ix_memories_brain_key",
    memories.c.brain_id,
    func.lower(memories.c.key),
    sqlite_where=text("key IS NOT NULL"),
    postgresql_where=text("key IS NOT NULL"),
)
Index(
    "ix_memory_links_brain_relation",
    memory_links.c.brain_id,
    memory_links.c.relation,
    memory_links.c.created_at,
    memory_links.c.id,
)

# Migration 11: snapshots.

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("label", Text, nullable=False),
    Column("note", Text),
    Column("include_archived", Integer, nullable=False, server_default=text("0")),
    Column("format_version", Integer, nullable=False),
    Column("encoding", Text, nullable=False),
    Column("storage", Text, nullable=False),
    Column("payload", LargeBinary),
    Column("s3_key", Text),
    _ts("size_bytes", nullable=False),
    Column("sha256", Text, nullable=False),
    Column("memory_count", Integer, nullable=False, server_default=text("0")),
    Column("link_count", Integer, nullable=False, server_default=text("0")),
    Column("record_count", Integer, nullable=False, server_default=text("0")),
    Column("created_by", Text),
    _ts("created_at", nullable=False),
    CheckConstraint("storage IN ('database', 's3')"),
    Index("ix_snapshots_brain_created", "brain_id", "created_at", "id"),
)

# Migration 14: the write gate's quarantine, the echo guard's recall log, erasure receipts.

memory_quarantine = Table(
    "memory_quarantine",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("user_id", Text),
    Column("content", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("explanation", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("memory_id", Text),
    Column("created_by", Text),
    Column("decided_by", Text),
    _ts("created_at", nullable=False),
    _ts("decided_at"),
    CheckConstraint("status IN ('pending', 'approved', 'rejected')"),
    Index("ix_quarantine_brain_status", "brain_id", "status", "created_at", "id"),
    Index("ix_quarantine_brain_user", "brain_id", "user_id"),
)

memory_recalls = Table(
    "memory_recalls",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("principal", Text, nullable=False),
    Column("user_id", Text),
    Column("memory_ids", Text, nullable=False),
    _ts("created_at", nullable=False),
    Index("ix_recalls_caller", "brain_id", "principal", "created_at"),
    Index("ix_recalls_user", "brain_id", "user_id"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("subject", Text, nullable=False),
    Column("pending_user_id", Text),
    Column("status", Text, nullable=False),
    Column("counts", Text, nullable=False, server_default=text("'{}'")),
    Column("digest", Text, nullable=False),
    Column("batches", Integer, nullable=False, server_default=text("0")),
    Column("requested_by", Text),
    _ts("started_at", nullable=False),
    _ts("completed_at"),
    _ts("compaction_due"),
    CheckConstraint("status IN ('running', 'complete')"),
    Index("ix_erasures_brain_subject", "brain_id", "subject", "started_at"),
)

# Objects one dialect has that SQLAlchemy metadata cannot declare: the schema test checks they
# exist after migrating, then leaves them out of the comparison.
DIALECT_EXTRAS: dict[str, dict[str, list[str]]] = {
    "sqlite": {
        "tables": [
            "memory_fts",
            "memory_fts_config",
            "memory_fts_content",
            "memory_fts_data",
            "memory_fts_docsize",
            "memory_fts_idx",
            "memory_fts_vocab",
        ],
        "columns": [],
        "indexes": [],
    },
    "postgresql": {
        "tables": [],
        "columns": ["memories.search_vector"],
        "indexes": ["memories.ix_memories_search"],
    },
}

ingest_jobs = Table(
    "ingest_jobs",
    metadata,
    Column("id", Text, primary_key=True),
    _brain_fk(),
    Column("user_id", Text),
    Column("status", Text, nullable=False),
    Column("request", Text, nullable=False),
    Column("results", Text),
    Column("error", Text),
    Column("created_by", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    CheckConstraint("status IN ('pending', 'running', 'succeeded', 'failed')"),
    Index("ix_ingest_jobs_brain_created", "brain_id", "created_at", "id"),
)

# Migration 17: vector cache images (core/retrieval/vectors.py).
vector_images = Table(
    "vector_images",
    metadata,
    Column("brain_id", Text, ForeignKey("brains.id", ondelete="CASCADE"), primary_key=True),
    Column("model", Text, primary_key=True),
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("parts", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("dims", Integer, nullable=False),
    _ts("watermark", nullable=False),
    Column("ids", LargeBinary, nullable=False),
    Column("codes", LargeBinary, nullable=False),
    Column("scales", LargeBinary, nullable=False),
    Column("owners", LargeBinary, nullable=False),
    Column("states", LargeBinary, nullable=False),
    Column("users", Text, nullable=False),
    _ts("written_at", nullable=False),
)
