"""The `mnemo` command, run as a user would: migrate, keys, and serve under uvicorn."""

from __future__ import annotations

import json
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
    made = _run(
        empty_database_url,
        "keys",
        "create",
        "--brain",
        "cli-test",
        "--create-brain",
        "--name",
        "ci",
    )
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


# Eight CLI processes: on SQLite only (the statements are the core's, tested on both stores).
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_keys_refuse_an_unknown_brain_then_list_and_revoke(empty_database_url: str) -> None:
    typo = _run(empty_database_url, "keys", "create", "--brain", "acme")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.strip() == (
        "error: no brain named 'acme' (brains: none yet); pass --create-brain to make it"
    )
    made = _run(empty_database_url, "keys", "create", "--brain", "acme", "--create-brain")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    other = _run(empty_database_url, "keys", "create", "--brain", "acmee")
    assert other.returncode == 2 and "(brains: acme)" in other.stderr
    listed = _run(empty_database_url, "keys", "list", "--brain", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    [key] = json.loads(listed.stdout)
    assert secret.startswith(key["prefix"]) and secret not in listed.stdout
    table = _run(empty_database_url, "keys", "list", "--brain", "acme").stdout
    assert key["id"] in table and "read-write" in table
    revoked = _run(empty_database_url, "keys", "revoke", "--brain", "acme", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert (
        json.loads(_run(empty_database_url, "keys", "list", "--brain", "acme", "--json").stdout)
        == []
    )
    again = _run(empty_database_url, "keys", "revoke", "--brain", "acme", key["id"])
    assert again.returncode == 2 and "no active key" in again.stderr
    with_revoked = _run(empty_database_url, "keys", "list", "--brain", "acme", "--all", "--json")
    assert json.loads(with_revoked.stdout)[0]["revoked_at"] is not None


def test_setup_mistakes_are_one_line_and_exit_code_2(tmp_path: Path) -> None:
    down = _run("postgresql://mnemo:secret@127.0.0.1:9/mnemo", "migrate")
    assert down.returncode == 2
    [line] = down.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the database at postgresql://mnemo:***@")
    assert "secret" not in down.stderr and "Traceback" not in down.stderr
    env = {**os.environ, "MNEMO_DATABASE_URL": f"sqlite:///{tmp_path}/m.db", "MNEMO_MAX_TAGS": "x"}
    bad = subprocess.run(
        [*MNEMO, "keys", "list", "--brain", "a"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == "error: configuration: MNEMO_MAX_TAGS must be a whole number, got 'x'\n"


def test_accounts_bind_shows_the_env_keys_brain_in_the_console(empty_database_url: str) -> None:
    from core.identity import accounts, memberships
    from core.kernel.db.engine import dispose, get_engine, transaction

    assert _run(empty_database_url, "migrate").returncode == 0
    engine = get_engine(empty_database_url)
    try:
        with transaction(engine) as conn:
            account = accounts.insert(conn, "owner@example.org", "pbkdf2-not-used", None)
        assert account is not None
        unknown = _run(empty_database_url, "accounts", "bind", "--email", "who@example.org")
        assert unknown.returncode == 2 and "sign up in the console first" in unknown.stderr
        bound = _run(empty_database_url, "accounts", "bind", "--email", "Owner@Example.org")
        assert bound.returncode == 0, bound.stderr
        with transaction(engine, write=False) as conn:
            listed = memberships.list_brains(conn, account.id)
        # The brain MNEMO_API_KEY writes to, now the account's, so the console lists it.
        assert [(b["slug"], b["role"]) for b in listed] == [("default", "owner")]
        member = _run(
            empty_database_url,
            "accounts",
            "bind",
            "--email",
            "owner@example.org",
            "--role",
            "member",
        )
        assert member.returncode == 0, member.stderr
        with transaction(engine, write=False) as conn:
            assert memberships.list_brains(conn, account.id)[0]["role"] == "member"
    finally:
        dispose(empty_database_url)


def test_a_postgresql_url_without_psycopg_fails_at_startup_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.kernel.config import settings_from_env
    from core.kernel.db.engine import MissingDriver, check_driver
    from handlers.api import create_app
    from handlers.cli import main

    # As if the postgres extra were not installed: `import psycopg` fails.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    url = "postgresql://mnemo@127.0.0.1:9/mnemo"
    check_driver("sqlite:///x.db")  # SQLite needs nothing more
    with pytest.raises(MissingDriver, match=r"pip install 'mnemo-server\[postgres\]'"):
        create_app(settings_from_env({"MNEMO_DATABASE_URL": url}))
    monkeypatch.setenv("MNEMO_DATABASE_URL", url)
    from core.kernel import config

    config.get_settings.cache_clear()
    try:
        assert main(["migrate", "--status"]) == 2
    finally:
        config.get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "psycopg driver is not installed" in err
