"""The synchronous client, on httpx."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack, cast

import httpx

from mnemo_client import _api, _graph
from mnemo_client._api import Call, segment
from mnemo_client.errors import MnemoConnectionError
from mnemo_client.types import (
    AddResult,
    ChangelogPage,
    ContextOptions,
    ContextPack,
    Digest,
    GraphStats,
    Health,
    HistoryEntry,
    Link,
    LinkDeleted,
    LinkPage,
    ListOptions,
    Memory,
    MemoryChanges,
    MemoryFields,
    MemoryPage,
    Neighbor,
    Path,
    Purged,
    QueryFilters,
    QueryResult,
    RegenerateResult,
    ReindexResult,
    SearchOptions,
    SearchPage,
    Subgraph,
    Suggestion,
    UserMemories,
    UserMemoryPage,
    UserSummary,
    UserSummaryResult,
)


class MnemoClient:
    """Mnemo over HTTP: OpenMemory's calls (`add`, `query`, `get_user_memories`,
    `get_user_summary`, `regenerate_user_summary`) and the native /v1 API.

    `api_key` and `base_url` default to MNEMO_API_KEY and MNEMO_BASE_URL (else
    http://localhost:8080). 429 and 5xx answers and network failures are tried again up to
    `max_retries` times with exponential backoff and full jitter, honouring Retry-After; then
    the error is raised (errors.py), carrying the server's error code.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (
            base_url or os.environ.get("MNEMO_BASE_URL") or _api.DEFAULT_BASE_URL
        ).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("MNEMO_API_KEY")
        self._backoff = _api.Backoff(max_retries, backoff_base, backoff_max)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=_api.headers(key, headers),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MnemoClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json
                )
            except httpx.TransportError as error:
                if attempt >= self._backoff.max_retries:
                    raise MnemoConnectionError(
                        f"{call.method} {self.base_url}{call.path} failed after "
                        f"{attempt + 1} attempts: {error!r}"
                    ) from error
                self._sleep(self._backoff.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in _api.RETRY_STATUSES and attempt < self._backoff.max_retries:
                self._sleep(self._backoff.delay(attempt, _api.retry_after(response)))
                attempt += 1
                continue
            return _api.read(response)

    # --- OpenMemory's calls ---------------------------------------------------------------------

    def add(
        self,
        content: str,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> AddResult:
        """POST /memory/add."""
        payload: dict[str, Any] = {"content": content}
        for name, value in (("tags", tags), ("metadata", metadata), ("user_id", user_id)):
            if value is not None:
                payload[name] = value
        return cast(AddResult, self._call(Call("POST", "/memory/add", json=payload)))

    def query(
        self, query: str, k: int | None = None, filters: QueryFilters | None = None
    ) -> QueryResult:
        """POST /memory/query: {"matches": [{"score", "content", ...}]}."""
        payload: dict[str, Any] = {"query": query}
        if k is not None:
            payload["k"] = k
        if filters:
            payload["filters"] = dict(filters)
        return cast(QueryResult, self._call(Call("POST", "/memory/query", json=payload)))

    def get_user_memories(self, user_id: str, limit: int = 100, offset: int = 0) -> UserMemories:
        """GET /users/{user_id}/memories?l=&u=: a user nobody wrote for has no items."""
        call = Call(
            "GET", f"/users/{segment(user_id)}/memories", (("l", str(limit)), ("u", str(offset)))
        )
        return cast(UserMemories, self._call(call))

    def get_user_summary(self, user_id: str) -> UserSummaryResult:
        """GET /users/{user_id}/summary (made first when due)."""
        call = Call("GET", f"/users/{segment(user_id)}/summary")
        return cast(UserSummaryResult, self._call(call))

    def regenerate_user_summary(self, user_id: str) -> RegenerateResult:
        """POST /users/{user_id}/summary/regenerate."""
        call = Call("POST", f"/users/{segment(user_id)}/summary/regenerate")
        return cast(RegenerateResult, self._call(call))

    # --- memories -------------------------------------------------------------------------------

    def create_memory(self, content: str, **fields: Unpack[MemoryFields]) -> Memory:
        """POST /v1/memories; an exact duplicate returns the existing memory
        (`deduplicated` is then True)."""
        call = Call("POST", "/v1/memories", json=_api.body(fields, content=content))
        return cast(Memory, self._call(call))

    def create_memories(self, memories: list[Mapping[str, Any]]) -> list[Memory]:
        """POST /v1/memories/batch: all or nothing."""
        call = Call("POST", "/v1/memories/batch", json={"memories": [dict(m) for m in memories]})
        return cast(list[Memory], self._call(call)["results"])

    def get_memory(self, memory_id: str) -> Memory:
        return cast(Memory, self._call(Call("GET", f"/v1/memories/{segment(memory_id)}")))

    def list_memories(self, **options: Unpack[ListOptions]) -> MemoryPage:
        """GET /v1/memories: newest first, one page; pass `cursor` for the next."""
        return cast(MemoryPage, self._call(Call("GET", "/v1/memories", _api.query(options))))

    def iter_memories(self, **options: Unpack[ListOptions]) -> Iterator[Memory]:
        """Every memory the filters select, following the cursors."""
        while True:
            page = self.list_memories(**options)
            yield from page["results"]
            if not page["next_cursor"]:
                return
            options["cursor"] = page["next_cursor"]

    def update_memory(self, memory_id: str, **changes: Unpack[MemoryChanges]) -> Memory:
        call = Call("PATCH", f"/v1/memories/{segment(memory_id)}", json=dict(changes))
        return cast(Memory, self._call(call))

    def delete_memory(self, memory_id: str) -> Memory:
        """Soft delete: restorable."""
        return cast(Memory, self._call(Call("DELETE", f"/v1/memories/{segment(memory_id)}")))

    def archive_memory(self, memory_id: str) -> Memory:
        call = Call("POST", f"/v1/memories/{segment(memory_id)}/archive")
        return cast(Memory, self._call(call))

    def restore_memory(self, memory_id: str) -> Memory:
        call = Call("POST", f"/v1/memories/{segment(memory_id)}/restore")
        return cast(Memory, self._call(call))

    def purge_memory(self, memory_id: str) -> Purged:
        """Erase a memory and its history for good."""
        call = Call("POST", f"/v1/memories/{segment(memory_id)}/purge", json={"confirm": True})
        return cast(Purged, self._call(call))

    def memory_history(self, memory_id: str) -> list[HistoryEntry]:
        call = Call("GET", f"/v1/memories/{segment(memory_id)}/history")
        return cast(list[HistoryEntry], self._call(call)["results"])

    def get_fact(
        self,
        key: str,
        user_id: str | None = None,
        *,
        as_of: str | None = None,
        known_at: str | None = None,
    ) -> Memory:
        """The current fact for a key; with `as_of` the one true then, with `known_at` the one
        the store held then."""
        params = _api.query({"user_id": user_id, "as_of": as_of, "known_at": known_at})
        call = Call("GET", f"/v1/facts/{segment(key)}", params)
        return cast(Memory, self._call(call))

    # --- retrieval ------------------------------------------------------------------------------

    def search(self, query: str, **options: Unpack[SearchOptions]) -> SearchPage:
        call = Call("POST", "/v1/search", json=_api.body(options, query=query))
        return cast(SearchPage, self._call(call))

    def context(self, query: str, **options: Unpack[ContextOptions]) -> ContextPack:
        """A token-budgeted context pack with citations, for a prompt."""
        call = Call("POST", "/v1/context", json=_api.body(options, query=query))
        return cast(ContextPack, self._call(call))

    def reindex(self) -> ReindexResult:
        return cast(ReindexResult, self._call(Call("POST", "/v1/reindex")))

    # --- links and the graph ---------------------------------------------------------------------

    def create_link(
        self,
        from_id: str,
        to_id: str,
        relation: str,
        *,
        label: str | None = None,
        weight: float | None = None,
        actor_id: str | None = None,
    ) -> Link:
        """POST /v1/links: the same link again returns it (`deduplicated` is then True)."""
        call = _graph.create_link(from_id, to_id, relation, label, weight, actor_id)
        return cast(Link, self._call(call))

    def get_link(self, link_id: str) -> Link:
        return cast(Link, self._call(_graph.get_link(link_id)))

    def delete_link(self, link_id: str) -> LinkDeleted:
        return cast(LinkDeleted, self._call(_graph.delete_link(link_id)))

    def links(
        self,
        memory_id: str,
        *,
        direction: str | None = None,
        relation: str | Sequence[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LinkPage:
        """A memory's links both ways (or `direction` "out" / "in"), newest first."""
        call = _graph.links(memory_id, direction, relation, limit, cursor)
        return cast(LinkPage, self._call(call))

    def neighbors(
        self,
        memory_id: str,
        *,
        direction: str | None = None,
        relation: str | Sequence[str] | None = None,
        limit: int | None = None,
        include_archived: bool | None = None,
    ) -> list[Neighbor]:
        """The memories one link away, strongest link first."""
        call = _graph.neighbors(memory_id, direction, relation, limit, include_archived)
        return cast(list[Neighbor], (self._call(call))["results"])

    def suggestions(
        self, memory_id: str, *, limit: int | None = None, min_score: float | None = None
    ) -> list[Suggestion]:
        """Memories worth linking to this one, each with its score and reasons."""
        call = _graph.suggestions(memory_id, limit, min_score)
        return cast(list[Suggestion], (self._call(call))["results"])

    def subgraph(
        self,
        *,
        memory_id: str | None = None,
        query: str | None = None,
        radius: int | None = None,
        limit: int | None = None,
        relation: str | Sequence[str] | None = None,
        seeds: int | None = None,
        user_id: str | None = None,
        include_archived: bool | None = None,
    ) -> Subgraph:
        """The memories within `radius` links of one memory or of a query's best hits."""
        call = _graph.subgraph(
            memory_id, query, radius, limit, relation, seeds, user_id, include_archived
        )
        return cast(Subgraph, self._call(call))

    def path(
        self,
        from_id: str,
        to_id: str,
        *,
        max_hops: int | None = None,
        relation: str | Sequence[str] | None = None,
        include_archived: bool | None = None,
    ) -> Path:
        """A shortest path of links; NotFoundError with code "no_path" when there is none."""
        call = _graph.path(from_id, to_id, max_hops, relation, include_archived)
        return cast(Path, self._call(call))

    def graph_stats(self, *, user_id: str | None = None, top: int | None = None) -> GraphStats:
        return cast(GraphStats, self._call(_graph.graph_stats(user_id, top)))

    # --- users, summaries, history --------------------------------------------------------------

    def list_user_memories(
        self,
        user_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        state: str | None = None,
        include_total: bool | None = None,
    ) -> UserMemoryPage:
        params = _api.query(
            {"limit": limit, "cursor": cursor, "state": state, "include_total": include_total}
        )
        call = Call("GET", f"/v1/users/{segment(user_id)}/memories", params)
        return cast(UserMemoryPage, self._call(call))

    def user_summary(
        self, user_id: str, *, as_of: str | None = None, known_at: str | None = None
    ) -> UserSummary:
        """The user's summary; with `as_of`, made from what was true then, with `known_at`,
        from what the store held then (either made on demand, not stored)."""
        params = _api.query({"as_of": as_of, "known_at": known_at})
        call = Call("GET", f"/v1/users/{segment(user_id)}/summary", params)
        return cast(UserSummary, self._call(call))

    def regenerate_summary(self, user_id: str) -> UserSummary:
        call = Call("POST", f"/v1/users/{segment(user_id)}/summary/regenerate")
        return cast(UserSummary, self._call(call))

    def digest(self, *, max_tokens: int | None = None, important: int | None = None) -> Digest:
        """The brain's main themes and most important memories."""
        params = _api.query({"max_tokens": max_tokens, "important": important})
        return cast(Digest, self._call(Call("GET", "/v1/summary", params)))

    def changelog(
        self,
        *,
        since: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ChangelogPage:
        params = _api.query(
            {"since": since, "event_type": event_type, "limit": limit, "cursor": cursor}
        )
        return cast(ChangelogPage, self._call(Call("GET", "/v1/changelog", params)))

    def health(self) -> Health:
        return cast(Health, self._call(Call("GET", "/health")))
