"""Mnemo's benchmarks: `python -m bench {app,memories,concurrency,all}`.

Every request goes through the real Lambda entry path in-process (an API Gateway HTTP API v2
event -> `handlers.events.dispatch` -> Mangum -> the Starlette app), so the figures include the
adapter, routing, middleware, auth and JSON work a deployed function does, minus the network.
"""

# Before any benchmark imports numpy: `core` sets one BLAS thread, as wherever Mnemo runs.
import core  # noqa: F401
