"""Per-request context: the store (schema ensured), the caller's scope, and running core calls.

Core calls are synchronous. On Lambda one invocation is one request, so they run inline: a
thread hop would be pure overhead. Under `mnemo serve` they go to a worker thread so one slow
query does not stall every other request on the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from anyio.to_thread import run_sync
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from core import keys
from core.brains import ensure_brain
from core.config import Limits, Settings
from core.db.engine import get_engine, transaction
from core.db.migrations import ensure_schema
from core.errors import Unauthorized
from core.scope import Scope

P = ParamSpec("P")
T = TypeVar("T")

# Under PostgreSQL's read committed, two requests can both pass a uniqueness check (dedup, the
# current fact) and one then fails on the unique index; running it again sees the winner's row.
_CONFLICT_RETRIES = 3


@dataclass
class Services:
    settings: Settings
    offload: bool = False

    def __post_init__(self) -> None:
        self._default_brain: dict[Engine, str] = {}
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        s = self.settings
        return get_engine(
            s.database_url, busy_timeout_ms=s.sqlite_busy_timeout_ms, on_lambda=s.on_lambda
        )

    def schema_version(self) -> int:
        return ensure_schema(self.engine(), probe_seconds=self.settings.schema_probe_seconds)

    def ready_engine(self) -> Engine:
        engine = self.engine()
        ensure_schema(engine, probe_seconds=self.settings.schema_probe_seconds)
        return engine

    def default_brain(self, engine: Engine) -> str:
        brain = self._default_brain.get(engine)
        if brain is None:
            with self._lock, transaction(engine) as conn:
                brain = ensure_brain(conn, self.settings.default_brain)
            self._default_brain[engine] = brain
        return brain

    async def call(self, fn: Callable[[], T]) -> T:
        return await run_sync(fn) if self.offload else fn()


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


@dataclass(frozen=True)
class Context:
    services: Services
    engine: Engine
    scope: Scope

    @property
    def limits(self) -> Limits:
        return self.services.settings.limits

    async def write(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        def run() -> T:
            for attempt in range(_CONFLICT_RETRIES):
                try:
                    with transaction(self.engine, write=True) as conn:
                        return fn(conn, self.scope, *args, **kw)
                except IntegrityError:
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")

        return await self.services.call(run)

    async def read(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        def run() -> T:
            with transaction(self.engine, write=False) as conn:
                return fn(conn, self.scope, *args, **kw)

        return await self.services.call(run)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'", code="missing_credentials"
        )
    return token.strip()


async def authorize(request: Request) -> Context:
    svc = services(request)
    token = bearer_token(request)

    def resolve() -> Context:
        engine = svc.ready_engine()
        if keys.matches_single_key(token, svc.settings.api_key):
            scope = Scope(brain_id=svc.default_brain(engine), principal="key:env")
        else:
            with transaction(engine, write=False) as conn:
                found = keys.find_key(conn, token)
            if found is None:
                raise Unauthorized("the API key is not valid or was revoked", code="invalid_key")
            if found.stale:
                with transaction(engine, write=True) as conn:
                    keys.touch(conn, found.key_id)
            scope = found.scope
        return Context(svc, engine, scope)

    return await svc.call(resolve)
