"""Route modules load on first use (handlers/lazy.py): none may become unreachable, and a cold
start imports only what its request needs."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import handlers.routes
from handlers.api import ROUTE_MODULES
from handlers.lazy import LazyRoutes

ROOT = Path(__file__).resolve().parents[2]


def test_every_route_lies_under_a_prefix_of_its_module() -> None:
    lazy = LazyRoutes(ROUTE_MODULES)
    for module in ROUTE_MODULES:
        routes = lazy.routes_of(module)
        assert routes, module.target
        for route in routes:
            path = getattr(route, "path", "")
            assert path.startswith(module.prefixes), (module.target, path)


def test_every_route_module_is_registered() -> None:
    listed = {m.target.partition(":")[0] for m in ROUTE_MODULES}
    found = {
        f"handlers.routes.{info.name}"
        for info in pkgutil.iter_modules(handlers.routes.__path__)
        if info.name != "health"  # served eagerly, before the lazy modules
    }
    assert found <= listed, found - listed


_PROBE = """
import json, sys
from tests.lambda_client import http_event
import handlers.api

def loaded():
    return sorted(m for m in sys.modules if m.startswith(("handlers.routes.", "numpy")))

report = {"import": loaded()}
reply = handlers.api.handler(http_event("GET", "/health"), None)
report["health"] = [reply["statusCode"], loaded()]
reply = handlers.api.handler(
    http_event("GET", "/v1/memories", headers={"authorization": "Bearer dev-key"}), None
)
report["memories"] = [reply["statusCode"], loaded()]
print(json.dumps(report))
"""


def _probe(tmp_path: Path, **env: str) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MNEMO_DATABASE_URL": f"sqlite:///{tmp_path / 'mnemo.db'}",
        "MNEMO_API_KEY": "dev-key",
        "MNEMO_LOG_LEVEL": "WARNING",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_a_cold_start_imports_what_its_request_needs(tmp_path: Path) -> None:
    report = _probe(tmp_path)
    assert report["import"] == ["handlers.routes.health"]
    status, loaded = report["health"]
    assert status == 200 and loaded == ["handlers.routes.health"]
    status, loaded = report["memories"]
    assert status == 200
    assert "handlers.routes.memories" in loaded and "numpy" in loaded
    # Modules whose prefixes a memories request cannot reach stay unloaded.
    for name in ("oauth", "auth", "watches", "snapshots", "mcp", "openmemory"):
        assert f"handlers.routes.{name}" not in loaded, name


def test_a_snapstart_init_loads_every_route_module(tmp_path: Path) -> None:
    """Under SnapStart, init runs once before the snapshot: loading everything there is free."""
    report = _probe(tmp_path, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    listed = {m.target.partition(":")[0] for m in ROUTE_MODULES} - {"handlers.console.routes"}
    assert listed <= set(report["import"])
