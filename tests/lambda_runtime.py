"""A Lambda execution environment in miniature, for the deploy rehearsal: one process per
function, as Lambda runs them.

`python -m tests.lambda_runtime handlers.api.handler` imports the handler once (the init
phase), prints {"ready": true}, then answers one invocation per line of stdin, a JSON object:

    {"event": {...}}               -> {"result": ...} or {"error": "EventRefused", "message"}
    {"freeze": 60}                 -> the instance is frozen 60 s: the wall clock the store's
                                      engine reads moves on by that much (a real freeze here
                                      would cost the test that long)
    {"snapshot": true}             -> SnapStart's before-snapshot hook (handlers/api.py)
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any


def main() -> int:
    module, _, attribute = sys.argv[1].rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)
    frozen_for = 0.0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        message: dict[str, Any] = json.loads(line)
        if "freeze" in message:
            from core.kernel.db import engine

            frozen_for += float(message["freeze"])

            def clock(offset: float = frozen_for) -> float:
                return time.time() + offset

            engine._clock = clock
            print(json.dumps({"result": "thawed"}), flush=True)
            continue
        if message.get("snapshot"):
            from handlers.api import before_snapshot

            before_snapshot()
            print(json.dumps({"result": "snapshot"}), flush=True)
            continue
        context = SimpleNamespace(
            aws_request_id=str(uuid.uuid4()),
            function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "mnemo"),
            memory_limit_in_mb=512,
            get_remaining_time_in_millis=lambda: 60_000,
        )
        try:
            reply: dict[str, Any] = {"result": handler(message["event"], context)}
        except Exception as exc:  # what Lambda reports as the invocation's error
            reply = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(reply, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
