"""OpenMemory's JavaScript SDK (openmemory-js 0.3.0, the one the seed's multi-user example
imports) against `mnemo serve` on both stores, under Node: every call it makes answers as
OpenMemory does, getAll, sectors, reinforce, update and delete included. The package is
installed with npm into a folder of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.identity.keys import create_key
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from tests.conftest import STORES, new_postgres_database
from tests.serve import mnemo_serve

NODE, NPM = shutil.which("node"), shutil.which("npm")
pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="Node.js and npm are needed to run openmemory-js"
)

SCRIPT = r"""
const { OpenMemory } = require('openmemory-js');
const om = new OpenMemory({ baseUrl: process.env.BASE, apiKey: process.env.KEY });
const user = process.env.USER_ID;
(async () => {
  const out = {};
  out.health = await om.health();
  const dark = await om.add('User prefers dark mode', { tags: ['preferences'], user_id: user });
  const deploy = await om.add('Deploy: build, then sync dist/', {
    tags: ['procedural'], user_id: user, metadata: { team: 'web' },
  });
  out.add = dark;
  out.query = await om.query('dark mode', { k: 5, filters: { user_id: user } });
  out.querySector = await om.querySector('deploy', 'procedural');
  out.all = await om.getAll({ limit: 10 });
  out.page = await om.getAll({ limit: 1, offset: 1 });
  out.bySector = await om.getBySector('procedural');
  out.sectors = await om.getSectors();
  out.stats = await om.getStats();
  out.reinforce = await om.reinforce(dark.id, 0.3);
  out.reinforced = (await om.getAll()).items.find((m) => m.id === dark.id);
  out.update = await om.update(dark.id, { content: 'User prefers light mode', tags: ['ui'] });
  out.user = await om.getUserMemories(user, { limit: 10 });
  out.summary = await om.getUserSummary(user);
  out.regenerate = await om.regenerateUserSummary(user);
  out.delete = await om.delete(deploy.id);
  out.afterDelete = await om.getAll();
  for (const [name, call] of [
    ['ide', () => om.ideStartSession({ user_id: user })],
    ['compression', () => om.compress('some text')],
    ['lgm', () => om.lgmGetConfig()],
    ['missing', () => om.delete('00000000-0000-7000-8000-000000000000')],
  ]) {
    try { await call(); out[name] = 'no error'; } catch (e) { out[name] = String(e.message); }
  }
  out.ids = { dark: dark.id, deploy: deploy.id };
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("openmemory-js")
    (folder / "package.json").write_text('{"private": true}')
    assert NPM is not None
    subprocess.run(
        [NPM, "install", "--no-audit", "--no-fund", "--silent", "openmemory-js@0.3.0"],
        cwd=folder,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (folder / "scenario.js").write_text(SCRIPT)
    return folder


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('omjs') / 'mnemo.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_admin_url"))
    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, f"omjs-{uuid.uuid4().hex[:8]}").secret
    try:
        with mnemo_serve(url) as base:
            yield base, key
    finally:
        dispose(url)


def test_every_sdk_call_answers_as_openmemory_does(sdk: Path, served: tuple[str, str]) -> None:
    base, key = served
    assert NODE is not None
    env = {**os.environ, "BASE": base, "KEY": key, "USER_ID": "user_123"}
    run = subprocess.run(
        [NODE, "scenario.js"], cwd=sdk, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    dark, deploy = out["ids"]["dark"], out["ids"]["deploy"]

    assert out["add"]["primary_sector"] == "semantic" and out["add"]["sectors"] == ["semantic"]
    assert out["query"]["matches"][0]["id"] == dark
    assert [m["id"] for m in out["querySector"]["matches"]] == [deploy]
    assert [m["id"] for m in out["all"]["items"]] == [deploy, dark]  # newest first
    assert [m["id"] for m in out["page"]["items"]] == [dark]
    assert [m["id"] for m in out["bySector"]["items"]] == [deploy]
    assert out["bySector"]["items"][0]["metadata"] == {"team": "web"}

    sectors = out["sectors"]
    assert set(sectors["sectors"]) == {
        "episodic",
        "semantic",
        "procedural",
        "emotional",
        "reflective",
    }
    counts = {s["sector"]: s["count"] for s in sectors["stats"]}
    assert counts == {
        "episodic": 0,
        "semantic": 1,
        "procedural": 1,
        "emotional": 0,
        "reflective": 0,
    }
    assert out["stats"] == sectors

    assert out["reinforce"] == {"ok": True}
    assert out["reinforced"]["salience"] == pytest.approx(0.8)  # 0.5 + 0.3
    assert out["update"] == {"id": dark, "updated": True}
    [mine] = [m for m in out["user"]["items"] if m["id"] == dark]
    assert mine["content"] == "User prefers light mode" and mine["tags"] == ["ui"]
    assert mine["version"] == 3  # added, reinforced, updated
    assert out["summary"]["user_id"] == "user_123" and out["regenerate"]["ok"] is True

    assert out["delete"] == {"ok": True}
    assert [m["id"] for m in out["afterDelete"]["items"]] == [dark]
    for name in ("ide", "compression", "lgm"):
        assert out[name] == "OpenMemory API error: 501 Not Implemented", name
    assert out["missing"] == "OpenMemory API error: 404 Not Found"
