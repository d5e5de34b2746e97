"""`mnemo serve` after errors, with real pooled HTTP clients: a keep-alive connection survives
every error reply (a 500 included), and a PostgreSQL outage is a 503 with Retry-After that
ends when the server is back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from core.identity.keys import create_key
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from tests.pg_server import PostgresServer, wait_for
from tests.serve import mnemo_serve


def _key(engine: Engine, brain: str) -> str:
    with transaction(engine) as conn:
        return create_key(conn, brain).secret


def _connections(client: httpx.Client) -> set[int]:
    """Ids of the pool's open sockets: the same id before and after is the same connection."""
    pool = client._transport._pool  # type: ignore[attr-defined]
    return {id(c._connection._network_stream) for c in pool.connections if c._connection}


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    path = tmp_path / "mnemo.db"
    url = f"sqlite:///{path}"
    engine = get_engine(url)
    ensure_schema(engine)
    key = _key(engine, "keepalive")
    dispose(url)
    with mnemo_serve(url) as base:
        yield base, key, path


def test_a_keep_alive_connection_survives_every_kind_of_error(
    sqlite_server: tuple[str, str, Path],
) -> None:
    base, key, path = sqlite_server
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    json_type = {"content-type": "application/json"}
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, limits=one) as c:
        assert c.get("/v1/snapshots").status_code == 200
        before = _connections(c)
        # A table gone behind the server's back: an error nothing handles, a genuine 500.
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE snapshots")
        failing = [
            (c.build_request("GET", "/v1/snapshots"), 500),
            (c.build_request("POST", "/v1/memories", content="{no", headers=json_type), 400),
            (c.build_request("POST", "/v1/memories", content="[" * 5000, headers=json_type), 400),
            (c.build_request("POST", "/v1/memories", content="x" * 2_000_000), 413),
            (c.build_request("GET", "/v1/memories", params={"cursor": "e30"}), 422),
            (c.build_request("POST", "/v1/memories", content="x"), 415),
            (c.build_request("GET", "/no/such/route"), 404),
            (c.build_request("GET", "/v1/memories", headers={"authorization": "Bearer x"}), 401),
        ]
        for request, status in failing:
            for _ in range(2):
                reply = c.send(request)
                assert reply.status_code == status, reply.text
                assert reply.json()["error"]["code"]
                # Either the server says it will close, or the connection is still the same.
                if reply.headers.get("connection") != "close":
                    assert c.get("/health").status_code == 200
                    assert _connections(c) == before


def test_postgres_down_is_a_503_with_retry_after_until_it_returns() -> None:
    # A server of its own: stopping the session's shared one would fail other tests.
    server = PostgresServer()
    url = server.start()
    try:
        wait_for(url)
        engine = get_engine(url)
        ensure_schema(engine)
        key = _key(engine, "outage")
        dispose(url)
        auth = {"authorization": f"Bearer {key}"}
        with mnemo_serve(url) as base, httpx.Client(base_url=base, headers=auth) as c:
            assert c.post("/v1/memories", json={"content": "before the outage"}).status_code == 201
            server.halt()
            for method, path, body in [
                ("GET", "/health", None),
                ("GET", "/v1/memories", None),
                ("POST", "/v1/memories", {"content": "during"}),
                ("POST", "/v1/search", {"query": "outage"}),
            ]:
                reply = c.request(method, path, json=body)
                assert reply.status_code == 503, reply.text
                assert int(reply.headers["retry-after"]) > 0
                assert reply.json()["error"]["code"] == "database_unavailable"
            openmemory = c.post("/memory/add", json={"content": "during"})
            assert openmemory.status_code == 503 and "retry-after" in openmemory.headers
            assert openmemory.json()["err"] == "database_unavailable"
            server.resume()
            deadline = time.monotonic() + 30
            while (reply := c.get("/v1/memories")).status_code != 200:
                assert reply.status_code == 503, reply.text
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.2)
            assert c.get("/health").json()["status"] == "ok"
            contents = [m["content"] for m in reply.json()["results"]]
            assert contents == ["before the outage"]
    finally:
        server.stop()
