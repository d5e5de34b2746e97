"""A search in a fresh interpreter where torch cannot be imported, as in a function package:
the MiniLM embedders' tests ask it to find meaning and typos (issue 21's must-show)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "sentence_transformers", "transformers")

# Each query and the one memory it must find first.
EXPECTED = {
    "alergic to penauts": ["Ana is allergic to peanuts and carries an EpiPen."],
    "my vehicle": ["Ana drives a blue Toyota car to work."],
    "what does her sibling do?": ["Ana's sister lives in Lisbon and teaches piano."],
}
_OTHERS = [
    "The team meets every Tuesday to plan the sprint.",
    "Ana likes hiking in the mountains on weekends.",
]

_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, os, sys, tempfile

    blocked, memories, queries = json.loads(sys.argv[1])

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, Blocked())
    from core.embeddings import get_embedder
    from core.kernel.config import settings_from_env
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from core.identity.keys import create_key
    from tests.lambda_client import LambdaClient

    folder = tempfile.mkdtemp()
    env = {**os.environ, "MNEMO_DATABASE_URL": f"sqlite:///{folder}/m.db",
           "MNEMO_EMBEDDER": "minilm"}
    settings = settings_from_env(env)
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "t").secret
    client = LambdaClient(settings, key=key)
    reply = client.post("/v1/memories/batch", {"memories": [{"content": c} for c in memories]})
    assert reply.status == 201, reply.body
    found = {}
    for query in queries:
        reply = client.post("/v1/search", {"query": query, "limit": 1, "mode": "hybrid"})
        assert reply.status == 200, reply.body
        found[query] = [r["memory"]["content"] for r in reply.json()["results"]]
    embedder = get_embedder(settings.embedder)
    print(json.dumps({
        "found": found,
        "embedder": [type(embedder).__name__, embedder.name],
        "loaded": sorted(name for name in blocked if name in sys.modules),
    }))
    """
)


def search_without(
    cwd: Path, *, also_blocked: tuple[str, ...] = (), model_path: Path | None = None
) -> dict[str, Any]:
    """Save EXPECTED's memories (and two others) and ask its queries with MNEMO_EMBEDDER=minilm,
    torch and `also_blocked` unimportable: {"found": query -> contents, "embedder": [class,
    name], "loaded": blocked modules that were imported anyway}."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    env["MNEMO_LOG_LEVEL"] = "WARNING"
    if model_path is not None:
        env["MNEMO_LOCAL_MODEL_PATH"] = str(model_path)
    memories = [found[0] for found in EXPECTED.values()] + _OTHERS
    argument = json.dumps([BLOCKED + also_blocked, memories, list(EXPECTED)])
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, argument],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
