"""Erasing an end user everywhere in a brain: the rows (core/curation/erasure.py, batch by
batch), the snapshots (core/transfer/snapshots.py), this process's vector cache, and the erased
rows' bytes in the store's files (SQLite: the index merged and the WAL checkpointed, within
the request; PostgreSQL: the touched tables vacuumed by the next maintenance run, which
`compact_owed` is). Resumable: a run stopped by its deadline (or a crash)
leaves a `running` receipt, and asking again for the same user carries on from where it
stopped."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from core.app.models import CompactionRunRecord
from core.curation import erasure
from core.curation.models import ErasureReceiptRecord
from core.kernel.config import SnapshotSettings
from core.kernel.db.engine import transaction
from core.kernel.errors import InvalidInput
from core.kernel.scope import Scope
from core.retrieval import vectors
from core.transfer import snapshots


def erase_user(
    engine: Engine,
    scope: Scope,
    user_id: str,
    settings: SnapshotSettings,
    *,
    batch: int = erasure.BATCH,
    deadline: float | None = None,
) -> ErasureReceiptRecord:
    """Erase `user_id` from the brain; returns the receipt. With a `deadline` (a monotonic
    time) the run stops between batches once it has passed, and the receipt says `running`:
    call again to finish."""
    scope.require_owner_write()
    user_id = user_id.strip()
    if not user_id:
        raise InvalidInput("user_id must not be empty", details={"field": "user_id"})
    with transaction(engine) as conn:
        receipt = erasure.begin(conn, scope, user_id)
    receipt_id = receipt["id"]
    while True:
        with transaction(engine) as conn:
            done = erasure.erase_batch(conn, scope, receipt_id, batch=batch)
        if done:
            break
        if deadline is not None and time.monotonic() > deadline:
            with transaction(engine, write=False) as conn:
                return erasure.get(conn, scope, receipt_id)
    vectors.drop_brain(scope.brain_id)
    rewritten = snapshots.forget_user(engine, scope, user_id, settings)
    with transaction(engine) as conn:
        erasure.finish(conn, scope, receipt_id, snapshots=rewritten)
    if engine.dialect.name != "sqlite":
        # VACUUM can outlast the request's 30 s: owed, and run by the scheduled maintenance.
        with transaction(engine) as conn:
            return erasure.owe_compaction(conn, scope, receipt_id)
    # After the receipt is complete: the row version that still named the user is dead by
    # then, and goes with the rest. (Noting the outcome leaves one more dead version of the
    # receipt, which names no user.)
    outcome = erasure.compact(engine)
    with transaction(engine) as conn:
        return erasure.record_compaction(conn, scope, receipt_id, outcome)


def compact_owed(engine: Engine) -> CompactionRunRecord:
    """Run the compaction erasures owe (the maintenance function's task): one pass over the
    tables settles every receipt that was waiting for it. How many receipts it settled."""
    with transaction(engine, write=False) as conn:
        waiting = erasure.owed(conn)
    if not waiting:
        return {"receipts": 0}
    outcome = erasure.compact(engine)
    with transaction(engine) as conn:
        for brain_id, receipt_id in waiting:
            erasure.settle(conn, brain_id, receipt_id, outcome)
    return {"receipts": len(waiting), "complete": int(bool(outcome.get("complete")))}
