"""Every sample event in events/ through the Lambda entry point, as `sam local invoke -e` would
send it: HTTP-shaped events (HTTP API v2, Function URL, REST API v1, ALB) reach the app through
Mangum and must come back in the shape their integration expects; the EventBridge schedule
runs maintenance; anything else is refused.

In-process, the handler is assembled the way handlers/api.py assembles it, over a fresh SQLite
file (the module-level `handlers.api.handler` is bound to the process environment at import).
One test imports the real module-level handler in a subprocess, as Lambda does.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mangum import Mangum

from core import __version__
from core.kernel.config import Settings, settings_from_env
from core.kernel.db.engine import dispose
from core.kernel.db.migrations import LATEST_VERSION
from handlers import events
from handlers.api import create_app
from tests.lambda_client import EVENTS, LambdaContext

ROOT = EVENTS.parent
HTTP_EVENTS = ["alb", "function_url", "http_api_v2", "rest_api_v1"]
SCHEDULE_EVENTS = ["schedule"]
SQS_EVENTS = ["sqs", "sqs_ingest"]
MEMORY_EVENTS = ["eventbridge"]
ALL_EVENTS = sorted(p.stem for p in EVENTS.glob("*.json"))

Handler = Callable[[dict[str, Any], Any], Any]


def load_event(name: str) -> dict[str, Any]:
    event = json.loads((EVENTS / f"{name}.json").read_text())
    assert isinstance(event, dict)
    return event


def _clear_mnemo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MNEMO_"):
            monkeypatch.delenv(name)


def handler_from_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, *, api_key: str | None = None
) -> Handler:
    """handlers/api.py, step by step, with MNEMO_DATABASE_URL pointing at the test database."""
    _clear_mnemo_env(monkeypatch)
    monkeypatch.setenv("MNEMO_DATABASE_URL", database_url)
    if api_key is not None:
        monkeypatch.setenv("MNEMO_API_KEY", api_key)
    monkeypatch.setenv("MNEMO_LOG_LEVEL", "WARNING")
    app = create_app(settings_from_env())
    http = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> Any:
        return events.dispatch(event, context, http=http, services=app.state.services)

    return handler


def handler_from_settings(database_url: str) -> Handler:
    app = create_app(Settings(database_url=database_url, log_level="WARNING"))
    return functools.partial(
        events.dispatch, http=Mangum(app, lifespan="off"), services=app.state.services
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mnemo.db"
    yield path
    dispose(f"sqlite:///{path}")


@pytest.fixture(params=["env", "settings"])
def handler(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> Handler:
    url = f"sqlite:///{db_path}"
    if request.param == "env":
        return handler_from_env(monkeypatch, url)
    return handler_from_settings(url)


def response_headers(result: dict[str, Any]) -> dict[str, str]:
    """The response headers, lower-cased, whichever of the two fields carries them."""
    if "headers" in result:
        return {k.lower(): v for k, v in result["headers"].items()}
    return {k.lower(): values[-1] for k, values in result["multiValueHeaders"].items()}


def response_body(result: dict[str, Any]) -> Any:
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def assert_health(result: dict[str, Any], request_id: str) -> None:
    assert result["statusCode"] == 200, result
    headers = response_headers(result)
    assert headers["content-type"].startswith("application/json")
    # No x-request-id came in, so the middleware uses Lambda's request id.
    assert headers["x-request-id"] == request_id
    assert response_body(result) == {
        "status": "ok",
        "version": __version__,
        "schema_version": LATEST_VERSION,
        "store": "sqlite",
    }


def maintenance_rows(db_path: Path) -> list[tuple[str, int, dict[str, Any]]]:
    with closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT type, count, detail FROM stats WHERE type = 'maintenance' ORDER BY ts"
        ).fetchall()
    return [(t, c, json.loads(d)) for t, c, d in rows]


# --- the sample events --------------------------------------------------------------------


def test_sample_events_cover_every_integration() -> None:
    assert sorted(HTTP_EVENTS + SCHEDULE_EVENTS + SQS_EVENTS + MEMORY_EVENTS) == ALL_EVENTS
    for name in SQS_EVENTS:
        assert events.is_sqs(load_event(name)), name
    for name in MEMORY_EVENTS:
        assert events.is_memory_event(load_event(name)), name
        assert not events.is_schedule(load_event(name)), name
    for name in HTTP_EVENTS:
        assert events.is_http(load_event(name)), name
        assert not events.is_schedule(load_event(name)), name
    for name in SCHEDULE_EVENTS:
        assert events.is_schedule(load_event(name)), name
        assert not events.is_http(load_event(name)), name


@pytest.mark.parametrize("name", HTTP_EVENTS)
def test_http_event_health(handler: Handler, name: str) -> None:
    context = LambdaContext()
    assert_health(handler(load_event(name), context), context.aws_request_id)


@pytest.mark.parametrize("name", HTTP_EVENTS)
def test_http_event_keeps_a_given_request_id(handler: Handler, name: str) -> None:
    event = load_event(name)
    event["headers"]["X-Request-Id"] = "trace-me-123"
    if "multiValueHeaders" in event:
        event["multiValueHeaders"]["X-Request-Id"] = ["trace-me-123"]
    result = handler(event, LambdaContext())
    assert result["statusCode"] == 200
    assert response_headers(result)["x-request-id"] == "trace-me-123"


@pytest.mark.parametrize("name", ["http_api_v2", "function_url"])
def test_payload_v2_response_shape(handler: Handler, name: str) -> None:
    result = handler(load_event(name), LambdaContext())
    assert isinstance(result["statusCode"], int)
    assert isinstance(result["body"], str)
    assert result["isBase64Encoded"] is False
    assert all(isinstance(v, str) for v in result["headers"].values())
    assert "multiValueHeaders" not in result  # payload v2 has no such field


def test_rest_api_v1_response_shape(handler: Handler) -> None:
    result = handler(load_event("rest_api_v1"), LambdaContext())
    assert set(result) >= {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
    assert isinstance(result["statusCode"], int)
    assert isinstance(result["body"], str)
    assert result["isBase64Encoded"] is False
    assert all(isinstance(v, str) for v in result["headers"].values())
    multi = result["multiValueHeaders"]
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in multi.values())
    # Every header is in one of the two fields; x-request-id is single-valued.
    assert result["headers"]["x-request-id"]


def test_alb_response_shape(handler: Handler) -> None:
    """Without multi-value headers on the target group, an ALB wants `headers` only."""
    result = handler(load_event("alb"), LambdaContext())
    assert set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert isinstance(result["statusCode"], int)
    assert isinstance(result["body"], str)
    assert result["isBase64Encoded"] is False
    assert all(isinstance(v, str) for v in result["headers"].values())


def test_alb_multi_value_headers_response_shape(handler: Handler) -> None:
    """With multi-value headers on, the event carries `multiValueHeaders` and the response must
    too, and only that field."""
    event = load_event("alb")
    event["multiValueHeaders"] = {k: [v] for k, v in event.pop("headers").items()}
    event["multiValueQueryStringParameters"] = event.pop("queryStringParameters")
    context = LambdaContext()
    result = handler(event, context)
    assert set(result) == {"statusCode", "multiValueHeaders", "body", "isBase64Encoded"}
    assert all(isinstance(v, list) for v in result["multiValueHeaders"].values())
    assert_health(result, context.aws_request_id)


def test_schedule_runs_maintenance(handler: Handler, db_path: Path) -> None:
    result = handler(load_event("schedule"), LambdaContext())
    assert result["ok"] is True
    tasks = result["tasks"]
    assert "wal_checkpoint" in tasks  # SQLite's upkeep ran
    assert tasks["duration_ms"] >= 0
    assert maintenance_rows(db_path) == [("maintenance", 1, tasks)]
    # A warm instance runs it again: one row per run.
    handler(load_event("schedule"), LambdaContext())
    assert len(maintenance_rows(db_path)) == 2


@pytest.mark.parametrize(
    "event",
    [
        {"foo": 1},
        {},
        {"Records": [{"eventSource": "aws:s3", "body": "{}"}]},
        {"source": "aws.events", "detail-type": "Object Created", "detail": {}},
    ],
    ids=["foo", "empty", "s3", "other-eventbridge"],
)
def test_unknown_event_raises(handler: Handler, event: dict[str, Any]) -> None:
    with pytest.raises(events.UnknownEvent):
        handler(event, LambdaContext())


def test_sqs_event_drains_the_outbox(handler: Handler) -> None:
    """The DeliveryFunction's event: nothing is due, and no message is reported failed."""
    assert not events.is_ingest(load_event("sqs"))
    assert handler(load_event("sqs"), LambdaContext()) == {"batchItemFailures": []}


def test_sqs_ingest_event_runs_the_job(handler: Handler) -> None:
    """The IngestFunction's event (tests/api/test_ingest_queue.py runs real jobs): a message
    naming no job of the store is done with, not delivered again."""
    assert events.is_ingest(load_event("sqs_ingest"))
    assert handler(load_event("sqs_ingest"), LambdaContext()) == {"batchItemFailures": []}


def test_eventbridge_memory_event_adds_a_memory(handler: Handler, db_path: Path) -> None:
    from core.identity.brains import ensure_brain
    from core.kernel.db.engine import get_engine, transaction

    handler(load_event("http_api_v2"), LambdaContext())  # the schema, as any first request
    with transaction(get_engine(f"sqlite:///{db_path}")) as conn:
        ensure_brain(conn, "default")
    result = handler(load_event("eventbridge"), LambdaContext())
    assert result["ok"] is True, result
    assert result["memory"]["content"] == "Alice renewed her plan for another year"
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM memories").fetchone() == (1,)


def test_eventbridge_event_works_on_a_fresh_store_in_single_key_mode(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """MNEMO_API_KEY set: the default brain exists from the first event, whatever it is."""
    handler = handler_from_env(monkeypatch, f"sqlite:///{db_path}", api_key="sk-single")
    result = handler(load_event("eventbridge"), LambdaContext())
    assert result["ok"] is True, result
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT slug FROM brains").fetchall() == [("default",)]


def test_eventbridge_event_for_a_missing_brain_raises(handler: Handler) -> None:
    """Raised, not returned: Lambda's asynchronous retries and the events dead-letter queue
    (template.yaml) only see a failed invocation."""
    event = load_event("eventbridge")
    event["detail"]["brain"] = "no-such-brain"
    with pytest.raises(events.EventRefused) as refused:
        handler(event, LambdaContext())
    assert refused.value.result["error"]["code"] == "not_found"
    assert refused.value.result["event_id"] == event["id"]
    assert "no-such-brain" in str(refused.value)


def test_module_handler_refuses_unknown_event() -> None:
    """The real entry point, in-process: an unknown event fails before touching any store."""
    from handlers.api import handler

    with pytest.raises(events.UnknownEvent):
        handler({"foo": 1}, LambdaContext())


# --- the real module-level handler, imported as Lambda imports it -------------------------

_LAMBDA_SCRIPT = """
import json, sys
from pathlib import Path
from types import SimpleNamespace

from handlers.api import handler  # what template.yaml names
from handlers.events import UnknownEvent

out = {}
for name in sys.argv[2:]:
    context = SimpleNamespace(
        aws_request_id=f"req-{name}",
        function_name="mnemo-ApiFunction",
        memory_limit_in_mb=512,
        get_remaining_time_in_millis=lambda: 30_000,
    )
    event = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())
    out[name] = handler(event, context)
try:
    handler({"foo": 1}, None)
    out["unknown"] = "accepted"
except UnknownEvent:
    out["unknown"] = "UnknownEvent"
print(json.dumps(out))
"""


def test_module_handler_in_subprocess(tmp_path: Path) -> None:
    db = tmp_path / "lambda.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(
        {
            # What template.yaml sets, with an explicit store; Lambda adds the function name.
            # With the operator's key set, the default brain exists from the first start, so
            # every sample event (eventbridge.json names it) works on this fresh store.
            "MNEMO_DATABASE_URL": f"sqlite:///{db}",
            "MNEMO_API_KEY": "sk-single-key-for-the-default-brain",
            "MNEMO_LOG_LEVEL": "INFO",
            "MNEMO_MAX_BODY_BYTES": "1048576",
            "AWS_LAMBDA_FUNCTION_NAME": "mnemo-ApiFunction",
            "PYTHONPATH": str(ROOT),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", _LAMBDA_SCRIPT, str(EVENTS), *ALL_EVENTS],
        cwd=tmp_path,  # not the repo: the import must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in HTTP_EVENTS:
        assert_health(out[name], f"req-{name}")
    assert out["schedule"]["ok"] is True
    assert maintenance_rows(db) == [("maintenance", 1, out["schedule"]["tasks"])]
    assert out["eventbridge"]["ok"] is True, out["eventbridge"]
    assert out["eventbridge"]["memory"]["source"] == "eventbridge:mnemo.crm"
    assert out["sqs"] == {"batchItemFailures": []}
    assert out["unknown"] == "UnknownEvent"
    # The JSON access log went to stderr, carrying the request id.
    logged = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    access = [e for e in logged if e.get("logger") == "mnemo.access"]
    assert {e["request_id"] for e in access} == {f"req-{n}" for n in HTTP_EVENTS}
