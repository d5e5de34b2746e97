"""`python -m bench {app,memories,concurrency,soak,all} [--quick] [--no-postgres] [--json [PATH]]`

`soak` runs only when named (not in `all`): --duration SECONDS per store (default 600),
--clients N (default 8).

Markdown tables go to stdout, progress to stderr. `--json` also writes the raw results to
bench/results/<name>-<UTC time>.json (gitignored), or to PATH.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

# Before anything imports handlers.api: its module-level app configures logging from the env.
os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")

from bench.common import load_avg, machine, machine_markdown, say, write_json

BENCHMARKS = ("app", "memories", "concurrency")


def _run_one(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if name == "app":
        from bench import app

        results = app.run(quick=args.quick)
        return results, app.markdown(results)
    if name == "memories":
        from bench import memories

        results = memories.run(quick=args.quick, with_postgres=not args.no_postgres)
        return results, memories.markdown(results)
    if name == "soak":
        from bench import soak

        results = soak.run(
            duration=args.duration, clients=args.clients, with_postgres=not args.no_postgres
        )
        return results, soak.markdown(results)
    from bench import concurrency

    results = concurrency.run(quick=args.quick, with_postgres=not args.no_postgres)
    return results, concurrency.markdown(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "soak", "all", "_warm-health"])
    parser.add_argument(
        "--duration", type=float, default=600, help="soak: seconds of load per store (600)"
    )
    parser.add_argument("--clients", type=int, default=8, help="soak: client processes (8)")
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and operations: a smoke test"
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL parts")
    parser.add_argument(
        "--json",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="also write the raw results as JSON (default: bench/results/<name>-<time>.json)",
    )
    parser.add_argument("--rounds", type=int, default=15, help=argparse.SUPPRESS)
    parser.add_argument("--per-round", type=int, default=400, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.benchmark == "_warm-health":  # the child process of `app` (c)
        from bench import app

        app.warm_child(args.rounds, args.per_round)
        return 0

    names = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    info = machine()
    print(f"# Mnemo benchmarks: {', '.join(names)}{' (--quick)' if args.quick else ''}\n")
    print(machine_markdown(info))
    sys.stdout.flush()
    collected: dict[str, Any] = {"machine": info, "quick": args.quick}
    for name in names:
        started = time.perf_counter()
        results, text = _run_one(name, args)
        elapsed = time.perf_counter() - started
        say(f"{name}: done in {elapsed:.0f} s")
        results["elapsed_s"] = elapsed
        results["loadavg_at_end"] = load_avg()
        collected[name] = results
        print(f"\n{text}\n\n_{name}: {elapsed:.0f} s; load average at the end {load_avg()}_")
        sys.stdout.flush()
    if args.json is not None:
        target = write_json(args.benchmark, collected, args.json)
        say(f"results written to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
