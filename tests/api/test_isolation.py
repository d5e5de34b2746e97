"""Tenant and user isolation, on both stores.

Two brains (A and B), each with a brain-wide key and user-scoped keys for the same two user ids
(the same ids in both brains, so a leak by user id alone would show). Across the boundary
(another brain's key, or another user's user-scoped key) every operation on a memory is a 404
and changes nothing; lists, the changelog and fact lookups return nothing of the other side.
A property-based test then runs random operation sequences by random principals against a model
of who owns what.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine

from core.identity.keys import create_key
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.errors import MnemoError
from tests.conftest import Tenant, make_tenant
from tests.lambda_client import LambdaClient, Reply

Owner = tuple[str, str | None]  # (brain label, user id or None for a brain-level memory)

USERS = ("alice", "bob")
OWNERS: tuple[Owner, ...] = tuple((b, u) for b in ("A", "B") for u in (None, *USERS))


@dataclass(frozen=True)
class Principal:
    name: str
    brain: str
    user: str | None
    key: str
    read_only: bool = False

    def sees(self, owner: Owner) -> bool:
        brain, user = owner
        return brain == self.brain and (self.user is None or self.user == user)


@dataclass
class World:
    client: LambdaClient
    principals: dict[str, Principal]
    memories: dict[Owner, str] = field(default_factory=dict)

    def as_(self, name: str) -> LambdaClient:
        return self.client.as_key(self.principals[name].key)

    def owner_name(self, owner: Owner) -> str:
        brain, user = owner
        return brain if user is None else f"{brain}:{user}"

    def owner_client(self, owner: Owner) -> LambdaClient:
        return self.as_(self.owner_name(owner))

    def outsiders(self, owner: Owner) -> list[Principal]:
        return [p for p in self.principals.values() if not p.sees(owner)]

    def owner_of(self, memory_id: str) -> Owner:
        return next(o for o, m in self.memories.items() if m == memory_id)

    def visible_ids(self, principal: Principal, user: str | None = None) -> set[str]:
        return {
            m
            for o, m in self.memories.items()
            if principal.sees(o) and (user is None or o[1] == user)
        }


def _create(client: LambdaClient, content: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", {"content": content, **fields})
    assert reply.status == 201, reply.body
    assert reply.json()["deduplicated"] is False
    data: dict[str, Any] = reply.json()
    return data


@pytest.fixture
def world(settings: Settings, tenant: Tenant, other_tenant: Tenant) -> World:
    client = LambdaClient(settings)
    principals: dict[str, Principal] = {}
    for label, t in (("A", tenant), ("B", other_tenant)):
        principals[label] = Principal(label, label, None, t.key)
        for user in USERS:
            name = f"{label}:{user}"
            principals[name] = Principal(name, label, user, t.new_key(user_id=user))
    principals["A-ro"] = Principal("A-ro", "A", None, tenant.new_key(read_only=True), True)
    principals["A:alice-ro"] = Principal(
        "A:alice-ro", "A", "alice", tenant.new_key(user_id="alice", read_only=True), True
    )
    w = World(client, principals)
    for owner in OWNERS:
        brain, user = owner
        memory = _create(
            w.owner_client(owner),
            f"secret of brain {brain} user {user}",
            tags=["secret", f"brain-{brain}"],
        )
        assert memory["user_id"] == user
        w.memories[owner] = memory["id"]
    return w


def _snapshot(w: World, owner: Owner) -> tuple[Any, ...]:
    """What the owner sees of its memory: the memory itself and its whole history."""
    client = w.owner_client(owner)
    memory_id = w.memories[owner]
    got = client.get(f"/v1/memories/{memory_id}")
    history = client.get(f"/v1/memories/{memory_id}/history")
    assert got.status == 200, got.body
    assert history.status == 200, history.body
    return got.json(), history.json()["results"]


def _feeds(w: World) -> dict[str, Any]:
    return {b: w.as_(b).get("/v1/changelog", query={"limit": 500}).json() for b in ("A", "B")}


def _assert_not_found(reply: Reply, code: str = "memory_not_found") -> None:
    assert reply.status == 404, reply.body
    assert reply.error_code == code, reply.body


# Every operation on one memory id: (name, call).
MemoryOp = Callable[[LambdaClient, str], Reply]
MEMORY_OPS: dict[str, MemoryOp] = {
    "get": lambda c, i: c.get(f"/v1/memories/{i}"),
    "history": lambda c, i: c.get(f"/v1/memories/{i}/history"),
    "patch": lambda c, i: c.patch(f"/v1/memories/{i}", {"content": "overwritten", "tags": ["x"]}),
    "delete": lambda c, i: c.delete(f"/v1/memories/{i}"),
    "archive": lambda c, i: c.post(f"/v1/memories/{i}/archive"),
    "restore": lambda c, i: c.post(f"/v1/memories/{i}/restore"),
    "purge": lambda c, i: c.post(f"/v1/memories/{i}/purge", {"confirm": True}),
}
WRITE_OPS = ("patch", "delete", "archive", "restore", "purge")


def test_visibility_matrix(world: World) -> None:
    """GET: 200 for the owner and its brain-wide key, 404 memory_not_found for everyone else."""
    for owner, memory_id in world.memories.items():
        for p in world.principals.values():
            reply = world.client.as_key(p.key).get(f"/v1/memories/{memory_id}")
            if p.sees(owner):
                assert reply.status == 200, (p.name, owner, reply.body)
                assert reply.json()["id"] == memory_id
            else:
                _assert_not_found(reply)


@pytest.mark.parametrize("op", ["get", "history", *WRITE_OPS])
def test_operation_across_boundary_is_404_and_changes_nothing(world: World, op: str) -> None:
    if op == "restore":  # give restore something to do: the targets are archived first
        for owner, memory_id in world.memories.items():
            reply = world.owner_client(owner).post(f"/v1/memories/{memory_id}/archive")
            assert reply.status == 200, reply.body
    before = {owner: _snapshot(world, owner) for owner in world.memories}
    feeds = _feeds(world)
    attempts = 0
    for owner, memory_id in world.memories.items():
        for p in world.outsiders(owner):
            if p.read_only and op in WRITE_OPS:
                continue  # read-only keys are refused first; see test_read_only_keys
            _assert_not_found(MEMORY_OPS[op](world.client.as_key(p.key), memory_id))
            attempts += 1
    assert attempts >= 20
    after = {owner: _snapshot(world, owner) for owner in world.memories}
    assert after == before
    assert _feeds(world) == feeds


def test_lists_never_cross(world: World) -> None:
    for p in world.principals.values():
        client = world.client.as_key(p.key)
        page = client.get(
            "/v1/memories", query={"state": "all", "limit": 500, "include_total": "true"}
        ).json()
        assert {m["id"] for m in page["results"]} == world.visible_ids(p), p.name
        assert page["total"] == len(world.visible_ids(p))
        tagged = client.get("/v1/memories", query={"tag": "secret,brain-a,brain-b"}).json()
        assert {m["id"] for m in tagged["results"]} == world.visible_ids(p), p.name
        for user in (*USERS, "carol"):
            filtered = client.get(
                "/v1/memories",
                query={"user_id": user, "state": "all", "limit": 500, "include_total": "true"},
            )
            assert filtered.status == 200, filtered.body
            expected = world.visible_ids(p, user)
            assert {m["id"] for m in filtered.json()["results"]} == expected, (p.name, user)
            assert filtered.json()["total"] == len(expected)
            by_user = client.get(f"/v1/users/{user}/memories", query={"state": "all"})
            assert by_user.status == 200, by_user.body
            assert {m["id"] for m in by_user.json()["results"]} == expected, (p.name, user)
        if p.user is not None:  # a user-scoped key asking for another user gets nothing
            other = next(u for u in USERS if u != p.user)
            empty = client.get("/v1/memories", query={"user_id": other}).json()
            assert empty["results"] == []


def test_changelog_never_crosses(world: World) -> None:
    # Some traffic of every kind, so the feed holds more than creations.
    for owner, memory_id in world.memories.items():
        client = world.owner_client(owner)
        assert client.patch(f"/v1/memories/{memory_id}", {"title": "t"}).status == 200
        assert client.post(f"/v1/memories/{memory_id}/archive").status == 200
        assert client.post(f"/v1/memories/{memory_id}/restore").status == 200
    for p in world.principals.values():
        entries = world.client.as_key(p.key).get("/v1/changelog", query={"limit": 500}).json()
        entity_ids = {e["entity_id"] for e in entries["results"]}
        assert entity_ids == world.visible_ids(p), p.name
        other_brain = "B" if p.brain == "A" else "A"
        for e in entries["results"]:
            owner = world.owner_of(e["entity_id"])
            assert e["user_id"] == owner[1]
            assert f"brain {p.brain}" in e["summary"]
            assert f"brain {other_brain}" not in e["summary"]
            if p.user is not None:
                assert f"user {p.user}" in e["summary"]


def test_facts_never_cross(world: World) -> None:
    facts = {
        ("A", "alice"): "alice in A likes red",
        ("A", "bob"): "bob in A likes blue",
        ("B", "alice"): "alice in B likes green",
        ("A", None): "brain A has no favourite colour",
    }
    ids = {}
    for owner, content in facts.items():
        ids[owner] = _create(world.owner_client(owner), content, type="fact", key="colour")["id"]

    def fact(name: str, user: str | None = None, key: str = "colour") -> Reply:
        query = {} if user is None else {"user_id": user}
        return world.as_(name).get(f"/v1/facts/{key}", query=query)

    expect: list[tuple[str, str | None, Owner | None]] = [
        ("A:alice", None, ("A", "alice")),
        ("A:alice", "alice", ("A", "alice")),
        ("A:alice", "bob", None),
        ("A:bob", None, ("A", "bob")),
        ("A:bob", "alice", None),
        ("A", None, ("A", None)),
        ("A", "alice", ("A", "alice")),
        ("A", "bob", ("A", "bob")),
        ("A", "carol", None),
        ("B", None, None),
        ("B", "alice", ("B", "alice")),
        ("B", "bob", None),
        ("B:alice", None, ("B", "alice")),
        ("B:alice", "bob", None),
        ("B:bob", None, None),
        ("B:bob", "alice", None),
        ("A-ro", "alice", ("A", "alice")),
        ("A:alice-ro", None, ("A", "alice")),
        ("A:alice-ro", "bob", None),
    ]
    for name, user, owner in expect:
        reply = fact(name, user)
        if owner is None:
            _assert_not_found(reply, "fact_not_found")
        else:
            assert reply.status == 200, (name, user, reply.body)
            assert reply.json()["id"] == ids[owner], (name, user)
            assert reply.json()["content"] == facts[owner]
    # A key only brain A has is invisible from B, whatever user is asked for.
    _create(world.as_("A:bob"), "bob's secret plan", type="fact", key="plan")
    for name in ("B", "B:alice", "B:bob", "A:alice"):
        for user in (None, "alice", "bob"):
            if name == "A:alice" and user == "alice":
                continue
            _assert_not_found(fact(name, user, "plan"), "fact_not_found")
    # Nobody's fact was superseded by another scope's fact with the same key.
    for owner, memory_id in ids.items():
        got = world.owner_client(owner).get(f"/v1/memories/{memory_id}").json()
        assert got["state"] == "active"
        assert got["superseded_by"] is None


def test_fact_supersede_stays_in_scope(world: World) -> None:
    first = {
        o: _create(world.owner_client(o), f"{o} v1", type="fact", key="k")["id"] for o in OWNERS
    }
    new = _create(world.as_("A:alice"), "alice v2", type="fact", key="k")
    old = world.as_("A:alice").get(f"/v1/memories/{first['A', 'alice']}").json()
    assert old["state"] == "archived"
    assert old["superseded_by"] == new["id"]
    for owner, memory_id in first.items():
        if owner != ("A", "alice"):
            got = world.owner_client(owner).get(f"/v1/memories/{memory_id}").json()
            assert got["state"] == "active", owner
    # A brain-wide key writing for alice supersedes alice's fact, and only hers.
    newer = _create(world.as_("A"), "alice v3", type="fact", key="k", user_id="alice")
    assert newer["user_id"] == "alice"
    got = world.as_("A:alice").get(f"/v1/memories/{new['id']}").json()
    assert got["superseded_by"] == newer["id"]
    got = world.as_("A").get(f"/v1/memories/{first['A', None]}").json()
    assert got["state"] == "active"


def test_user_scoped_key_writes_only_its_user(world: World) -> None:
    alice = world.as_("A:alice")
    wide = world.as_("A")
    everything = {"state": "all", "limit": 500, "include_total": "true"}
    count = wide.get("/v1/memories", query=everything).json()
    feed = _feeds(world)

    refused = alice.post("/v1/memories", {"content": "for bob", "user_id": "bob"})
    assert refused.status == 403, refused.body
    assert refused.error_code == "user_scope_mismatch"
    batch = alice.post(
        "/v1/memories/batch",
        {"memories": [{"content": "ok for alice"}, {"content": "for bob", "user_id": "bob"}]},
    )
    assert batch.status in (403, 422), batch.body
    assert "user_scope_mismatch" in batch.body
    assert wide.get("/v1/memories", query=everything).json() == count
    assert _feeds(world) == feed

    assert _create(alice, "alice by default")["user_id"] == "alice"
    assert _create(alice, "alice explicitly", user_id="alice")["user_id"] == "alice"
    # A brain-wide key may write for any user, and filter by user on reads.
    for_bob = _create(wide, "bob via the brain key", user_id="bob")
    assert for_bob["user_id"] == "bob"
    bobs = wide.get("/v1/memories", query={"user_id": "bob"}).json()["results"]
    assert for_bob["id"] in {m["id"] for m in bobs}
    assert all(m["user_id"] == "bob" for m in bobs)
    assert world.as_("A:bob").get(f"/v1/memories/{for_bob['id']}").status == 200
    _assert_not_found(alice.get(f"/v1/memories/{for_bob['id']}"))


@pytest.mark.parametrize("name", ["A-ro", "A:alice-ro"])
def test_read_only_keys(world: World, name: str) -> None:
    ro = world.as_(name)
    before = {owner: _snapshot(world, owner) for owner in world.memories}
    feed = _feeds(world)

    def refused(reply: Reply) -> None:
        assert reply.status == 403, reply.body
        assert reply.error_code == "read_only_key", reply.body

    refused(ro.post("/v1/memories", {"content": "read-only write"}))
    refused(ro.post("/v1/memories", {"content": "read-only fact", "type": "fact", "key": "k"}))
    refused(ro.post("/v1/memories/batch", {"memories": [{"content": "read-only batch"}]}))
    visible = [o for o in world.memories if world.principals[name].sees(o)]
    assert visible
    for owner in visible:
        memory_id = world.memories[owner]
        for op in WRITE_OPS:
            refused(MEMORY_OPS[op](ro, memory_id))
        assert ro.get(f"/v1/memories/{memory_id}").status == 200
        assert ro.get(f"/v1/memories/{memory_id}/history").status == 200
    assert {owner: _snapshot(world, owner) for owner in world.memories} == before
    assert _feeds(world) == feed


def test_dedup_never_crosses_tenants_or_users(world: World) -> None:
    content = "the very same words"
    writers: list[tuple[str, dict[str, Any]]] = [
        ("A", {}),
        ("A", {"user_id": "carol"}),
        ("A:alice", {}),
        ("A:bob", {}),
        ("B", {}),
        ("B", {"user_id": "carol"}),
        ("B:alice", {}),
        ("B:bob", {}),
    ]
    first = {}
    for name, extra in writers:
        memory = _create(world.as_(name), content, **extra)
        first[name, extra.get("user_id")] = memory["id"]
    assert len(set(first.values())) == len(writers)
    for (name, user), memory_id in first.items():  # within one scope, dedup still works
        extra = {} if user is None else {"user_id": user}
        again = world.as_(name).post("/v1/memories", {"content": content, **extra})
        assert again.status == 200, again.body
        assert again.json()["deduplicated"] is True
        assert again.json()["id"] == memory_id
    # The brain-wide key writing for alice lands on alice's memory, not a new one.
    via_wide = world.as_("A").post("/v1/memories", {"content": content, "user_id": "alice"})
    assert via_wide.json()["id"] == first["A:alice", None]
    # Same for facts: one per (brain, user, key), never shared.
    facts = {
        name: _create(world.as_(name), "same fact", type="fact", key="same")["id"]
        for name in ("A", "A:alice", "A:bob", "B", "B:alice")
    }
    assert len(set(facts.values())) == len(facts)


def test_duplicate_checks_stay_in_scope(world: World) -> None:
    """PATCH and restore refuse a duplicate of the same scope only."""
    taken = "taken words"
    for name in ("A:bob", "A", "B:alice", "B"):
        _create(world.as_(name), taken)
    alice = world.as_("A:alice")
    mine = _create(alice, "mine")
    patched = alice.patch(f"/v1/memories/{mine['id']}", {"content": taken})
    assert patched.status == 200, patched.body
    assert patched.json()["content"] == taken
    assert alice.post(f"/v1/memories/{mine['id']}/archive").status == 200
    restored = alice.post(f"/v1/memories/{mine['id']}/restore")
    assert restored.status == 200, restored.body
    # ...and still refuses one in the same scope.
    twin = _create(alice, "twin")
    clash = alice.patch(f"/v1/memories/{twin['id']}", {"content": taken})
    assert clash.status == 409
    assert clash.error_code == "duplicate_content"


def test_blank_user_id_key_is_not_a_back_door_to_brain_level_memories(
    world: World, tenant: Tenant
) -> None:
    """A key made with user_id "" (`mnemo keys create --user-id ""`, which the CLI reports as
    "whole brain") must either be refused, or be brain-wide, or see only user "". Today it is
    scoped to user "" by `_visible`, while dedup and the fact queries fold NULL and "" together
    with coalesce(user_id, ''), so it reads, dedups onto and supersedes brain-level facts."""
    wide = world.as_("A")
    motto = _create(wide, "the brain-level motto", type="fact", key="motto")
    note_id = world.memories["A", None]
    note = wide.get(f"/v1/memories/{note_id}").json()
    try:
        with transaction(tenant.engine) as conn:
            key = create_key(conn, tenant.slug, user_id="")
    except MnemoError:
        return  # refused at creation: fine
    if key.user_id is None:
        return  # normalised to a brain-wide key, as the CLI says: fine
    blank = world.client.as_key(key.secret)
    probe = blank.get("/v1/memories")
    if probe.status == 401:
        return  # refused when used: fine
    assert probe.status == 200, probe.body
    assert probe.json()["results"] == []
    _assert_not_found(blank.get(f"/v1/memories/{note_id}"))
    _assert_not_found(blank.get("/v1/facts/motto"), "fact_not_found")
    again = blank.post("/v1/memories", {"content": note["content"]})
    assert again.json()["id"] != note_id, "dedup handed a brain-level memory to a user key"
    blank.post("/v1/memories", {"content": "a blank user's motto", "type": "fact", "key": "motto"})
    kept = wide.get(f"/v1/memories/{motto['id']}").json()
    assert kept["state"] == "active", "a user key superseded a brain-level fact"


# --------------------------------------------------------------------------------------------
# Property-based: random operations by random principals against an ownership model.

PRINCIPAL_SPECS: dict[str, tuple[str, str | None]] = {
    "A": ("A", None),
    "A:u1": ("A", "u1"),
    "A:u2": ("A", "u2"),
    "B": ("B", None),
    "B:u1": ("B", "u1"),
}
CONTENTS = ("alpha", "beta", "gamma", "delta")
FACT_KEYS = ("colour", "city")
USER_CHOICES = (None, "u1", "u2", "u3")

principal_names = st.sampled_from(sorted(PRINCIPAL_SPECS))
users = st.sampled_from(USER_CHOICES)
contents = st.sampled_from(CONTENTS)
fact_keys = st.sampled_from(FACT_KEYS)
creates = st.tuples(st.just("create"), principal_names, users, contents)
facts = st.tuples(st.just("fact"), principal_names, users, contents, fact_keys)
lookups = st.tuples(st.just("lookup"), principal_names, users, fact_keys)
operation = st.one_of(
    creates,
    creates,
    facts,
    facts,
    *(
        st.tuples(st.just(op), principal_names, st.integers(0, 63), contents)
        for op in ("get", "history", "patch", "archive", "restore", "delete", "purge")
    ),
    st.tuples(st.just("list"), principal_names, users),
    st.tuples(st.just("users"), principal_names, st.sampled_from(USER_CHOICES[1:])),
    st.tuples(st.just("changelog"), principal_names),
    lookups,
    st.tuples(st.just("lookup_known"), principal_names, st.integers(0, 63), st.booleans()),
    st.tuples(st.just("lookup_known"), principal_names, st.integers(0, 63), st.booleans()),
)


class Model:
    """Who owns each memory id ever created, and which were purged."""

    def __init__(self, client: LambdaClient, keys: dict[str, str]) -> None:
        self.client = client
        self.keys = keys
        self.owner: dict[str, Owner] = {}
        self.order: list[str] = []
        self.purged: set[str] = set()
        self.facts: list[tuple[str, str | None]] = []  # (key, user) of every fact written

    def call(self, name: str) -> LambdaClient:
        return self.client.as_key(self.keys[name])

    @staticmethod
    def sees(name: str, owner: Owner) -> bool:
        brain, user = PRINCIPAL_SPECS[name]
        return owner[0] == brain and (user is None or owner[1] == user)

    def check_memory(self, name: str, memory: dict[str, Any]) -> None:
        """Any memory a principal receives must be one it may see."""
        assert memory["id"] in self.owner, f"{name} received an unknown memory {memory['id']}"
        owner = self.owner[memory["id"]]
        assert self.sees(name, owner), f"{name} received {owner}'s memory {memory['id']}"
        assert memory["user_id"] == owner[1]

    def expected(self, name: str, user: str | None = None) -> set[str]:
        return {
            m
            for m, o in self.owner.items()
            if m not in self.purged and self.sees(name, o) and (user is None or o[1] == user)
        }

    def create(self, name: str, user: str | None, body: dict[str, Any]) -> None:
        brain, scoped = PRINCIPAL_SPECS[name]
        if user is not None:
            body["user_id"] = user
        reply = self.call(name).post("/v1/memories", body)
        if scoped is not None and user not in (None, scoped):
            assert reply.status == 403, reply.body
            assert reply.error_code == "user_scope_mismatch"
            return
        owner = (brain, scoped or user)
        if "key" in body:
            self.facts.append((body["key"], owner[1]))
        memory = reply.json()
        event(f"create: {reply.status}")
        if reply.status == 200:  # deduplicated: it must be this scope's own memory
            assert memory["deduplicated"] is True
            assert self.owner.get(memory["id"]) == owner, (name, body, memory)
        else:
            assert reply.status == 201, reply.body
            assert memory["id"] not in self.owner
            self.owner[memory["id"]] = owner
            self.order.append(memory["id"])
        self.check_memory(name, memory)

    def on_id(self, op: str, name: str, memory_id: str, content: str) -> None:
        c = self.call(name)
        reply = {
            "get": lambda: c.get(f"/v1/memories/{memory_id}"),
            "history": lambda: c.get(f"/v1/memories/{memory_id}/history"),
            "patch": lambda: c.patch(f"/v1/memories/{memory_id}", {"content": content}),
            "archive": lambda: c.post(f"/v1/memories/{memory_id}/archive"),
            "restore": lambda: c.post(f"/v1/memories/{memory_id}/restore"),
            "delete": lambda: c.delete(f"/v1/memories/{memory_id}"),
            "purge": lambda: c.post(f"/v1/memories/{memory_id}/purge", {"confirm": True}),
        }[op]()
        if memory_id in self.purged or not self.sees(name, self.owner[memory_id]):
            _assert_not_found(reply)
            event("404 on an id out of scope or purged")
            return
        event(f"{op} in scope: {reply.status}")
        assert reply.status in (200, 409), (op, reply.body)
        if reply.status == 409:
            assert op in ("patch", "restore"), reply.body
            return
        if op == "history":
            for row in reply.json()["results"]:
                assert row["memory_id"] == memory_id
        elif op == "purge":
            self.purged.add(memory_id)
        else:
            self.check_memory(name, reply.json())

    def run(self, op: tuple[Any, ...]) -> None:
        kind, name = op[0], op[1]
        c = self.call(name)
        if kind == "create":
            self.create(name, op[2], {"content": op[3]})
        elif kind == "fact":
            self.create(name, op[2], {"content": op[3], "type": "fact", "key": op[4]})
        elif kind == "list":
            query: dict[str, Any] = {"state": "all", "limit": 500}
            if op[2] is not None:
                query["user_id"] = op[2]
            reply = c.get("/v1/memories", query=query)
            assert reply.status == 200, reply.body
            for memory in reply.json()["results"]:
                self.check_memory(name, memory)
            assert {m["id"] for m in reply.json()["results"]} == self.expected(name, op[2])
            event(f"list: {'some' if reply.json()['results'] else 'none'}")
        elif kind == "users":
            reply = c.get(f"/v1/users/{op[2]}/memories", query={"state": "all", "limit": 500})
            assert reply.status == 200, reply.body
            for memory in reply.json()["results"]:
                self.check_memory(name, memory)
            assert {m["id"] for m in reply.json()["results"]} == self.expected(name, op[2])
        elif kind == "changelog":
            reply = c.get("/v1/changelog", query={"limit": 500})
            assert reply.status == 200, reply.body
            for entry in reply.json()["results"]:
                owner = self.owner.get(entry["entity_id"])
                assert owner is not None, entry
                assert self.sees(name, owner), (name, owner, entry)
            event(f"changelog: {'some' if reply.json()['results'] else 'none'}")
        elif kind in ("lookup", "lookup_known"):
            if kind == "lookup":
                user, key = op[2], op[3]
            elif self.facts:  # a key and user some scope wrote a fact for
                key, user = self.facts[op[2] % len(self.facts)]
                user = user if op[3] else None
            else:
                return
            reply = c.get(f"/v1/facts/{key}", query={} if user is None else {"user_id": user})
            event(f"fact lookup: {reply.status}")
            if reply.status == 404:
                assert reply.error_code == "fact_not_found"
                return
            assert reply.status == 200, reply.body
            fact = reply.json()
            self.check_memory(name, fact)
            brain, scoped = PRINCIPAL_SPECS[name]
            assert scoped is None or user in (None, scoped)
            assert self.owner[fact["id"]] == (brain, scoped or user)
            assert fact["key"] == key
            assert fact["state"] == "active"
        elif self.order:
            self.on_id(kind, name, self.order[op[2] % len(self.order)], op[3])

    def sweep(self) -> None:
        """Every principal against every id ever created: 200 in scope, 404 otherwise."""
        for name in PRINCIPAL_SPECS:
            for memory_id in self.order:
                self.on_id("get", name, memory_id, "")


@hsettings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=10, max_size=40))
def test_random_operations_never_cross_scopes(
    ops: list[tuple[Any, ...]], engine: Engine, settings: Settings
) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    keys = {
        "A": a.key,
        "A:u1": a.new_key(user_id="u1"),
        "A:u2": a.new_key(user_id="u2"),
        "B": b.key,
        "B:u1": b.new_key(user_id="u1"),
    }
    model = Model(LambdaClient(settings), keys)
    # A memory of every scope up front, so operations on ids have cross-scope targets.
    for name, user in (("A", None), ("A:u1", None), ("A:u2", None), ("B", None), ("B", "u2")):
        model.create(name, user, {"content": f"seed {uuid.uuid4().hex}"})
    for op in ops:
        model.run(op)
    model.sweep()
