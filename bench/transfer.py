"""Export, import and snapshots of a large brain on SQLite: time and peak memory.

    .venv/bin/python -m bench.transfer [--sizes 10000,100000] [--skip-snapshots]

For each size a source brain is bulk-inserted with plain SQL (memories with tags and an ADD
history row each, an UPDATE row for one in ten, a link per ten memories, 100 users with
summaries, source trust, a policy). Then each phase runs in its own fresh Python process, so
its peak resident memory (ru_maxrss) is its own:

- export: `export_records` streamed to a JSON Lines file;
- import: that file into a new database (ids kept, strategy merge, batches of 1,000), full-text
  index and builtin vectors (256 dims) made for every memory;
- snapshot: `snapshots.create` (export gzip-compressed into the database);
- restore: `snapshots.restore(mode="replace")`, the whole brain in ONE transaction.

Peak memory is reported as the process's peak RSS and as its growth over the RSS measured just
before the phase started (imports and the engine loaded), which is what the phase itself needed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")

from bench.common import load_avg, machine, machine_markdown, say, table

_SEED = 20261122
_WORDS = [
    "tea",
    "coffee",
    "garden",
    "marathon",
    "piano",
    "jazz",
    "budget",
    "taxes",
    "Lyon",
    "Paris",
    "train",
    "flight",
    "novel",
    "poetry",
    "sourdough",
    "curry",
    "team",
    "deploy",
    "review",
    "latency",
    "sister",
    "birthday",
    "doctor",
    "sleep",
    "course",
    "exam",
    "kitchen",
    "paint",
    "tomatoes",
    "basil",
    "savings",
    "invoice",
    "concert",
    "chords",
    "trail",
    "pace",
    "library",
    "author",
]


def _peak_rss_mb() -> float:
    """VmHWM: the peak RSS of this process image. (ru_maxrss would do, but exec carries the
    forking parent's peak over into it.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- building the source brain ----------------------------------------------------------------


def build(url: str, count: int) -> dict[str, Any]:
    """A brain of `count` memories, inserted with executemany in one transaction."""
    from sqlalchemy import text

    from core.identity.brains import ensure_brain
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from core.kernel.ids import new_id
    from core.memory.store import content_hash

    engine = get_engine(url)
    ensure_schema(engine)
    rng = random.Random(_SEED)
    started = time.perf_counter()
    with transaction(engine) as conn:
        brain = ensure_brain(conn, "source")
        base = 1_700_000_000_000
        memories, tags, history, links = [], [], [], []
        ids: list[str] = []
        for i in range(count):
            memory_id = new_id()
            ids.append(memory_id)
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20)))
            content = f"Memory {i}: user talked about {words}."
            chosen = sorted({rng.choice(_WORDS).lower() for _ in range(2)})
            at = base + i * 1000
            memories.append(
                {
                    "id": memory_id,
                    "brain": brain,
                    "user": f"user-{i % 100}",
                    "content": content,
                    "tags": json.dumps(chosen),
                    "metadata": json.dumps({"n": i, "source": "bench"}),
                    "hash": content_hash(content),
                    "at": at,
                }
            )
            tags += [{"m": memory_id, "t": t, "b": brain} for t in chosen]
            history.append(
                {"id": new_id(), "brain": brain, "m": memory_id, "u": f"user-{i % 100}",
                 "e": "ADD", "old": None, "new": content, "at": at}
            )  # fmt: skip
            if i % 10 == 0:
                history.append(
                    {"id": new_id(), "brain": brain, "m": memory_id, "u": f"user-{i % 100}",
                     "e": "UPDATE", "old": content, "new": content, "at": at + 1}
                )  # fmt: skip
            if i % 10 == 9:
                links.append(
                    {"id": new_id(), "brain": brain, "a": memory_id, "b": ids[i - 5], "at": at}
                )
        conn.execute(
            text(
                "INSERT INTO memories (id, brain_id, user_id, type, content, tags, metadata, "
                "content_hash, created_at, updated_at) VALUES (:id, :brain, :user, 'note', "
                ":content, :tags, :metadata, :hash, :at, :at)"
            ),
            memories,
        )
        conn.execute(
            text("INSERT INTO memory_tags (memory_id, tag, brain_id) VALUES (:m, :t, :b)"), tags
        )
        conn.execute(
            text(
                "INSERT INTO memory_history (id, brain_id, memory_id, user_id, event, "
                "old_memory, new_memory, created_at) VALUES (:id, :brain, :m, :u, :e, :old, "
                ":new, :at)"
            ),
            history,
        )
        conn.execute(
            text(
                "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, "
                "created_at) VALUES (:id, :brain, :a, :b, 'related', 0.5, :at)"
            ),
            links,
        )
        conn.execute(
            text(
                "INSERT INTO users (brain_id, user_id, summary, reflection_count, created_at, "
                "updated_at) VALUES (:brain, :u, :s, 1, :at, :at)"
            ),
            [
                {"brain": brain, "u": f"user-{u}", "s": f"User {u} likes tea.", "at": base}
                for u in range(100)
            ],
        )
        conn.execute(
            text(
                "INSERT INTO brain_source_trust (id, brain_id, source_key, trust, created_at, "
                "updated_at) VALUES (:id, :brain, :k, 0.7, :at, :at)"
            ),
            [{"id": new_id(), "brain": brain, "k": k, "at": base} for k in ("chat", "email")],
        )
        conn.execute(
            text(
                "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
                "VALUES (:brain, '{\"snapshot_retention\": 3}', :at, :at)"
            ),
            {"brain": brain, "at": base},
        )
    return {
        "seconds": time.perf_counter() - started,
        "memories": count,
        "history": len(history),
        "links": len(links),
    }


# -- phases, each in a fresh process ----------------------------------------------------------


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    from core.embeddings import BuiltinEmbedder
    from core.kernel.db.engine import get_engine
    from core.kernel.db.migrations import ensure_schema

    if args.phase == "build":
        return build(args.db, int(args.snapshot))
    engine = get_engine(args.db)
    ensure_schema(engine)
    embedder = BuiltinEmbedder(256)
    embedder.embed(["warm up the embedder's imports"])
    baseline = _current_rss_mb()
    started = time.perf_counter()
    cpu_started = time.process_time()
    out: dict[str, Any] = {}
    if args.phase == "export":
        from core.transfer.exporting import export_records
        from core.transfer.format import to_lines

        records = 0
        with open(args.file, "wb") as sink:
            for line in to_lines(export_records(engine, "source")):
                sink.write(line)
                records += 1
        out = {"records": records, "bytes": Path(args.file).stat().st_size}
    elif args.phase == "import":
        from core.transfer.format import parse_lines
        from core.transfer.importing import import_records

        with open(args.file, "rb") as source:
            report = import_records(engine, "copy", parse_lines(source), embedder=embedder)
        out = {"imported": report.imported, "skipped": report.skipped}
    elif args.phase in ("snapshot", "restore"):
        from core.kernel.config import SnapshotSettings
        from core.kernel.scope import Scope
        from core.transfer import snapshots
        from core.transfer.importing import resolve_scope

        scope = resolve_scope(engine, "source")
        owner = Scope(brain_id=scope.brain_id, principal="bench", role="owner")
        if args.phase == "snapshot":
            snap = snapshots.create(
                engine, owner, SnapshotSettings(), label="bench", include_archived=True
            )
            out = {"snapshot_id": snap["id"], "bytes": snap["size_bytes"]}
        else:
            restored = snapshots.restore(
                engine, owner, args.snapshot, SnapshotSettings(), mode="replace", embedder=embedder
            )
            out = {"imported": restored["report"]["imported"]}
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu_started
    out["baseline_rss_mb"] = baseline
    out["peak_rss_mb"] = _peak_rss_mb()
    out["growth_mb"] = out["peak_rss_mb"] - baseline
    return out


def _run_phase(phase: str, db: str, file: Path, snapshot: str = "") -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.transfer", "--phase", phase, "--db", db]
    command += ["--file", str(file), "--snapshot", snapshot]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(sizes: list[int], *, snapshots: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "load_at_start": load_avg(), "sizes": {}}
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            source = f"sqlite:///{folder}/source.db"
            target = f"sqlite:///{folder}/target.db"
            file = Path(folder) / "source.jsonl"
            say(f"{size:,} memories: building the source brain")
            # Built in a process of its own too, so this one stays small.
            entry: dict[str, Any] = {"build": _run_phase("build", source, file, str(size))}
            say("export")
            entry["export"] = _run_phase("export", source, file)
            say("import")
            entry["import"] = _run_phase("import", target, file)
            if snapshots:
                say("snapshot")
                entry["snapshot"] = _run_phase("snapshot", source, file)
                say("restore (replace, one transaction)")
                entry["restore"] = _run_phase(
                    "restore", source, file, entry["snapshot"]["snapshot_id"]
                )
            results["sizes"][size] = entry
    results["load_at_end"] = load_avg()
    return results


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for size, entry in results["sizes"].items():
        for phase in ("export", "import", "snapshot", "restore"):
            if phase not in entry:
                continue
            r = entry[phase]
            rate = int(size) / r["seconds"]
            extra = ""
            if phase == "export":
                extra = f"{r['records']:,} lines, {r['bytes'] / 2**20:,.1f} MB"
            elif phase == "snapshot":
                extra = f"{r['bytes'] / 2**20:,.1f} MB compressed"
            elif phase in ("import", "restore"):
                extra = f"{r['imported']:,} records written"
            rows.append(
                [
                    f"{int(size):,}",
                    phase,
                    f"{r['seconds']:,.1f}",
                    f"{r['cpu_seconds']:,.1f}",
                    f"{rate:,.0f}",
                    f"{r['peak_rss_mb']:,.0f}",
                    f"{r['growth_mb']:,.0f}",
                    extra,
                ]
            )
    headers = [
        "memories", "phase", "wall s", "CPU s", "memories/s (wall)", "peak RSS MB", "growth MB",
        "notes",
    ]  # fmt: skip
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            f"Load average at start {results['load_at_start']}, at end {results['load_at_end']}.",
            table(headers, rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--skip-snapshots", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results = run(sizes, snapshots=not args.skip_snapshots)
    print(markdown(results))


if __name__ == "__main__":
    main()
