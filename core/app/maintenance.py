"""Scheduled upkeep (the MaintenanceFunction): each run is recorded in `stats`, as OpenMemory
v1.2 does for its decay, reflect and consolidate runs. Later features add their tasks here."""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, text

from core.app import brain_maintenance, erasure, jobs
from core.app.models import MaintenanceRecord
from core.curation.summaries import service as summaries
from core.identity import sessions
from core.kernel.config import Settings, get_settings
from core.kernel.db.engine import is_sqlite, transaction
from core.kernel.ids import new_id, now_ms
from core.memory import access
from core.retrieval import lexical
from core.webhooks import sweep as webhook_sweep

# Of the MaintenanceFunction's 300 s: what user summaries may take before the run moves on
# (the users left over are picked up by the next run).
_SUMMARY_SECONDS = 120.0
_WEBHOOK_SECONDS = 60.0
# Merging the full-text index: 10,000 memories' index merges in well under this.
_MERGE_SECONDS = 30.0


def run(
    engine: Engine,
    settings: Settings | None = None,
    *,
    brain_id: str | None = None,
    dry_run: bool = False,
) -> MaintenanceRecord:
    """Everything, or with `brain_id` / `dry_run` (mnemo maintain) only the brains' hygiene."""
    settings = settings or get_settings()
    if brain_id is not None or dry_run:
        hygiene = brain_maintenance.run_all(
            engine, settings.maintenance, brain_id=brain_id, dry_run=dry_run, app=settings
        )
        return {"hygiene": hygiene}
    started = time.perf_counter()
    tasks: MaintenanceRecord = {}
    # Summaries of users with MNEMO_USER_SUMMARY_INTERVAL new memories: here rather than after
    # the add's response, which on Lambda would run before it (core/curation/summaries/service.py).
    tasks["user_summaries"] = summaries.refresh_due(
        engine, settings, budget_seconds=_SUMMARY_SECONDS
    )
    # Expired sessions and OAuth codes, and sessions revoked over a week ago, with their tokens.
    with transaction(engine) as conn:
        tasks["expired_sessions_purged"] = sessions.purge_expired(conn)
        # Conversation jobs past their week: their rows hold the conversations' text.
        tasks["old_jobs_purged"] = jobs.purge_old(conn)
    # Webhook deliveries no drain message sent (or retries now due), then the logs trimmed.
    tasks["webhooks"] = webhook_sweep.sweep(
        engine, settings.webhooks, budget_seconds=_WEBHOOK_SECONDS
    )
    # Decay, retention, conflicts and consolidation suggestions, per brain, in bounded batches;
    # decay reads the access counts this process has tallied but not written yet.
    access.flush(engine)
    tasks["hygiene"] = brain_maintenance.run_all(engine, settings.maintenance, app=settings)
    # PostgreSQL: the VACUUM erasures owe, so their erased rows leave the tables' files (run
    # here, not in DELETE /v1/users, which it could make outlast API Gateway's 30 s).
    tasks["erasure_compaction"] = erasure.compact_owed(engine)
    if is_sqlite(engine):
        # The full-text index's segments merged, which every add's gate lookup reads.
        steps, merged = lexical.merge_index(engine, budget_seconds=_MERGE_SECONDS)
        tasks["fulltext_merge"] = {"steps": steps, "done": merged}
        # Keep the WAL file from growing without bound between quiet periods.
        with engine.connect() as conn:
            busy, log_frames, checkpointed = conn.exec_driver_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).one()
            conn.exec_driver_sql("PRAGMA optimize")
        tasks["wal_checkpoint"] = {"busy": busy, "frames": log_frames, "done": checkpointed}
    tasks["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    with transaction(engine) as conn:
        conn.execute(
            text("INSERT INTO stats (id, type, count, detail, ts) VALUES (:id, :t, 1, :d, :ts)"),
            {"id": new_id(), "t": "maintenance", "d": json.dumps(tasks), "ts": now_ms()},
        )
    return tasks
