"""Maintenance leases: at most one run works on a brain's task at a time.

A lease is a row (brain, task) naming its holder and when it lapses. Taking it is one atomic
upsert that only overwrites a lapsed lease, so of two runs starting together exactly one gets
it and the other skips the brain; a run that crashed holds it until `expires_at` at most.
Releasing leaves the row (lapsed now), so `acquired_at` says when the brain was last maintained
and the next run can visit the least recently maintained brains first.
"""

from __future__ import annotations

from sqlalchemy import Engine

from core.kernel.db.engine import sql, transaction
from core.kernel.ids import new_id, now_ms


def acquire(engine: Engine, brain_id: str, task: str, *, seconds: int) -> str | None:
    """The holder token when this run got the lease, None when another run holds it."""
    holder = new_id()
    now = now_ms()
    with transaction(engine) as conn:
        # Both dialects: a conflicting row is only overwritten when the WHERE holds, so a live
        # lease makes this a no-op (rowcount 0). PostgreSQL makes a concurrent upsert of the
        # same key wait for the first to commit, then re-check the WHERE against its row.
        taken = conn.execute(
            sql(
                "INSERT INTO maintenance_leases (brain_id, task, holder, acquired_at, "
                "expires_at) VALUES (:brain, :task, :holder, :now, :expires) "
                "ON CONFLICT (brain_id, task) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
                "WHERE maintenance_leases.expires_at <= :now"
            ),
            {
                "brain": brain_id,
                "task": task,
                "holder": holder,
                "now": now,
                "expires": now + seconds * 1000,
            },
        ).rowcount
    return holder if taken == 1 else None


def release(engine: Engine, brain_id: str, task: str, holder: str) -> None:
    with transaction(engine) as conn:
        conn.execute(
            sql(
                "UPDATE maintenance_leases SET expires_at = :now "
                "WHERE brain_id = :brain AND task = :task AND holder = :holder"
            ),
            {"now": now_ms(), "brain": brain_id, "task": task, "holder": holder},
        )
