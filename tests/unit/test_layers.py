"""The memory package stands on its own: importing it loads nothing from the layers above it
(search, graph, curation, webhooks, app) and nothing of HTTP. Checked in a fresh interpreter,
since this test process has imported everything already."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import core.memory

ROOT = Path(__file__).resolve().parents[2]
ABOVE_MEMORY = ("core.retrieval", "core.graph", "core.curation", "core.transfer", "core.webhooks",
                "core.app", "handlers")  # fmt: skip
HTTP = ("starlette", "mangum", "uvicorn", "httpx", "urllib3", "requests")


def _loaded_after(statement: str) -> list[str]:
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


def test_every_memory_module_loads_no_search_webhook_or_http_code() -> None:
    names = [f"core.memory.{m.name}" for m in pkgutil.iter_modules(core.memory.__path__)]
    assert "core.memory.store" in names
    loaded = _loaded_after("\n".join(f"import {name}" for name in names))
    assert "core.memory.store" in loaded  # the probe did import what it claims to
    above = [m for m in loaded if m.startswith(ABOVE_MEMORY)]
    http = [m for m in loaded if m.split(".")[0] in HTTP]
    assert above == [] and http == []
