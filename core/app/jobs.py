"""Conversation ingestion jobs (mem0's `async_mode`): the request is saved as `pending`, the
caller gets the job's id at once, and `run` does the work after the answer has gone: `running`,
then `succeeded` with the results or `failed` with the error. A failed job changed nothing
(core/app/extraction.py applies all or nothing)."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import Connection, Engine

from core.app.ingest import ingest
from core.kernel.config import Settings
from core.kernel.db.engine import sql, transaction
from core.kernel.errors import MnemoError, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory.conversations import Conversation

log = logging.getLogger("mnemo.jobs")

# A job still pending or running this long after its last change lost its process (a Lambda
# invocation lives 15 minutes at most): it is reported as failed rather than left waiting.
ABANDONED_MS = 15 * 60 * 1000
_ABANDONED = {
    "code": "job_abandoned",
    "message": (
        "the job's process ended before it recorded an outcome; check the memories it would "
        "have touched, then send the conversation again"
    ),
    "details": None,
}


def create(conn: Connection, scope: Scope, conversation: Conversation) -> dict[str, Any]:
    scope.require_write()
    user = scope.user_for_write(conversation.user_id)
    now = now_ms()
    job_id = new_id()
    conn.execute(
        sql(
            "INSERT INTO ingest_jobs (id, brain_id, user_id, status, request, created_by, "
            "created_at, updated_at) VALUES (:id, :brain, :user, 'pending', :request, :by, "
            ":now, :now)"
        ),
        {
            "id": job_id,
            "brain": scope.brain_id,
            "user": user,
            "request": conversation.model_dump_json(),
            "by": scope.principal,
            "now": now,
        },
    )
    return get(conn, scope, job_id)


def get(conn: Connection, scope: Scope, job_id: str) -> dict[str, Any]:
    params: dict[str, Any] = {"brain": scope.brain_id, "id": job_id}
    clause = ""
    if scope.user_id is not None:
        clause = " AND user_id = :user"
        params["user"] = scope.user_id
    row = conn.execute(
        sql(
            "SELECT id, user_id, status, results, error, created_at, updated_at FROM ingest_jobs "
            f"WHERE brain_id = :brain AND id = :id{clause}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    status, error = row.status, None if row.error is None else json.loads(row.error)
    if status in ("pending", "running") and now_ms() - row.updated_at > ABANDONED_MS:
        status, error = "failed", _ABANDONED
    return {
        "id": row.id,
        "user_id": row.user_id,
        "status": status,
        "results": None if row.results is None else json.loads(row.results),
        "error": error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _set(engine: Engine, scope: Scope, job_id: str, status: str, **fields: Any) -> None:
    with transaction(engine, write=True) as conn:
        conn.execute(
            sql(
                "UPDATE ingest_jobs SET status = :status, results = :results, error = :error, "
                "updated_at = :now WHERE brain_id = :brain AND id = :id"
            ),
            {
                "status": status,
                "results": fields.get("results"),
                "error": fields.get("error"),
                "now": now_ms(),
                "brain": scope.brain_id,
                "id": job_id,
            },
        )


def _claim(engine: Engine, scope: Scope, job_id: str) -> bool:
    """pending -> running, once: a job handed to two runners is done by one."""
    with transaction(engine, write=True) as conn:
        claimed = conn.execute(
            sql(
                "UPDATE ingest_jobs SET status = 'running', updated_at = :now "
                "WHERE brain_id = :brain AND id = :id AND status = 'pending'"
            ),
            {"now": now_ms(), "brain": scope.brain_id, "id": job_id},
        ).rowcount
    return bool(claimed)


def run(engine: Engine, settings: Settings, scope: Scope, job_id: str) -> None:
    """Do a pending job. Never raises: the outcome is the job's status."""
    with transaction(engine, write=False) as conn:
        row = conn.execute(
            sql("SELECT request FROM ingest_jobs WHERE brain_id = :brain AND id = :id"),
            {"brain": scope.brain_id, "id": job_id},
        ).first()
    if row is None or not _claim(engine, scope, job_id):
        return
    try:
        results = ingest(engine, settings, scope, Conversation.model_validate_json(row.request))
    except MnemoError as exc:
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        _set(engine, scope, job_id, "failed", error=json.dumps(error))
        return
    except Exception:
        log.exception("ingestion job %s failed", job_id)
        error = {"code": "internal_error", "message": "the job failed on our side; try again"}
        _set(engine, scope, job_id, "failed", error=json.dumps(error))
        return
    _set(engine, scope, job_id, "succeeded", results=json.dumps(results))


# A finished job's request and results hold the conversation and memory contents: kept a week
# for its caller to read, then deleted, so a purged memory's text does not outlive it here.
KEEP_FINISHED_MS = 7 * 24 * 3600 * 1000


def purge_old(conn: Connection, *, now: int | None = None) -> int:
    """Delete jobs whose last change is older than KEEP_FINISHED_MS, of every brain (the
    maintenance run's sweep); how many."""
    cutoff = (now_ms() if now is None else now) - KEEP_FINISHED_MS
    result = conn.execute(
        sql("DELETE FROM ingest_jobs WHERE updated_at < :cutoff"), {"cutoff": cutoff}
    )
    return int(result.rowcount or 0)
