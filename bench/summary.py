"""User summary speed: regenerate the extractive summary of one user with 1,000 memories
(target: under 100 ms), warm, on SQLite (and PostgreSQL with --postgres-url).

    .venv/bin/python -m bench.summary [--sizes 1000,2000] [--runs 30] [--postgres-url URL]

The memories are saved through the real path (memories.create_batch with the builtin
embedder, so their vectors are stored as in production) and are themed sentences made from a
fixed seed: twelve themes of a person's life, several facts superseded along the way. Each run
is POST .../summary/regenerate's work: read the memories and vectors, cluster, pick, store.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.curation.summaries import service
from core.curation.summaries.extractive import extract
from core.embeddings import get_embedder
from core.identity.brains import ensure_brain
from core.kernel.config import Limits, Settings
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import document_text
from core.memory.models import MemoryIn
from core.retrieval.context import estimate_tokens
from core.retrieval.indexing import SearchIndexer

_SEED = 20261121
_THEMES = {
    "cooking": ("bakes", "sourdough", "curry", "recipe", "dinner", "vegetables", "spices"),
    "running": ("marathon", "trail", "pace", "training", "race", "shoes", "intervals"),
    "work": ("team", "deploy", "Python", "service", "review", "latency", "on-call"),
    "travel": ("trip", "Japan", "flight", "hotel", "train", "passport", "Lisbon"),
    "music": ("piano", "jazz", "concert", "scales", "band", "vinyl", "chords"),
    "family": ("sister", "parents", "birthday", "nephew", "visit", "holidays", "cousin"),
    "health": ("doctor", "sleep", "allergy", "vitamins", "physio", "knee", "checkup"),
    "reading": ("novel", "library", "poetry", "book club", "author", "essays", "Kindle"),
    "garden": ("tomatoes", "basil", "compost", "roses", "seedlings", "balcony", "watering"),
    "finance": ("budget", "savings", "mortgage", "taxes", "pension", "invoice", "shares"),
    "learning": ("course", "Spanish", "lessons", "exam", "tutorial", "certificate", "notes"),
    "home": ("kitchen", "repairs", "furniture", "paint", "landlord", "heating", "plants"),
}
_VERBS = ("enjoys", "planned", "talked about", "is working on", "mentioned", "wants to improve")
_WHEN = ("this week", "on Sunday", "last month", "every morning", "after work", "in the spring")


def _memories(count: int, user: str) -> list[dict[str, Any]]:
    rng = random.Random(_SEED)
    names = sorted(_THEMES)
    out: list[dict[str, Any]] = []
    for i in range(count):
        theme = names[i % len(names)]
        words = rng.sample(_THEMES[theme], 3)
        content = (
            f"Robin {rng.choice(_VERBS)} {words[0]} and {words[1]} {rng.choice(_WHEN)}; "
            f"notes on {words[2]} (#{i})."
        )
        item: dict[str, Any] = {
            "content": content,
            "user_id": user,
            "importance": round(rng.uniform(0.2, 0.9), 2),
            "tags": [theme] if rng.random() < 0.3 else [],
        }
        if i % 50 == 0:  # a fact about the theme, superseded by each later one
            item.update(type="fact", key=f"{theme} status")
        out.append(item)
    return out


def _fill(engine: Engine, scope: Scope, count: int, user: str) -> None:
    index = SearchIndexer(get_embedder(Settings(database_url="sqlite://").embedder))
    items = _memories(count, user)
    parsed = [MemoryIn.model_validate(i) for i in items]
    index.prepare([document_text(m.title, m.key, m.tags, m.content) for m in parsed])
    for start in range(0, count, 500):
        with transaction(engine) as conn:
            memories.create_batch(conn, scope, items[start : start + 500], Limits(), index)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def run(url: str, size: int, runs: int) -> dict[str, Any]:
    settings = Settings(database_url=url, log_level="WARNING")
    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        brain = ensure_brain(conn, f"bench-summary-{size}-{time.time_ns()}")
    scope = Scope(brain_id=brain, principal="bench", role="owner")
    user = "robin"
    _fill(engine, scope, size, user)

    service.regenerate_user_summary(engine, settings, scope, user)  # warm: caches, plans
    total, read = [], []
    for _ in range(runs):
        started = time.perf_counter()
        made = service.regenerate_user_summary(engine, settings, scope, user)
        total.append(time.perf_counter() - started)
        started = time.perf_counter()
        with transaction(engine, write=False) as conn:
            candidates, documents, blobs = service._candidates(
                conn, brain, user, get_embedder(settings.embedder).name, 2000
            )
        read.append(time.perf_counter() - started)
    vectors = service._vectors(settings, documents, blobs)
    pick = []
    for _ in range(runs):
        started = time.perf_counter()
        extract(candidates, vectors, settings.summaries.max_tokens)
        pick.append(time.perf_counter() - started)
    summary = made.summary or ""
    return {
        "store": engine.dialect.name,
        "memories": size,
        "active": len(candidates),
        "regenerate_ms": _ms(total),
        "read_ms": _ms(read),
        "extract_ms": _ms(pick),
        "tokens": estimate_tokens(summary) if summary else 0,
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.summary", description=__doc__)
    parser.add_argument("--sizes", default="1000", help="memories per user, comma-separated")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--postgres-url", help="also run on this (empty) PostgreSQL database")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        urls = [f"sqlite:///{Path(tmp) / 'bench.db'}"]
        if args.postgres_url:
            urls.append(args.postgres_url)
        for url in urls:
            for size in sizes:
                result = run(url, size, args.runs)
                print(
                    f"{result['store']:<10} {size:>6} memories ({result['active']} current): "
                    f"regenerate p50 {result['regenerate_ms']['p50']} ms, "
                    f"p95 {result['regenerate_ms']['p95']} ms, "
                    f"max {result['regenerate_ms']['max']} ms"
                    f" | read p50 {result['read_ms']['p50']} ms"
                    f" | cluster and pick p50 {result['extract_ms']['p50']} ms"
                    f" | {result['tokens']} tokens"
                )
            dispose(url)
        print("\nsummary of the last run:\n" + result["summary"])


if __name__ == "__main__":
    main()
