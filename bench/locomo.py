"""Retrieval quality on the LoCoMo dev split, through the public API.

Each conversation is one end user; each dialog turn one memory ("<speaker>: <text>", with its
dia_id and session date); each question of categories 1-4 a search. Reports hit@1/5/10/20 (a
question counts when any evidence turn is in the top k) and recall@10 (evidence turns found).
The data is CC BY-NC 4.0 and is read from ../shared/bench at run time, never copied here.

    .venv/bin/python -m bench.locomo [--embedder builtin|minilm|local]
        [--modes hybrid,lexical,semantic] [--postgres] [--one-user] [--ablations] [--held-out]

SQLite by default; --postgres runs the same on a throwaway PostgreSQL server (or
MNEMO_BENCH_POSTGRES_URL), vectors on the numpy path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

# Beside the main checkout (../shared/bench); MNEMO_LOCOMO_DATA points elsewhere (a worktree).
DATA = Path(
    os.environ.get("MNEMO_LOCOMO_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo-dev.json"
)
# The held-out split: the other five conversations of LoCoMo's locomo10 (conv-44, 47, 48, 49,
# 50), never used to choose a constant, only to check that what the dev split chose holds on
# conversations it never saw. Same format as the dev file; --held-out reads it from here, or
# from the path it is given. Make it once with `--make-held-out locomo10.zip` (the zip of
# snap-research/locomo's data/, which holds data/multimodal_dialog/locomo10_v2/NN.json).
HELD_OUT = DATA.with_name("locomo-heldout.json")
DEV_CONVERSATIONS = ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43")
KS = (1, 5, 10, 20)
# LoCoMo's question categories (5, adversarial, has no answer and is not asked here).
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


def session_time(label: str) -> str:
    """'1:56 pm on 8 May, 2023' -> ISO 8601."""
    return datetime.strptime(label, "%I:%M %p on %d %B, %Y").isoformat() + "Z"


def turns(sample: dict[str, Any]) -> list[dict[str, Any]]:
    conversation = sample["conversation"]
    memories = []
    n = 1
    while f"session_{n}" in conversation:
        when = session_time(conversation[f"session_{n}_date_time"])
        for turn in conversation[f"session_{n}"]:
            memories.append(
                {
                    "content": f"{turn['speaker']}: {turn['text']}",
                    "user_id": sample["sample_id"],
                    "occurred_at": when,
                    "metadata": {
                        "dia_id": turn["dia_id"],
                        "session": n,
                        "sample": sample["sample_id"],
                    },
                }
            )
        n += 1
    return memories


def evidence(qa: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for item in qa.get("evidence", []):
        for part in str(item).replace(",", ";").split(";"):
            if part.strip():
                ids.add(part.strip())
    return ids


CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
# Ablations: each removes one signal from hybrid search, everything else as deployed.
VARIANTS: dict[str, dict[str, Any]] = {
    "no thread context": {"context_before": 0.0, "context_after": 0.0},
    "thread context one turn each side": {"context_reach": 1},
    "no recency": {"recency_weight": 0.0},
    "no near words": {"near_words": False},
}


def run(
    embedder: str,
    modes: list[str],
    database_url: str | None = None,
    *,
    one_user: bool = False,
    variants: list[str] | None = None,
    data: Path = DATA,
) -> dict[str, dict[str, Any]]:
    """Loads the split once, then asks every question in each mode (and each ablation, in
    hybrid mode). `one_user` stores every conversation under one end user, as an agent with a
    single user would: term statistics then come from all five conversations."""
    os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")
    from core.identity.keys import create_key
    from core.kernel.config import settings_from_env
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from core.kernel.scope import Scope
    from core.memory.policy import set_policy
    from tests.lambda_client import LambdaClient

    samples = json.loads(data.read_text())
    if database_url is None:
        folder = tempfile.mkdtemp(prefix="mnemo-locomo-")
        database_url = f"sqlite:///{folder}/locomo.db"
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url, "MNEMO_PGVECTOR": "off"}
    env["MNEMO_EMBEDDER"] = embedder
    settings = settings_from_env(env)
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "locomo").secret
        # Raw conversation turns, each a memory a question may cite: the write gate (made for
        # memories an agent extracts) would fold restated turns and hold "Thanks!", which the
        # benchmark's evidence ids refer to.
        brain = conn.exec_driver_sql("SELECT id FROM brains WHERE slug = 'locomo'").scalar()
        set_policy(conn, Scope(str(brain), "bench", role="owner"), {"write_gate": 0})
    client = LambdaClient(settings, key=key)

    def user_of(sample: dict[str, Any]) -> str:
        return "everyone" if one_user else str(sample["sample_id"])

    started = time.perf_counter()
    for sample in samples:
        items = turns(sample)
        for item in items:
            item["user_id"] = user_of(sample)
        for i in range(0, len(items), 500):
            reply = client.post("/v1/memories/batch", {"memories": items[i : i + 500]})
            assert reply.status == 201, reply.body
    load_seconds = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        # As autovacuum would after a load this size: the planner's statistics, and the word
        # statistics PostgreSQL's full-text search drops its commonest words by.
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")

    runs = [(mode, mode, settings) for mode in modes]
    for name in variants or []:
        ranking = replace(settings.ranking, **VARIANTS[name])
        runs.append((f"hybrid, {name}", "hybrid", replace(settings, ranking=ranking)))

    report: dict[str, dict[str, Any]] = {}
    for label, mode, run_settings in runs:
        client = LambdaClient(run_settings, key=key)
        hits = {k: 0 for k in KS}
        by_category: dict[int, list[int]] = {c: [0, 0] for c in CATEGORIES}
        found_at_10 = 0
        total_evidence = 0
        questions = 0
        latencies = []
        for sample in samples:
            for qa in sample["qa"]:
                if qa["category"] == 5:
                    continue
                wanted = evidence(qa)
                t = time.perf_counter()
                reply = client.post(
                    "/v1/search",
                    {
                        "query": qa["question"],
                        "limit": 20,
                        "mode": mode,
                        "user_id": user_of(sample),
                    },
                )
                latencies.append(time.perf_counter() - t)
                assert reply.status == 200, reply.body
                # dia_ids repeat across conversations: a turn of another one is a miss.
                ranked = [
                    r["memory"]["metadata"]["dia_id"]
                    for r in reply.json()["results"]
                    if r["memory"]["metadata"]["sample"] == sample["sample_id"]
                ]
                questions += 1
                for k in KS:
                    if wanted & set(ranked[:k]):
                        hits[k] += 1
                by_category[qa["category"]][1] += 1
                if wanted & set(ranked[:10]):
                    by_category[qa["category"]][0] += 1
                found_at_10 += len(wanted & set(ranked[:10]))
                total_evidence += len(wanted)
        report[label] = {
            **{f"hit@{k}": round(hits[k] / questions, 3) for k in KS},
            "recall@10": round(found_at_10 / total_evidence, 3),
            **{
                f"hit@10 {c} {CATEGORIES[c]}": round(found / max(asked, 1), 3)
                for c, (found, asked) in by_category.items()
            },
            "questions": questions,
            "search_ms_p50": round(statistics.median(latencies) * 1000, 2),
            "load_seconds": round(load_seconds, 1),
            **{
                f"hit@10 {CATEGORIES[c]}": round(n / total, 3)
                for c, (n, total) in sorted(by_category.items())
            },
        }
    return report


def make_held_out(archive: Path) -> None:
    """The five conversations of locomo10 not in the dev split, in the dev file's format."""
    import zipfile

    samples = []
    with zipfile.ZipFile(archive) as z:
        for name in sorted(z.namelist()):
            if "/locomo10_v2/" not in name or not name.endswith(".json"):
                continue
            sample_id = "conv-" + Path(name).stem
            if sample_id in DEV_CONVERSATIONS:
                continue
            raw = json.loads(z.read(name))
            conversation = {
                k: v
                for k, v in raw.items()
                if k in ("speaker_a", "speaker_b")
                or (k.startswith("session_") and not k.endswith(("_observation", "_summary")))
            }
            samples.append({"sample_id": sample_id, "conversation": conversation, "qa": raw["qa"]})
    HELD_OUT.write_text(json.dumps(samples))
    print(f"{HELD_OUT}: {', '.join(s['sample_id'] for s in samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="builtin")
    parser.add_argument("--modes", default="hybrid,lexical,semantic")
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not SQLite")
    parser.add_argument("--one-user", action="store_true", help="all conversations, one user")
    parser.add_argument(
        "--ablations", action="store_true", help="also hybrid with each signal removed"
    )
    parser.add_argument(
        "--held-out",
        nargs="?",
        const=HELD_OUT,
        type=Path,
        metavar="PATH",
        help=f"the held-out conversations, not the dev split (from {HELD_OUT.name} by default)",
    )
    parser.add_argument("--make-held-out", metavar="ZIP", help="write the held-out file, then stop")
    args = parser.parse_args()
    if args.make_held_out:
        make_held_out(Path(args.make_held_out))
        return
    data = args.held_out or DATA
    variants = list(VARIANTS) if args.ablations else []
    load = os.getloadavg()[0]
    options = {"one_user": args.one_user, "variants": variants, "data": data}
    if args.postgres:
        from bench.common import postgres

        with postgres() as server:
            report = run(args.embedder, args.modes.split(","), server.new_database(), **options)
    else:
        report = run(args.embedder, args.modes.split(","), **options)
    store = "PostgreSQL" if args.postgres else "SQLite"
    users = "one user holds all conversations" if args.one_user else "one user per conversation"
    split = "held-out split" if args.held_out else "dev split"
    print(
        f"LoCoMo {split}, embedder {args.embedder}, {store}, {users} "
        f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    names = [f"{c} {n}" for c, n in CATEGORIES.items()]
    print(
        "| run | hit@1 | hit@5 | hit@10 | hit@20 | recall@10 | "
        + " | ".join(f"hit@10 {n}" for n in names)
        + " | search p50 ms |"
    )
    print("|---" * (7 + len(names)) + "|")
    for label, r in report.items():
        categories = " | ".join(str(r[f"hit@10 {n}"]) for n in names)
        print(
            f"| {label} | {r['hit@1']} | {r['hit@5']} | {r['hit@10']} | {r['hit@20']} | "
            f"{r['recall@10']} | {categories} | {r['search_ms_p50']} |"
        )


if __name__ == "__main__":
    main()
