"""Scheduled upkeep (the MaintenanceFunction): each run is recorded in `stats`, as OpenMemory
v1.2 does for its decay, reflect and consolidate runs. Later features add their tasks here."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, text

from core.db.engine import is_sqlite, transaction
from core.ids import new_id, now_ms


def run(engine: Engine) -> dict[str, Any]:
    started = time.perf_counter()
    tasks: dict[str, Any] = {}
    if is_sqlite(engine):
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
