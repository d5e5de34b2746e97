"""The app benchmark: cold start, warm `ensure_schema`, warm GET /health against a bare baseline.

(a) cold start: a fresh interpreter per run times `import handlers.api` and the first
    `handlers.api.handler` call with a GET /health HTTP API v2 event on an existing, migrated
    SQLite file. Target: import + first invocation < 300 ms (median).
(b) `ensure_schema(engine)` after its first call, per call. Target < 20 us.
(c) GET /health through the real module-level handler (`events.dispatch` -> Mangum -> app),
    warm, in a child process per log level, against a bare Mangum + Starlette app returning a
    constant JSON in the same process. Target < 0.3 ms per invocation (median).
"""

from __future__ import annotations

import copy
import gc
import json
import os
import shutil
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Summary,
    fmt,
    say,
    scratch,
    sqlite_url,
    table,
    verdict,
)

COLD_TARGET_MS = 300.0
ENSURE_TARGET_US = 20.0
WARM_TARGET_MS = 0.3

# Runs in a fresh interpreter: only `time` is imported before the clock starts.
_COLD_CHILD = """
import time
t0 = time.perf_counter()
import handlers.api
t1 = time.perf_counter()
import json, os, pathlib

class Context:
    function_name = "mnemo-api"
    memory_limit_in_mb = 512
    aws_request_id = "cold-start"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mnemo-api"

    def get_remaining_time_in_millis(self):
        return 30000

event = json.loads(pathlib.Path("events/http_api_v2.json").read_text())
if os.environ.get("BENCH_FIRST_REQUEST") == "search":
    # A first request that needs the search stack (models, numpy, the embedder, the index).
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/search"
    event["requestContext"]["http"]["method"] = "POST"
    event["headers"] = {"authorization": "Bearer bench-key", "content-type": "application/json"}
    event["body"] = json.dumps({"query": "what does the user prefer", "limit": 10})
    event["isBase64Encoded"] = False
t2 = time.perf_counter()
result = handlers.api.handler(event, Context())
t3 = time.perf_counter()
assert result["statusCode"] == 200, result
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "invoke_ms": (t3 - t2) * 1e3}))
"""

_LIBS_CHILD = """
import time
t0 = time.perf_counter()
import {modules}
t1 = time.perf_counter()
print((t1 - t0) * 1e3)
"""
_LIBS_ALL = "starlette.applications, mangum, sqlalchemy, numpy, pydantic"
# Each library alone: what it costs a cold start on its own (pydantic imports lazily, so the
# BaseModel machinery is what is timed for it).
_LIBS_EACH = {
    "sqlalchemy": "sqlalchemy",
    "numpy": "numpy",
    "pydantic (BaseModel)": "pydantic.main",
    "starlette (applications)": "starlette.applications",
    "mangum (and asyncio)": "mangum",
}

# The modules (third-party and standard library) that `import handlers.api` loads, in order.
_DEPS_LIST = """
import json, sys
before = set(sys.modules)
import handlers.api
mine = ("core", "handlers")
print(",".join(m for m in list(sys.modules) if m not in before and m.split(".")[0] not in mine))
"""
# ...imported on their own: the floor under `import handlers.api` that Mnemo's code cannot lower.
_DEPS_TIME = """
import time
t0 = time.perf_counter()
import importlib, sys
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
    except Exception:
        pass
t1 = time.perf_counter()
print((t1 - t0) * 1e3)
"""


def _child_env(database_url: str, log_level: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(MNEMO_DATABASE_URL=database_url, MNEMO_LOG_LEVEL=log_level)
    for name in ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    return env


def _run(
    args: list[str],
    env: dict[str, str],
    *,
    quiet_stderr: bool = False,
    cwd: Path = ROOT,
) -> tuple[str, float]:
    """Run a child; returns its stdout and the wall time from spawn to exit (ms)."""
    started = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet_stderr else subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1e3
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:3]} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout, wall


def _migrated_sqlite(folder: Any) -> str:
    from core.kernel.db.engine import dispose, get_engine
    from core.kernel.db.migrations import ensure_schema, forget

    url = sqlite_url(folder)
    ensure_schema(get_engine(url))
    forget(get_engine(url))
    dispose(url)
    return url


# --- (a) cold start --------------------------------------------------------------------------


def cold_start(runs: int) -> dict[str, Any]:
    py = sys.executable
    series: dict[str, list[float]] = {
        "warning_import": [],
        "warning_invoke": [],
        "warning_total": [],
        "warning_process": [],
        "search_total": [],
        "info_total": [],
        "no_pyc_total": [],
        "libs_all": [],
        "deps_floor": [],
        "bare_python_process": [],
    }
    with scratch("cold") as folder:
        url = _migrated_sqlite(folder / "db")
        # Also writes any missing or stale .pyc, as the first import after a change would.
        deps, _ = _run([py, "-c", _DEPS_LIST], _child_env(url, "WARNING"))
        deps = deps.strip()
        # Mnemo's code without its .pyc files, as in a zip package built without compileall:
        # /var/task is read-only on Lambda, so the bytecode is compiled again at every cold start.
        bare_tree = folder / "no-pyc"
        for part in ("core", "handlers", "events"):
            shutil.copytree(
                ROOT / part, bare_tree / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        no_pyc_env = {**_child_env(url, "WARNING"), "PYTHONDONTWRITEBYTECODE": "1"}
        say(f"app/cold: {runs} fresh processes per series (interleaved)")
        for _ in range(runs):
            for level in ("WARNING", "INFO"):
                out, wall = _run([py, "-c", _COLD_CHILD], _child_env(url, level), quiet_stderr=True)
                data = json.loads(out)
                key = level.lower()
                series[f"{key}_total"].append(data["import_ms"] + data["invoke_ms"])
                if level == "WARNING":
                    series["warning_import"].append(data["import_ms"])
                    series["warning_invoke"].append(data["invoke_ms"])
                    series["warning_process"].append(wall)
            search_env = {
                **_child_env(url, "WARNING"),
                "BENCH_FIRST_REQUEST": "search",
                "MNEMO_API_KEY": "bench-key",
            }
            out, _ = _run([py, "-c", _COLD_CHILD], search_env, quiet_stderr=True)
            data = json.loads(out)
            series["search_total"].append(data["import_ms"] + data["invoke_ms"])
            out, _ = _run([py, "-c", _COLD_CHILD], no_pyc_env, quiet_stderr=True, cwd=bare_tree)
            data = json.loads(out)
            series["no_pyc_total"].append(data["import_ms"] + data["invoke_ms"])
            env = _child_env(url, "WARNING")
            out, _ = _run([py, "-c", _LIBS_CHILD.format(modules=_LIBS_ALL)], env)
            series["libs_all"].append(float(out))
            out, _ = _run([py, "-c", _DEPS_TIME, deps], env)
            series["deps_floor"].append(float(out))
            for label, module in _LIBS_EACH.items():
                out, _ = _run([py, "-c", _LIBS_CHILD.format(modules=module)], env)
                series.setdefault(f"lib:{label}", []).append(float(out))
            _, wall = _run([py, "-c", "pass"], env)
            series["bare_python_process"].append(wall)
        imports = import_profile(url)
    return {
        "runs": runs,
        "summaries": {k: Summary.of(v).as_dict() for k, v in series.items()},
        "raw": series,
        "deps_module_count": len(deps.split(",")),
        "importtime": imports,
    }


def _group(module: str) -> str:
    package = module.split(".")[0]
    if package == "org":  # `copy` tries `org.python.core` (Jython); the attempt is listed
        return "(standard library)"
    if package in sys.stdlib_module_names or package.lstrip("_") in sys.stdlib_module_names:
        return "(standard library)"
    return package


def import_profile(url: str) -> dict[str, Any]:
    """One `python -X importtime -c 'import handlers.api'`: where the import time goes."""
    env = _child_env(url, "WARNING")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import handlers.api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    entries: list[tuple[int, int, int, str]] = []  # (level, self_us, cumulative_us, name)
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        level = (len(name) - len(name.lstrip(" ")) - 1) // 2  # one space, then two per level
        entries.append((level, int(self_us), int(cumulative_us), name.strip()))
    top = next((e for e in entries if e[3] == "handlers.api" and e[0] == 0), None)
    # Everything imported before handlers.api started (the interpreter's own start-up) is left
    # out; self times are summed by top-level package, the standard library as one group.
    start = 0
    if top is not None:
        index = entries.index(top)
        start = next((i + 1 for i in range(index - 1, -1, -1) if entries[i][0] == 0), 0)
        entries = entries[start : index + 1]
    packages: dict[str, float] = {}
    for _level, self_us, _cumulative_us, name in entries:
        group = _group(name)
        packages[group] = packages.get(group, 0.0) + self_us / 1e3
    by_self = sorted(entries, key=lambda e: -e[1])[:40]
    return {
        "handlers_api_cumulative_ms": None if top is None else top[2] / 1e3,
        "handlers_api_self_ms": None if top is None else top[1] / 1e3,
        "by_package": sorted(
            ({"package": k, "self_ms": v} for k, v in packages.items()), key=lambda p: -p["self_ms"]
        ),
        "top_self": [{"module": e[3], "self_ms": e[1] / 1e3} for e in by_self],
    }


# --- (b) ensure_schema, warm -----------------------------------------------------------------


def ensure_schema_cost(repeats: int) -> dict[str, Any]:
    from core.kernel.config import Settings
    from core.kernel.db.engine import dispose, get_engine
    from core.kernel.db.migrations import ensure_schema
    from handlers.context import Services

    with scratch("ensure") as folder:
        url = sqlite_url(folder)
        engine = get_engine(url)
        ensure_schema(engine)  # the first call migrates; everything below is warm
        services = Services(Settings(database_url=url))
        services.ready_engine()
        say(f"app/ensure_schema: timeit, {repeats} repeats")

        def per_call_us(stmt: Any, number: int) -> list[float]:
            timer = timeit.Timer(stmt)
            return [t / number * 1e6 for t in timer.repeat(repeat=repeats, number=number)]

        memo = per_call_us(lambda: ensure_schema(engine), 200_000)
        ready = per_call_us(services.ready_engine, 200_000)
        empty = per_call_us(lambda: None, 200_000)
        # What every `probe_seconds` (5 s) costs once: a transaction and a version query.
        probe = per_call_us(lambda: ensure_schema(engine, probe_seconds=0.0), 2_000)
        dispose(url)
    return {
        "repeats": repeats,
        "ensure_schema_us": memo,
        "ready_engine_us": ready,
        "empty_lambda_us": empty,
        "probe_us": probe,
    }


# --- (c) warm GET /health --------------------------------------------------------------------


def warm_child(rounds: int, per_round: int) -> None:
    """Runs in a child (MNEMO_DATABASE_URL and MNEMO_LOG_LEVEL set by the parent): times the
    real `handlers.api.handler` and a bare Mangum + Starlette app on the same event object."""
    from mangum import Mangum
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import handlers.api
    from tests.lambda_client import LambdaContext, http_event

    async def constant(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    bare = Mangum(Starlette(routes=[Route("/health", constant)]), lifespan="off")
    mnemo = handlers.api.handler
    event = http_event("GET", "/health")
    ctx = LambdaContext()

    # Mangum only reads the event, so one dict serves every call and no copy is timed.
    snapshot = copy.deepcopy(event)
    for fn in (mnemo, bare):
        result = fn(event, ctx)
        assert result["statusCode"] == 200, result
    assert event == snapshot, "the handler mutated the event: it would need a copy per call"

    perf = time.perf_counter_ns
    samples: dict[str, list[float]] = {"mnemo": [], "bare": []}
    for _ in range(max(500, per_round)):  # warm-up
        mnemo(event, ctx)
        bare(event, ctx)
    gc.collect()
    for r in range(rounds):
        order = [("mnemo", mnemo), ("bare", bare)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            out = samples[name]
            for _ in range(per_round):
                t0 = perf()
                fn(event, ctx)
                out.append((perf() - t0) / 1e6)
    result = {name: Summary.of(values).as_dict() for name, values in samples.items()}
    print(json.dumps(result))


def warm_health(rounds: int, per_round: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "per_round": per_round}
    with scratch("warm") as folder:
        url = _migrated_sqlite(folder)
        for level in ("WARNING", "INFO"):
            say(f"app/warm: GET /health x {rounds * per_round}, MNEMO_LOG_LEVEL={level}")
            args = [
                sys.executable,
                "-m",
                "bench",
                "_warm-health",
                "--rounds",
                str(rounds),
                "--per-round",
                str(per_round),
            ]
            # INFO writes one JSON access-log line per request to stderr: send it to /dev/null.
            stdout, _ = _run(args, _child_env(url, level), quiet_stderr=level == "INFO")
            out[level] = json.loads(stdout.strip().splitlines()[-1])
    return out


# --- the whole benchmark ---------------------------------------------------------------------


def run(*, quick: bool = False) -> dict[str, Any]:
    return {
        "cold": cold_start(5 if quick else 15),
        "ensure_schema": ensure_schema_cost(3 if quick else 7),
        "warm_health": warm_health(5 if quick else 15, 200 if quick else 400),
    }


def _median(values: list[float]) -> float:
    return Summary.of(values).median


def markdown(results: dict[str, Any]) -> str:
    cold = results["cold"]
    s = cold["summaries"]
    parts = ["## app", "", f"### (a) cold start ({cold['runs']} fresh processes, ms)", ""]
    rows = [
        [
            "import handlers.api + first GET /health, MNEMO_LOG_LEVEL=WARNING",
            fmt(s["warning_total"]["median"], 1),
            fmt(s["warning_total"]["p95"], 1),
            f"< {COLD_TARGET_MS:.0f}",
            verdict(s["warning_total"]["median"], COLD_TARGET_MS),
        ],
        [
            "import handlers.api + a first POST /v1/search (API key; loads search, models, numpy)",
            fmt(s["search_total"]["median"], 1),
            fmt(s["search_total"]["p95"], 1),
            "",
            "",
        ],
        [
            "import handlers.api + first GET /health, MNEMO_LOG_LEVEL=INFO",
            fmt(s["info_total"]["median"], 1),
            fmt(s["info_total"]["p95"], 1),
            f"< {COLD_TARGET_MS:.0f}",
            verdict(s["info_total"]["median"], COLD_TARGET_MS),
        ],
        [
            "the same (WARNING) with Mnemo's code shipped without .pyc files",
            fmt(s["no_pyc_total"]["median"], 1),
            fmt(s["no_pyc_total"]["p95"], 1),
            "",
            "",
        ],
        [
            "import handlers.api alone",
            fmt(s["warning_import"]["median"], 1),
            fmt(s["warning_import"]["p95"], 1),
            "",
            "",
        ],
        [
            "first handler call alone (engine, connect, schema probe)",
            fmt(s["warning_invoke"]["median"], 1),
            fmt(s["warning_invoke"]["p95"], 1),
            "",
            "",
        ],
        [
            "for scale: import starlette+mangum+sqlalchemy+numpy+pydantic",
            fmt(s["libs_all"]["median"], 1),
            fmt(s["libs_all"]["p95"], 1),
            "",
            "",
        ],
        *[
            [
                f"for scale: {label.split(':', 1)[1]} alone",
                fmt(s[label]["median"], 1),
                fmt(s[label]["p95"], 1),
                "",
                "",
            ]
            for label in s
            if label.startswith("lib:")
        ],
        [
            f"floor: the {cold['deps_module_count']} library modules handlers.api loads, "
            "imported on their own",
            fmt(s["deps_floor"]["median"], 1),
            fmt(s["deps_floor"]["p95"], 1),
            "",
            "",
        ],
        [
            "=> Mnemo's own share of the import (import alone - floor, medians)",
            fmt(s["warning_import"]["median"] - s["deps_floor"]["median"], 1),
            "",
            "",
            "",
        ],
        [
            "whole child process, spawn to exit (WARNING)",
            fmt(s["warning_process"]["median"], 1),
            fmt(s["warning_process"]["p95"], 1),
            "",
            "",
        ],
        [
            "whole child process, `python -c pass`",
            fmt(s["bare_python_process"]["median"], 1),
            fmt(s["bare_python_process"]["p95"], 1),
            "",
            "",
        ],
    ]
    parts.append(table(["measure", "median", "p95", "target", "result"], rows))
    ratio = s["warning_total"]["median"] / s["libs_all"]["median"]
    parts += [
        "",
        f"Cold start / the five libraries together: {ratio:.2f}x (a load-independent figure to "
        "compare runs by).",
    ]
    imports = cold["importtime"]
    if imports["by_package"]:
        parts += [
            "",
            "Where the import goes: `python -X importtime -c 'import handlers.api'`, one run, "
            "self time summed by top-level package (the tool inflates times; read the shares). "
            f"handlers.api: {fmt(imports['handlers_api_cumulative_ms'], 1)} ms cumulative, of "
            f"which {fmt(imports['handlers_api_self_ms'], 1)} ms in its own body (`create_app()`, "
            "which builds the OpenAPI spec).",
            "",
            table(
                ["package", "self ms", "modules with the largest self time"],
                [
                    [
                        f"`{p['package']}`",
                        fmt(p["self_ms"], 1),
                        ", ".join(
                            f"`{t['module']}` {fmt(t['self_ms'], 1)}"
                            for t in imports["top_self"]
                            if _group(t["module"]) == p["package"]
                        )[:200],
                    ]
                    for p in imports["by_package"][:10]
                ],
            ),
        ]

    ens = results["ensure_schema"]
    memo = _median(ens["ensure_schema_us"])
    parts += [
        "",
        f"### (b) warm `ensure_schema(engine)` (timeit, median of {ens['repeats']} repeats, us)",
        "",
        table(
            ["measure", "per call (us)", "target", "result"],
            [
                [
                    "`ensure_schema(engine)`, memoised",
                    fmt(memo, 3),
                    f"< {ENSURE_TARGET_US:.0f}",
                    verdict(memo, ENSURE_TARGET_US),
                ],
                [
                    "`Services.ready_engine()` (get_engine + ensure_schema)",
                    fmt(_median(ens["ready_engine_us"]), 3),
                    "",
                    "",
                ],
                ["empty call, for scale", fmt(_median(ens["empty_lambda_us"]), 3), "", ""],
                [
                    "the re-probe every `probe_seconds` (5 s): transaction + version query",
                    fmt(_median(ens["probe_us"]), 1),
                    "",
                    "",
                ],
            ],
        ),
    ]

    warm = results["warm_health"]
    parts += [
        "",
        f"### (c) warm GET /health, in-process ({warm['rounds']} interleaved rounds of "
        f"{warm['per_round']} calls each, ms per invocation)",
        "",
    ]
    rows = []
    for level in ("WARNING", "INFO"):
        m, b = warm[level]["mnemo"], warm[level]["bare"]
        rows.append(
            [
                f"`handlers.api.handler`, {level}",
                fmt(m["median"], 4),
                fmt(m["p95"], 4),
                fmt(b["median"], 4),
                fmt(b["p95"], 4),
                f"{m['median'] / b['median']:.2f}x",
                f"< {WARM_TARGET_MS}",
                verdict(m["median"], WARM_TARGET_MS),
            ]
        )
    parts.append(
        table(
            [
                "handler, log level",
                "median",
                "p95",
                "bare app median",
                "bare app p95",
                "ratio (medians)",
                "target",
                "result",
            ],
            rows,
        )
    )
    return "\n".join(parts)
