"""Per-request context: the store (schema ensured), the caller's scope, and running core calls.

Core calls are synchronous. On Lambda one invocation is one request, so they run inline: a
thread hop would be pure overhead. Under `mnemo serve` they go to a worker thread so one slow
query does not stall every other request on the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from anyio.to_thread import run_sync
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from core.identity import keys, sessions
from core.identity.brains import ensure_brain
from core.identity.oauth.metadata import API, accepted_audiences, base_url
from core.kernel import ratelimit
from core.kernel.config import Limits, Settings
from core.kernel.db.connect import engine_for
from core.kernel.db.engine import reads, single_read, transaction
from core.kernel.db.migrations import ensure_schema
from core.kernel.errors import Unauthorized
from core.kernel.scope import Scope
from core.kernel.secrets import secret_string
from core.webhooks.ssrf import Resolver, system_resolver

if TYPE_CHECKING:
    # Imported where used: search, embeddings and the models pull in numpy and pydantic, which
    # a cold start should pay for only when its request needs them (handlers/lazy.py).
    from core.embeddings.base import Embedder
    from core.memory.indexing import Indexer
    from core.memory.models import MemoryIn, MemoryPatch
    from core.retrieval.search import QueryVector

P = ParamSpec("P")
T = TypeVar("T")

# Under PostgreSQL's read committed, two requests can both pass a uniqueness check (dedup, the
# current fact) and one then fails on the unique index; running it again sees the winner's row.
_CONFLICT_RETRIES = 3
# How long a warm instance trusts the single key it read from Secrets Manager.
_KEY_SECRET_SECONDS = 300.0


@dataclass
class Services:
    settings: Settings
    offload: bool = False
    # How webhook hosts are resolved for the SSRF guard; tests put a stub here.
    resolver: Resolver = system_resolver

    def __post_init__(self) -> None:
        self._default_brain: dict[Engine, str] = {}
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        return engine_for(self.settings)

    def schema_version(self) -> int:
        return ensure_schema(self.engine(), probe_seconds=self.settings.schema_probe_seconds)

    def ready_engine(self) -> Engine:
        engine = self.engine()
        ensure_schema(engine, probe_seconds=self.settings.schema_probe_seconds)
        if engine.dialect.name == "postgresql":
            # Memoised per engine: a process's first request creates the pgvector copy if it
            # can, so writes keep it in step from then on (core/retrieval/pgvector.py).
            from core.retrieval import pgvector

            pgvector.ensure(engine, self.settings.vector_search.pgvector)
        if self.settings.single_key_mode:
            # Single-key mode: the default brain exists from the first start, so events that
            # name it (EventBridge, events/eventbridge.json) work on a fresh store. Memoised.
            self.default_brain(engine)
        return engine

    def default_brain(self, engine: Engine) -> str:
        brain = self._default_brain.get(engine)
        if brain is None:
            with self._lock, transaction(engine) as conn:
                brain = ensure_brain(conn, self.settings.default_brain)
            self._default_brain[engine] = brain
        return brain

    def single_key(self) -> str | None:
        """The operator's single key: MNEMO_API_KEY, or the secret MNEMO_API_KEY_SECRET_ARN
        names (read once per process, core/kernel/secrets.py)."""
        s = self.settings
        if s.api_key or not s.api_key_secret_arn:
            return s.api_key
        # Re-read every few minutes: a rotated key must stop working on warm instances too,
        # and nothing else tells them (one GetSecretValue per instance per period).
        value = secret_string(s.api_key_secret_arn, s.database.region, max_age=_KEY_SECRET_SECONDS)
        return value.strip() or None

    def embedder(self) -> Embedder:
        from core.embeddings import get_embedder

        return get_embedder(self.settings.embedder)

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

    async def query_vector(self, query: str, *, embed: bool = True) -> QueryVector:
        """The query as search wants it, embedded outside any transaction. With `embed` off
        (lexical search) it names the model only, so the vector cache can count the scope."""
        from core.retrieval import pgvector
        from core.retrieval.search import QueryVector

        embedder = self.services.embedder()
        vector = None
        if embed:
            vector = await self.services.call(lambda: embedder.embed([query], kind="query")[0])
        # Settled by ready_engine: a memo lookup here.
        use_pgvector = pgvector.ensure(self.engine, self.services.settings.vector_search.pgvector)
        return QueryVector.of(embedder, vector, pgvector=use_pgvector)

    async def indexer(self, items: Sequence[MemoryIn]) -> Indexer:
        """An indexer with the items' vectors made up front, and the write gate's reads done,
        outside any transaction (core/memory/gate.py `look_ahead`)."""
        from core.app.remember import indexer
        from core.memory import gate
        from core.memory.indexing import document_text

        index = indexer(self.services.embedder(), self.services.settings)
        if not items:
            return index

        def ready() -> None:
            index.prepare([document_text(m.title, m.key, m.tags, m.content) for m in items])
            gate.look_ahead(self.engine, self.scope, items, index)

        await self.services.call(ready)
        return index

    async def text_indexer(self, texts: Sequence[str]) -> Indexer:
        """An indexer with these document texts' vectors made up front, outside any
        transaction (an embedder may call a remote API)."""
        from core.app.remember import indexer

        index = indexer(self.services.embedder(), self.services.settings)
        if texts:
            await self.services.call(lambda: index.prepare(texts))
        return index

    async def patch_indexer(self, memory_id: str, patch: MemoryPatch) -> Indexer:
        """An indexer with the patched memory's new vector made up front: the text is read
        first, so the embedder (a network call for a remote one) runs outside the write
        transaction. Should the memory change in between, the write embeds what it finds."""
        from core.memory import store as memories
        from core.memory.indexing import document_text

        changes = patch.changes()
        if not {"content", "title", "tags"} & changes.keys():
            return await self.text_indexer([])
        current = await self.read(memories.get, memory_id)
        text = document_text(
            changes.get("title", current["title"]),
            current["key"],
            changes.get("tags", current["tags"]),
            changes.get("content", current["content"]),
        )
        return await self.text_indexer([text])

    async def own_transactions(
        self,
        fn: Callable[Concatenate[Engine, Settings, Scope, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        """For core calls that open their own transactions, or none (access counts)."""
        return await self.services.call(
            lambda: fn(self.engine, self.services.settings, self.scope, *args, **kw)
        )

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

    async def read_each(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """`read` for search and context packs, whose statements need no snapshot in common:
        with pgvector, without BEGIN and COMMIT, two round trips fewer (engine.reads). The
        numpy path stays in a transaction: its cache reads changes through a server-side
        cursor, which lives in one."""
        from core.retrieval import pgvector

        # Settled by ready_engine: a memo lookup here.
        if not pgvector.ensure(self.engine, self.services.settings.vector_search.pgvector):
            return await self.read(fn, *args, **kw)

        def run() -> T:
            with reads(self.engine) as conn:
                return fn(conn, self.scope, *args, **kw)

        return await self.services.call(run)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # mem0's clients send their key as "Token <key>": the same key, another word for it.
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip()
    # Browsers carry an account session's access token in an HttpOnly cookie instead (set by
    # /auth/login with "transport": "cookie"); a header, when sent, always wins.
    cookie = request.cookies.get(sessions.ACCESS_COOKIE)
    if not header and cookie:
        return cookie
    raise Unauthorized(
        "send an API key or access token as 'Authorization: Bearer <token>' "
        "(or 'Token <key>', as mem0's clients do)",
        code="missing_credentials",
    )


async def authorize(request: Request, surface: str = API) -> Context:
    """The caller's scope from an API key, MNEMO_API_KEY, or an access token (account session
    or OAuth grant: scope = the session's brain, role read live from the membership). An OAuth
    token must have been issued for `surface`, the REST API or MCP
    (core/identity/oauth/metadata.py)."""
    svc = services(request)
    token = bearer_token(request)
    base = base_url(svc.settings.auth.public_url, str(request.base_url))
    allowed = accepted_audiences(base, surface)

    def resolve() -> Context:
        engine = svc.ready_engine()
        if token.startswith(sessions.ACCESS_PREFIX):
            with single_read(engine) as conn:
                found = sessions.verify_access(conn, token)
            if found is None:
                raise Unauthorized(
                    "the access token is not valid, has expired or was revoked",
                    code="invalid_token",
                )
            scope = sessions.to_scope(found, allowed)
            if found.stale:
                with transaction(engine, write=True) as conn:
                    sessions.touch(conn, found.session_id)
        elif keys.matches_single_key(token, svc.single_key()):
            # Single-key mode: the operator's key, so it may manage the default brain's keys.
            scope = Scope(brain_id=svc.default_brain(engine), principal="key:env", role="owner")
        else:
            with single_read(engine) as conn:
                found_key = keys.find_key(conn, token)
            if found_key is None:
                raise Unauthorized("the API key is not valid or was revoked", code="invalid_key")
            if found_key.stale:
                with transaction(engine, write=True) as conn:
                    keys.touch(conn, found_key.key_id)
            scope = found_key.scope
        limits = svc.settings.rate_limits
        if limits.rule("api.brain") is not None:
            # The per-brain request quota (MNEMO_RATE_LIMIT_API_BRAIN); off by default.
            limiter = ratelimit.limiter_for(limits, engine)
            ratelimit.enforce(limiter, limits, "api.brain", scope.brain_id)
        return Context(svc, engine, scope)

    return await svc.call(resolve)
