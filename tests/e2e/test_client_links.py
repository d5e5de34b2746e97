"""mnemo_client's links and graph calls: the sync client against `mnemo serve` (a real uvicorn
subprocess) on both stores, the async client in-process through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from core.identity.keys import create_key
from core.kernel.config import Settings
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from handlers.api import create_app
from mnemo_client import AsyncMnemoClient, ConflictError, MnemoClient, NotFoundError
from tests.conftest import STORES, Tenant, new_postgres_database
from tests.serve import mnemo_serve


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, brain-wide key) of `mnemo serve` over a new database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('client-links') / 'mnemo.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_admin_url"))
    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "client-links").secret
    try:
        with mnemo_serve(url) as base:
            yield base, key
    finally:
        dispose(url)


def test_the_sync_client_links_walks_and_unlinks(served: tuple[str, str]) -> None:
    base, key = served
    with MnemoClient(api_key=key, base_url=base) as mnemo:
        a, b, c, island = (
            mnemo.create_memory(text, user_id="ada", tags=["maths"])["id"]
            for text in (
                "Ada wrote the first program",
                "The program computed Bernoulli numbers",
                "Bernoulli numbers appear in number theory",
                "Ada liked horses",
            )
        )
        made = mnemo.create_link(a, b, "causes", label="the notes", weight=0.8)
        assert made["origin"] == "manual" and made["deduplicated"] is False
        assert mnemo.create_link(a, b, "causes")["id"] == made["id"]
        with pytest.raises(ConflictError) as changed:
            mnemo.create_link(a, b, "causes", weight=0.1)
        assert changed.value.code == "link_exists"
        mnemo.create_link(c, b, "example_of")
        assert mnemo.get_link(made["id"])["label"] == "the notes"

        page = mnemo.links(b, relation=["causes", "example_of"])
        assert {(r["direction"], r["memory"]["id"]) for r in page["results"]} == {
            ("in", a),
            ("in", c),
        }
        assert [n["memory"]["id"] for n in mnemo.neighbors(a)] == [b]
        graph = mnemo.subgraph(memory_id=a, radius=2)
        assert {n["id"] for n in graph["nodes"]} == {a, b, c} and len(graph["edges"]) == 2
        route = mnemo.path(a, c, max_hops=3)
        assert route["hops"] == 2 and [e["direction"] for e in route["edges"]] == [
            "forward",
            "backward",
        ]
        with pytest.raises(NotFoundError) as missing:
            mnemo.path(a, island)
        assert missing.value.code == "no_path"
        stats = mnemo.graph_stats(user_id="ada")
        assert (stats["nodes"], stats["edges"], stats["components"]) == (4, 2, 2)
        suggested = mnemo.suggestions(island, limit=5)
        assert all(s["memory"]["id"] not in (island,) for s in suggested)
        assert mnemo.delete_link(made["id"]) == {"id": made["id"], "deleted": True}
        with pytest.raises(NotFoundError):
            mnemo.get_link(made["id"])


def test_the_async_client_has_the_links_calls(settings: Settings, tenant: Tenant) -> None:
    app = create_app(settings)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncMnemoClient(
            api_key=tenant.key, base_url="http://mnemo.test", transport=transport
        ) as om:
            a = (await om.create_memory("Async tea in the morning", user_id="u"))["id"]
            b = (await om.create_memory("Async tea in the evening", user_id="u"))["id"]
            link = await om.create_link(a, b, "related")
            assert (await om.get_link(link["id"]))["relation"] == "related"
            assert len((await om.links(a))["results"]) == 1
            assert (await om.neighbors(b))[0]["direction"] == "in"
            assert (await om.path(a, b))["hops"] == 1
            assert len((await om.subgraph(query="tea", radius=1))["nodes"]) == 2
            assert (await om.graph_stats())["edges"] == 1
            assert isinstance(await om.suggestions(a), list)
            assert (await om.delete_link(link["id"]))["deleted"] is True

    # On the thread's own loop, as Mangum does (see tests/e2e/test_client.py).
    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(scenario())
