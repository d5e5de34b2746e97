"""The `mnemo` command, run as a user would: migrate, keys, and serve under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve import mnemo_serve

MNEMO = [sys.executable, "-m", "handlers.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNEMO_DATABASE_URL": url}
    return subprocess.run(
        [*MNEMO, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_migrate_prints_the_familiar_log_then_nothing_to_do(empty_database_url: str) -> None:
    dry = _run(empty_database_url, "migrate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "-- migration 1: brains and api keys" in dry.stdout
    assert "CREATE TABLE memories" in dry.stdout
    status = _run(empty_database_url, "migrate", "--status")
    assert status.returncode == 0 and status.stdout.count("pending") >= 3

    first = _run(empty_database_url, "migrate")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[:3] == [
        "Mnemo Database Migration Tool",
        "[MIGRATE] Checking for pending migrations...",
        "[MIGRATE] Current database version: none",
    ]
    assert "[MIGRATE] Running migration: 1 - brains and api keys" in lines
    assert "[MIGRATE] Migration 1 completed successfully" in lines
    assert lines[-2:] == ["[MIGRATE] All migrations completed", "[SUCCESS] Migration completed"]

    again = _run(empty_database_url, "migrate")
    assert "Running migration" not in again.stdout
    assert "pending" not in _run(empty_database_url, "migrate", "--status").stdout
    assert "nothing to apply" in _run(empty_database_url, "migrate", "--dry-run").stdout


@pytest.fixture
def served(empty_database_url: str) -> Iterator[tuple[str, str]]:
    """`mnemo serve` on a free port, with a key made by `mnemo keys create`."""
    made = _run(empty_database_url, "keys", "create", "--brain", "cli-test", "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("mnemo_") and "Shown once" in made.stderr
    with mnemo_serve(empty_database_url) as base:
        yield base, key


def test_serve_answers_health_and_memories(served: tuple[str, str], store: str) -> None:
    base, key = served
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["store"] in ("sqlite", "postgresql")
    auth = {"Authorization": f"Bearer {key}"}
    created = httpx.post(f"{base}/v1/memories", json={"content": "served by uvicorn"}, headers=auth)
    assert created.status_code == 201
    listed = httpx.get(f"{base}/v1/memories", headers=auth).json()
    assert [m["content"] for m in listed["results"]] == ["served by uvicorn"]
    assert httpx.get(f"{base}/v1/memories").status_code == 401


def test_reindex_embeds_what_has_no_vector(empty_database_url: str) -> None:
    from sqlalchemy import text

    from core.identity.keys import create_key
    from core.kernel.config import Settings
    from core.kernel.db.engine import dispose, get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from tests.lambda_client import LambdaClient

    engine = get_engine(empty_database_url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "reindexed").secret
    client = LambdaClient(Settings(database_url=empty_database_url), key=key)
    for i in range(5):
        assert client.post("/v1/memories", {"content": f"note number {i}"}).status == 201
    with transaction(engine) as conn:
        conn.execute(text("DELETE FROM memory_vectors"))
    done = _run(empty_database_url, "reindex", "--brain", "reindexed", "--batch", "2")
    assert done.returncode == 0, done.stderr
    assert "5 memories of brain 'reindexed' to embed" in done.stdout
    assert "[SUCCESS] 5 memories embedded" in done.stdout
    with transaction(engine, write=False) as conn:
        assert conn.execute(text("SELECT count(*) FROM memory_vectors")).scalar() == 5
    again = _run(empty_database_url, "reindex", "--brain", "reindexed")
    assert "0 memories" in again.stdout
    missing = _run(empty_database_url, "reindex", "--brain", "nope")
    assert missing.returncode == 2 and "no brain named 'nope'" in missing.stderr
    dispose(empty_database_url)


def test_serve_reads_an_optional_body_sent_chunked(served: tuple[str, str]) -> None:
    """A chunked request has no Content-Length: its optional body must still be read (a
    chunked {"mode": "replace"} restore was silently a merge)."""
    base, key = served
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    created = httpx.post(f"{base}/v1/memories", json={"content": "to archive"}, headers=auth)
    memory_id = created.json()["id"]
    archived = httpx.post(
        f"{base}/v1/memories/{memory_id}/archive",
        content=iter([b'{"actor_id": ', b'"robot-7"}']),  # a generator: sent chunked
        headers=auth,
    )
    assert archived.status_code == 200, archived.text
    history = httpx.get(f"{base}/v1/memories/{memory_id}/history", headers=auth).json()
    assert [(h["event"], h["actor_id"]) for h in history["results"]][-1] == ("ARCHIVE", "robot-7")
