"""What authentication costs on a warm invocation, through the Mangum handler in-process on
SQLite: the same cheap request (GET /v1/memories?limit=1 on an empty brain) with an API key and
with a session access token, against GET /health (no auth) in the same run; and a login. Then
the verification alone, as `handlers.context.authorize` runs it (one autocommit read on a
pooled connection), on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.auth
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")

from bench.common import (
    context,
    event,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    percentile,
    postgres,
    reply_json,
    say,
    scratch,
    sqlite_url,
    table,
)

_ROUNDS = 15
_PER_ROUND = 300


def _time(handler: Any, e: dict[str, Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        result = handler(e, context())
        out.append((time.perf_counter() - started) * 1000)
        assert result["statusCode"] == 200, result
    return out


def run() -> dict[str, Any]:
    with scratch("auth") as folder:
        url = sqlite_url(folder)
        _slug, key = new_tenant(url)
        handler = make_handler(url)
        email, password = f"{uuid.uuid4().hex[:8]}@example.org", "a long enough password"
        signup = {"email": email, "password": password}
        created = handler(event("POST", "/auth/signup", json_body=signup), context())
        assert created["statusCode"] == 201, created
        token = reply_json(created)["access_token"]
        cases = {
            "GET /health (no auth)": event("GET", "/health"),
            "GET /v1/memories?limit=1, API key": event(
                "GET", "/v1/memories", key=key, query={"limit": 1}
            ),
            "GET /v1/memories?limit=1, session access token": event(
                "GET", "/v1/memories", key=token, query={"limit": 1}
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(_ROUNDS):  # interleaved, so load changes hit every case alike
            for name, e in cases.items():
                samples[name] += _time(handler, e, _PER_ROUND)
        logins = []
        for _ in range(5):
            started = time.perf_counter()
            result = handler(event("POST", "/auth/login", json_body=signup), context())
            logins.append((time.perf_counter() - started) * 1000)
            assert result["statusCode"] == 200, result
        verify = {"SQLite": verification(url, token, key)}
    try:
        with postgres() as pg:
            pg_url = pg.new_database()
            _slug, pg_key = new_tenant(pg_url)
            pg_handler = make_handler(pg_url)
            reply = pg_handler(event("POST", "/auth/signup", json_body=signup), context())
            verify["PostgreSQL"] = verification(pg_url, reply_json(reply)["access_token"], pg_key)
    except Exception as exc:  # no PostgreSQL here: report SQLite alone
        say(f"auth: PostgreSQL skipped: {exc}")
    medians = {name: percentile(v, 50) for name, v in samples.items()}
    return {
        "machine": machine(),
        "cases": {n: {"p50": medians[n], "p95": percentile(v, 95)} for n, v in samples.items()},
        "login_ms": percentile(logins, 50),
        "verification": verify,
    }


def verification(url: str, token: str, key: str, n: int = 5_000) -> dict[str, float]:
    """p50 (ms) of the access-token and API-key checks alone, warm, interleaved; and for
    reference the token check as it ran before: a read transaction on a connection that the
    pool pings at every checkout."""
    from sqlalchemy import create_engine

    from core.identity import keys, sessions
    from core.kernel.db.engine import get_engine, single_read, transaction

    engine = get_engine(url)
    pinged = create_engine(engine.url, pool_pre_ping=True) if "postgresql" in url else engine
    samples: dict[str, list[float]] = {"token": [], "key": [], "before": []}
    for _ in range(n):
        started = time.perf_counter()
        with single_read(engine) as conn:
            assert sessions.verify_access(conn, token) is not None
        samples["token"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with single_read(engine) as conn:
            assert keys.find_key(conn, key) is not None
        samples["key"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with transaction(pinged, write=False) as conn:
            assert sessions.verify_access(conn, token) is not None
        samples["before"].append((time.perf_counter() - started) * 1000)
    return {name: percentile(values, 50) for name, values in samples.items()}


def markdown(results: dict[str, Any]) -> str:
    cases = results["cases"]
    key = cases["GET /v1/memories?limit=1, API key"]["p50"]
    token = cases["GET /v1/memories?limit=1, session access token"]["p50"]
    health = cases["GET /health (no auth)"]["p50"]
    rows = [[name, f"{c['p50']:.3f}", f"{c['p95']:.3f}"] for name, c in cases.items()]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            table(["request", "p50 ms", "p95 ms"], rows),
            f"Token against API key: {token - key:+.3f} ms; token request against /health (all "
            f"of auth plus a one-row list): {token - health:+.3f} ms. "
            f"Login (PBKDF2, 600,000 iterations) p50: {results['login_ms']:.1f} ms.",
            table(
                [
                    "verification alone (warm, 5,000 each)",
                    "access token p50 ms",
                    "API key p50 ms",
                    "token, as before (transaction, ping per checkout on PostgreSQL)",
                ],
                [
                    [store, f"{v['token']:.3f}", f"{v['key']:.3f}", f"{v['before']:.3f}"]
                    for store, v in results["verification"].items()
                ],
            ),
        ]
    )


if __name__ == "__main__":
    print(markdown(run()))
