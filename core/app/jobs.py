"""Conversation ingestion jobs (mem0's `async_mode`): the request is saved as `pending`, the
caller gets the job's id at once, and `run` does the work after the answer has gone: `running`,
then `succeeded` with the results or `failed` with the error. A failed job changed nothing
(core/app/extraction.py applies all or nothing).

Who runs a job: under `mnemo serve`, the serving process, after the answer. On AWS, the API
function hands the job's id to an SQS queue (`enqueue`) and the IngestFunction runs it
(handlers/ingest_worker.py), so the 202 never waits for the LLM. SQS delivers at least once,
so `run` is safe to call any number of times for one job:
  * claiming is one conditional UPDATE (pending -> running), so one runner does the work;
  * a claim is a lease: a runner that died (a Lambda timeout) stops holding its job after
    LEASE_MS, and the queue's next delivery of the message claims it again;
  * the outcome is written in the transaction that writes the memories, and only by the
    runner still holding the claim (its claim time is the fencing token): a job's memories
    are never written twice, and a finished job is never run again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine

from core.app.ingest import ingest
from core.app.models import JobRecord, OutcomeRecord
from core.kernel import sqs
from core.kernel.config import Settings
from core.kernel.db.engine import sql, transaction, unavailable
from core.kernel.errors import MnemoError, NotFound, UpstreamError
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory.models import Conversation

log = logging.getLogger("mnemo.jobs")

# How long a claim holds: longer than a runner can live (the IngestFunction's timeout,
# template.yaml, 120 s), shorter than the queue's visibility timeout (720 s), so a message
# delivered again after its runner died finds the job free to claim.
LEASE_MS = 5 * 60 * 1000
# A job still pending or running this long after its last change will not be run: past the
# queue's last redelivery (3 receives, 12 minutes apart) and any process's life. It is
# reported as failed rather than left waiting, and no late runner may start it after that.
ABANDONED_MS = 60 * 60 * 1000
_ABANDONED = {
    "code": "job_abandoned",
    "message": (
        "the job was not finished in time (its process ended, or it waited too long in the "
        "queue); check the memories it would have touched, then send the conversation again"
    ),
    "details": None,
}

Ran = Literal["done", "busy", "skipped"]


def create(conn: Connection, scope: Scope, conversation: Conversation) -> JobRecord:
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


def get(conn: Connection, scope: Scope, job_id: str) -> JobRecord:
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
    out = {
        "id": row.id,
        "user_id": row.user_id,
        "status": status,
        "results": None if row.results is None else json.loads(row.results),
        "error": error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    return cast(JobRecord, out)


class NotQueued(UpstreamError):
    code = "job_not_queued"


def enqueue(engine: Engine, queue_url: str, brain_id: str, job_id: str) -> None:
    """Hand a created job to the ingestion queue. A job the queue did not take is recorded as
    failed and the caller told so (502): it would otherwise wait for a runner that never comes."""
    try:
        sqs.send(queue_url, {"ingest_job": job_id, "brain_id": brain_id})
    except Exception as exc:
        log.exception("ingestion job %s could not be queued", job_id)
        message = "the job queue could not be reached; send the conversation again"
        error = {"code": NotQueued.code, "message": message, "details": {"job_id": job_id}}
        with transaction(engine, write=True) as conn:
            conn.execute(
                sql(
                    "UPDATE ingest_jobs SET status = 'failed', error = :error, updated_at = :now "
                    "WHERE brain_id = :brain AND id = :id AND status = 'pending'"
                ),
                {"error": json.dumps(error), "now": now_ms(), "brain": brain_id, "id": job_id},
            )
        raise NotQueued(message, details={"job_id": job_id}) from exc


@dataclass(frozen=True)
class _Claim:
    scope: Scope
    conversation: Conversation
    token: int  # the claim's time: the outcome is written only while updated_at is still it


def _claim(engine: Engine, brain_id: str, job_id: str) -> _Claim | Ran:
    """The job, claimed for this runner; or why not: "busy" (another runner holds it),
    "skipped" (finished, abandoned or unknown)."""
    now = now_ms()
    params = {"now": now, "brain": brain_id, "id": job_id}
    with transaction(engine, write=True) as conn:
        claimed = conn.execute(
            sql(
                "UPDATE ingest_jobs SET status = 'running', updated_at = :now "
                "WHERE brain_id = :brain AND id = :id AND updated_at >= :abandoned "
                "AND (status = 'pending' OR (status = 'running' AND updated_at < :lapsed))"
            ),
            {**params, "abandoned": now - ABANDONED_MS, "lapsed": now - LEASE_MS},
        ).rowcount
        row = conn.execute(
            sql(
                "SELECT status, request, user_id, created_by, updated_at FROM ingest_jobs "
                "WHERE brain_id = :brain AND id = :id"
            ),
            params,
        ).first()
        if row is None:
            return "skipped"
        if claimed:
            # The job's own user and author: what the request's key allowed was checked when
            # the job was made, and its user is the one user_for_write settled on then.
            scope = Scope(
                brain_id=brain_id, principal=row.created_by or "ingest-job", user_id=row.user_id
            )
            conversation = Conversation.model_validate_json(row.request)
            return _Claim(scope, conversation, now)
        if row.status in ("pending", "running") and row.updated_at < now - ABANDONED_MS:
            _finish(conn, brain_id, job_id, row.updated_at, "failed", error=_ABANDONED)
            return "skipped"
        return "busy" if row.status == "running" else "skipped"


def _finish(
    conn: Connection, brain_id: str, job_id: str, token: int, status: str, **fields: Any
) -> bool:
    """Record the outcome, if the job is still as its runner claimed it (whether it was)."""
    changed = conn.execute(
        sql(
            "UPDATE ingest_jobs SET status = :status, results = :results, error = :error, "
            "updated_at = :now WHERE brain_id = :brain AND id = :id "
            "AND status IN ('pending', 'running') AND updated_at = :token"
        ),
        {
            "status": status,
            "results": None if fields.get("results") is None else json.dumps(fields["results"]),
            "error": None if fields.get("error") is None else json.dumps(fields["error"]),
            "now": max(now_ms(), token + 1),
            "brain": brain_id,
            "id": job_id,
            "token": token,
        },
    ).rowcount
    return bool(changed)


class _LeaseLost(Exception):
    """Another runner claimed the job while this one worked: its writes are rolled back."""


def run(engine: Engine, settings: Settings, brain_id: str, job_id: str) -> Ran:
    """Do a job if it is waiting: "done" (it ran, and its status says how it went), "busy"
    (another runner holds it: try again later) or "skipped" (nothing to do). Raises only when
    the store cannot be reached, so that the job's message is delivered again."""
    claim = _claim(engine, brain_id, job_id)
    if not isinstance(claim, _Claim):
        return claim

    def record(conn: Connection, results: list[OutcomeRecord]) -> None:
        if not _finish(conn, brain_id, job_id, claim.token, "succeeded", results=results):
            raise _LeaseLost(job_id)

    try:
        ingest(engine, settings, claim.scope, claim.conversation, on_done=record)
        return "done"
    except _LeaseLost:
        log.warning("ingestion job %s was claimed again while it ran; its writes undone", job_id)
        return "busy"
    except MnemoError as exc:
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
    except Exception as exc:
        if unavailable(exc):
            # Not the job's fault: it stays claimed until the lease lapses, and the queue's
            # next delivery (or nothing, in-process) runs it again.
            raise
        log.exception("ingestion job %s failed", job_id)
        error = {"code": "internal_error", "message": "the job failed on our side; try again"}
    with transaction(engine, write=True) as conn:
        _finish(conn, brain_id, job_id, claim.token, "failed", error=error)
    return "done"


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
