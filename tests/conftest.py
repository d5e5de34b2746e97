"""Fixtures: the same suite runs on SQLite and on a real PostgreSQL server started here."""

from __future__ import annotations

import contextlib
import os

# Before anything imports handlers.api (which configures logging once per process).
os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from core.identity.keys import create_key
from core.kernel.config import Settings
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema, forget
from core.memory import access
from tests import contract
from tests.lambda_client import LambdaClient
from tests.pg_server import PostgresServer, wait_for

STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A server the session may create databases on: MNEMO_TEST_POSTGRES_URL, or our own."""
    given = os.environ.get("MNEMO_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = PostgresServer()
    url = server.start()
    wait_for(url)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            access.flush()  # counts tallied by tests outside the engine fixture, while it is up
        server.stop()


def new_postgres_database(admin_url: str) -> str:
    name = f"mnemo_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_admin_url: str) -> str:
    """One migrated database for the session; tests keep apart by using brains of their own."""
    return new_postgres_database(postgres_admin_url)


@pytest.fixture
def make_empty_database(
    store: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], str]:
    """Makes databases nobody has touched yet, on the store the test runs on."""

    def make() -> str:
        if store == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'mnemo.db'}"
        return new_postgres_database(request.getfixturevalue("postgres_admin_url"))

    return make


@pytest.fixture
def empty_database_url(make_empty_database: Callable[[], str]) -> str:
    return make_empty_database()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(store: str, request: pytest.FixtureRequest, tmp_path: object) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp_path}/mnemo.db"
    return str(request.getfixturevalue("shared_postgres_url"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, log_level="WARNING")


@pytest.fixture
def engine(settings: Settings, store: str) -> Iterator[Engine]:
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    yield engine
    # The test's access counts, while its database is there (core/memory/access.py).
    access.flush(engine)
    if store == "sqlite":  # a file per test: let it go, or open handles pile up
        dispose(settings.database_url)


@dataclass
class Tenant:
    """A fresh brain with a brain-wide key, and a way to mint more keys for it."""

    slug: str
    key: str
    engine: Engine

    def new_key(self, *, user_id: str | None = None, read_only: bool = False) -> str:
        with transaction(self.engine) as conn:
            return create_key(conn, self.slug, user_id=user_id, read_only=read_only).secret

    @property
    def brain_id(self) -> str:
        with transaction(self.engine, write=False) as conn:
            return str(
                conn.execute(
                    text("SELECT id FROM brains WHERE slug = :s"), {"s": self.slug}
                ).scalar()
            )


def make_tenant(engine: Engine) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    with transaction(engine) as conn:
        key = create_key(conn, slug).secret
    return Tenant(slug, key, engine)


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


@pytest.fixture
def other_tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


@pytest.fixture
def client(settings: Settings, tenant: Tenant) -> LambdaClient:
    return LambdaClient(settings, key=tenant.key)


@pytest.fixture(scope="session", autouse=True)
def _replies_checked_against_the_document() -> Iterator[None]:
    """Every reply an in-process client gets is validated against /openapi.json."""
    with contract.installed():
        yield


@pytest.fixture(autouse=True)
def _checked_replies(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("unchecked_replies")
    if marker is not None and not (marker.args or marker.kwargs.get("reason")):
        raise pytest.UsageError(f"{request.node.nodeid}: unchecked_replies needs a reason")
    with contract.checking(marker is None):
        yield


@pytest.fixture(autouse=True)
def _fresh_schema_memo() -> Iterator[None]:
    yield
    forget()


def embeds_during(monkeypatch: pytest.MonkeyPatch, module: Any, writer: str) -> list[bool]:
    """From now on, one entry per call of the builtin embedder: whether `module.writer` (the
    function that runs inside the write transaction) was running at the time. A remote
    embedder is a network call, which must not happen while a write holds the store."""
    from core.embeddings.builtin import BuiltinEmbedder

    writing = False
    during: list[bool] = []
    embed, write = BuiltinEmbedder.embed, getattr(module, writer)

    def spy_embed(self: BuiltinEmbedder, texts: Any, **kw: Any) -> Any:
        during.append(writing)
        return embed(self, texts, **kw)

    def spy_write(*args: Any, **kw: Any) -> Any:
        nonlocal writing
        writing = True
        try:
            return write(*args, **kw)
        finally:
            writing = False

    monkeypatch.setattr(BuiltinEmbedder, "embed", spy_embed)
    monkeypatch.setattr(module, writer, spy_write)
    return during
