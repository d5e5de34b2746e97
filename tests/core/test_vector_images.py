"""The saved vector cache (`vector_images`, issue 21): a cold process starts from it.

A cache loaded from the image and caught up from its watermark must hold exactly what a cache
loaded from the rows holds: the same memories, codes, owners and states, on both stores,
whatever changed after the image was saved (new memories, new vectors, new states). An image
that does not fit is ignored, never half-used; one brain's image never feeds another brain;
erasing a user deletes the brain's images; maintenance saves one only when something changed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from core.app.brain_maintenance import maintain_brain
from core.kernel.config import Settings
from core.kernel.db.engine import sql, transaction
from core.kernel.scope import Scope
from core.retrieval import vectors
from tests.conftest import Tenant
from tests.hygiene_fixtures import insert_memories

DIMS = 16


def _unit(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _add(engine: Engine, brain: str, model: str, n: int, user: str | None, seed: int) -> list[str]:
    ids = insert_memories(engine, brain, n, user_id=user, prefix=user or "none")
    with transaction(engine) as conn:
        vectors.store_many(conn, brain, model, list(zip(ids, _unit(n, seed), strict=True)))
    return ids


def _held(snapshot: vectors.Snapshot) -> dict[str, tuple[bytes, float, Any, int]]:
    """memory id -> (codes, scale, owner, state) of every live slot, owners by name."""
    users = {code: user for user, code in snapshot._user_codes.items()}
    out = {}
    for slot in np.flatnonzero(snapshot.state_of < vectors._DEAD).tolist():
        out[snapshot.ids.name(slot)] = (
            snapshot.codes[slot].tobytes(),
            float(snapshot.scale[slot]),
            users[int(snapshot.user_of[slot])],
            int(snapshot.state_of[slot]),
        )
    return out


def _cold(engine: Engine, brain: str, model: str) -> vectors.Snapshot:
    vectors.forget_all()
    with transaction(engine, write=False) as conn:
        return vectors.cached(conn, brain, model, DIMS)


def _from_rows(engine: Engine, brain: str, model: str) -> vectors.Snapshot:
    """A cold cache that ignores the image."""
    vectors.forget_all()
    entry = vectors._Entry(DIMS)
    entry.watermark = 0  # past the image check: reads every row
    with transaction(engine, write=False) as conn:
        vectors._refresh(conn, entry, brain, model)
    return entry.snapshot


def _save(engine: Engine, brain: str, model: str) -> dict[str, Any]:
    with transaction(engine) as conn:
        return vectors.save_image(conn, brain, model, DIMS)


def _image_loaded(engine: Engine, brain: str, model: str) -> bool:
    entry = vectors._Entry(DIMS)
    with transaction(engine, write=False) as conn:
        return vectors._load_image(conn, entry, brain, model)


def test_a_cache_from_the_image_holds_what_one_from_the_rows_holds(
    engine: Engine, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "_IMAGE_PART", 7)  # several parts, the last one short
    brain, model = tenant.brain_id, f"test-{uuid.uuid4().hex[:6]}"
    alice = _add(engine, brain, model, 12, "alice", 1)
    bob = _add(engine, brain, model, 6, "bob", 2)
    nobody = _add(engine, brain, model, 3, None, 3)
    # Ids of other lengths and outside ASCII: the image pads them to one width.
    odd = [f"x{'é' * i}-{uuid.uuid4().hex[: i + 2]}" for i in range(3)]
    with transaction(engine) as conn:
        for i, memory_id in enumerate(odd):
            conn.execute(
                sql(
                    "INSERT INTO memories (id, brain_id, user_id, type, content, tags, "
                    "metadata, content_hash, importance, created_at, updated_at) VALUES "
                    "(:id, :brain, 'alice', 'note', :c, '[]', '{}', :h, 0.5, 1, 1)"
                ),
                {"id": memory_id, "brain": brain, "c": f"odd {i}", "h": uuid.uuid4().hex},
            )
        vectors.store_many(conn, brain, model, list(zip(odd, _unit(3, 4), strict=True)))
        conn.execute(sql("UPDATE memories SET state = 'archived' WHERE id = :id"), {"id": bob[0]})
        vectors.touch(conn, brain, bob[0])
    assert _save(engine, brain, model) == {"written": True, "count": 24, "parts": 4}
    assert _image_loaded(engine, brain, model)
    from_image = _cold(engine, brain, model)
    assert _held(from_image) == _held(_from_rows(engine, brain, model))
    assert from_image.count == 24
    # Lookups by id, one at a time and many at once, on the sorted array.
    for memory_id in alice + bob + nobody + odd:
        slot = from_image.slot(memory_id)
        assert slot is not None and from_image.ids.name(slot) == memory_id
    assert from_image.slot("missing") is None and from_image.slot(alice[0] + "x") is None
    scores = from_image.scores(_unit(1, 9)[0])
    found = from_image.cosines(scores, [odd[2], "missing", alice[3]], missing=-5.0)
    assert found[1] == -5.0 and found[0] == scores[from_image.slot(odd[2])]
    mask = from_image.scope_mask(user_id="bob", states=("active",))
    assert int(mask.sum()) == 5 and not mask[from_image.slot(bob[0])]


def test_a_cold_cache_catches_up_from_the_image(engine: Engine, tenant: Tenant) -> None:
    brain, model = tenant.brain_id, f"test-{uuid.uuid4().hex[:6]}"
    alice = _add(engine, brain, model, 10, "alice", 1)
    assert _save(engine, brain, model)["written"]
    if engine.dialect.name == "postgresql":
        # The watermark there is the database's clock less a margin for writers in flight
        # (db_settled): rows stamped within the margin count as changed, once.
        time.sleep(1.1)
        assert _save(engine, brain, model)["written"]
    assert _save(engine, brain, model) == {"written": False, "count": 10}  # nothing changed
    # After the image: a new memory, a new vector, a new state, a purge.
    fresh = _add(engine, brain, model, 2, "alice", 5)
    with transaction(engine) as conn:
        vectors.store(conn, brain, alice[1], model, _unit(1, 6)[0])
        conn.execute(sql("UPDATE memories SET state = 'archived' WHERE id = :id"), {"id": alice[2]})
        vectors.touch(conn, brain, alice[2])
        conn.execute(sql("DELETE FROM memories WHERE id = :id"), {"id": alice[3]})
        conn.execute(sql("DELETE FROM memory_vectors WHERE memory_id = :id"), {"id": alice[3]})
    caught_up = _cold(engine, brain, model)
    expected = _held(_from_rows(engine, brain, model))
    held = _held(caught_up)
    # The purged memory waits for the reconcile (a stale candidate, read back from SQL under
    # scope, never a hit); everything else is exactly as the rows say.
    assert alice[3] in held and alice[3] not in expected
    del held[alice[3]]
    assert held == expected
    assert caught_up.slot(fresh[0]) is not None
    assert caught_up.state_of[caught_up.slot(alice[2]) or 0] == 1
    query = _unit(1, 6)[0]  # alice[1]'s new vector: its own slot ranks first
    sims, mask = caught_up.similarities(query, user_id="alice", states=("active",))
    assert caught_up.top(sims, mask, 1)[0][0] == alice[1]
    # Something changed, so the next save writes, and the image drops the purged memory.
    assert _save(engine, brain, model) == {"written": True, "count": 11, "parts": 1}
    assert alice[3] not in _held(_cold(engine, brain, model))


def test_an_image_that_does_not_fit_is_not_used(engine: Engine, tenant: Tenant) -> None:
    brain, model = tenant.brain_id, f"test-{uuid.uuid4().hex[:6]}"
    ids = _add(engine, brain, model, 9, "alice", 1)
    _save(engine, brain, model)
    with transaction(engine) as conn:  # a part lost: the count no longer adds up
        conn.execute(
            sql("UPDATE vector_images SET total = total + 1 WHERE brain_id = :b AND model = :m"),
            {"b": brain, "m": model},
        )
    assert not _image_loaded(engine, brain, model)
    assert set(_held(_cold(engine, brain, model))) == set(ids)
    # Other dims: a model of the same name that changed size.
    vectors.forget_all()
    with transaction(engine, write=False) as conn:
        assert vectors.cached(conn, brain, model, DIMS * 2).count == 0


def test_an_image_stays_in_its_brain(engine: Engine, tenant: Tenant, other_tenant: Tenant) -> None:
    model = f"test-{uuid.uuid4().hex[:6]}"
    _add(engine, tenant.brain_id, model, 5, "alice", 1)
    _save(engine, tenant.brain_id, model)
    assert not _image_loaded(engine, other_tenant.brain_id, model)
    assert _cold(engine, other_tenant.brain_id, model).count == 0
    with transaction(engine, write=False) as conn:
        brains = conn.execute(
            sql("SELECT DISTINCT brain_id FROM vector_images WHERE model = :m"), {"m": model}
        ).all()
    assert [b[0] for b in brains] == [tenant.brain_id]


def test_maintenance_saves_the_image_and_erasure_deletes_it(
    engine: Engine, tenant: Tenant, settings: Settings
) -> None:
    from core.app.erasure import erase_user
    from core.embeddings import get_embedder
    from tests.lambda_client import LambdaClient

    client = LambdaClient(settings, key=tenant.key)
    for i in range(3):
        reply = client.post("/v1/memories", {"content": f"dana note {i}", "user_id": "dana"})
        assert reply.status == 201
    model = get_embedder(settings.embedder).name

    def images() -> int:
        with transaction(engine, write=False) as conn:
            found = conn.execute(
                sql("SELECT count(*) FROM vector_images WHERE brain_id = :b"),
                {"b": tenant.brain_id},
            )
            return int(found.scalar_one())

    dry = maintain_brain(
        engine, tenant.brain_id, settings.maintenance, tasks=("vector_images",), app=settings,
        dry_run=True,
    )  # fmt: skip
    assert dry["vector_images"]["skipped"] and images() == 0
    run = maintain_brain(
        engine, tenant.brain_id, settings.maintenance, tasks=("vector_images",), app=settings
    )
    assert run["vector_images"]["written"] and run["vector_images"]["count"] == 3
    assert images() == 1
    with transaction(engine, write=False) as conn:
        users = conn.execute(
            sql("SELECT users FROM vector_images WHERE brain_id = :b AND model = :m"),
            {"b": tenant.brain_id, "m": model},
        ).scalar_one()
    assert "dana" in users
    scope = Scope(tenant.brain_id, "test", role="owner")
    receipt = erase_user(engine, scope, "dana", settings.snapshots)
    assert receipt["status"] == "complete" and images() == 0
