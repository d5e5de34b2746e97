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
ROOT = Path(__file__).resolve().parent.parent


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
