"""Access counts off the read path (issue 21): a search neither writes nor waits for the writer,
its counts reach the table in batches, at a clean exit too, and decay still reads them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.kernel.config import Settings
from core.memory import access
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

ROOT = Path(__file__).resolve().parents[2]

_SEARCH_AND_EXIT = """
import json, sys
from core.kernel.config import Settings
from tests.lambda_client import LambdaClient
url, key = sys.argv[1], sys.argv[2]
client = LambdaClient(Settings(database_url=url, log_level="WARNING"), key=key)
found = client.post("/v1/search", {"query": "peanut allergy", "limit": 1}).json()["results"]
print(json.dumps([hit["memory"]["id"] for hit in found]))
"""


def _count(engine: Engine, memory_id: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT access_count FROM memories WHERE id = :id"), {"id": memory_id}
        )
        return int(found.scalar_one())


def test_counts_tallied_in_a_process_are_written_at_its_clean_exit(
    settings: Settings, tenant: Tenant, engine: Engine
) -> None:
    client = LambdaClient(settings, key=tenant.key)
    memory = client.post("/v1/memories", {"content": "Sam has a peanut allergy"}).json()
    out = subprocess.run(
        [sys.executable, "-c", _SEARCH_AND_EXIT, settings.database_url, tenant.key],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [memory["id"]]
    assert _count(engine, memory["id"]) == 1


def test_a_search_does_not_wait_for_a_writer(
    settings: Settings, tenant: Tenant, engine: Engine, store: str
) -> None:
    """SQLite has one writer: a search that ended with its own write queued behind every
    writer. Here a writer holds the lock for the whole search."""
    if store != "sqlite":
        pytest.skip("PostgreSQL writers do not lock out each other's rows")
    client = LambdaClient(settings, key=tenant.key)
    memory = client.post("/v1/memories", {"content": "Sam has a peanut allergy"}).json()
    access.flush()
    done = threading.Event()
    replies: list[int] = []
    with engine.connect() as holder:
        driver = holder.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE")
        try:

            def search() -> None:
                import asyncio

                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                try:
                    reply = client.post("/v1/search", {"query": "peanut allergy"})
                    replies.append(reply.status)
                finally:
                    loop.close()
                    done.set()

            threading.Thread(target=search, daemon=True).start()
            assert done.wait(20), "the search waited for the writer"
        finally:
            driver.execute("ROLLBACK")
    assert replies == [200]
    assert access.flush(engine) == 1
    assert _count(engine, memory["id"]) == 1


def test_a_failed_flush_keeps_its_counts(
    settings: Settings, tenant: Tenant, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = LambdaClient(settings, key=tenant.key)
    memory = client.post("/v1/memories", {"content": "Sam has a peanut allergy"}).json()
    access.flush()
    client.post("/v1/search", {"query": "peanut allergy"})

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("database away")

    with monkeypatch.context() as patched:
        patched.setattr(access, "transaction", broken)
        with pytest.raises(RuntimeError):
            access.flush(engine)
    assert _count(engine, memory["id"]) == 0
    assert access.flush(engine) == 1
    assert _count(engine, memory["id"]) == 1
