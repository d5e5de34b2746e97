"""async_mode on AWS, on both stores: the API function saves the job, hands its id to the
ingestion queue (SQS, here moto with real boto3 calls) and answers 202 before any LLM call;
the IngestFunction's SQS event then runs the job. SQS delivers at least once, so a message
delivered again must never do a job twice, and a job held by a live runner is retried later.
The LLM is the recorded stub server of tests/api/test_extraction.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from core.app import extraction, jobs
from core.kernel import sqs
from core.kernel.config import ExtractionSettings, Settings
from core.kernel.db.engine import transaction
from handlers import events
from tests.api.test_extraction import CHAT, StubLLM, _state, recorded
from tests.conftest import Tenant
from tests.lambda_client import EVENTS, LambdaClient, LambdaContext


@pytest.fixture
def llm() -> Iterator[StubLLM]:
    server = StubLLM()
    yield server
    server.close()


@pytest.fixture
def queue_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sqs.forget_clients()
        client = boto3.client("sqs", region_name="us-east-1")
        yield client.create_queue(QueueName="mnemo-IngestQueue")["QueueUrl"]
        sqs.forget_clients()


def api(settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str) -> LambdaClient:
    chat = ExtractionSettings(llm="openai", base_url=llm.url, queue_url=queue_url)
    return LambdaClient(settings.with_(extraction=chat), key=tenant.key)


def receive(queue_url: str) -> list[dict[str, Any]]:
    """The queue's messages as the IngestFunction's SQS event records."""
    client = boto3.client("sqs", region_name="us-east-1")
    got = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    template = json.loads((EVENTS / "sqs_ingest.json").read_text())["Records"][0]
    return [{**template, "messageId": m["MessageId"], "body": m["Body"]} for m in got]


def worker(client: LambdaClient, records: list[dict[str, Any]]) -> Any:
    """The IngestFunction: the same entry point as every function (handlers/api.py)."""
    return events.dispatch(
        {"Records": records},
        LambdaContext(),
        http=client.handler,
        services=client.app.state.services,
    )


def job_row(engine: Engine, job_id: str) -> Any:
    with transaction(engine, write=False) as conn:
        return conn.execute(
            text("SELECT status, updated_at, results, error FROM ingest_jobs WHERE id = :id"),
            {"id": job_id},
        ).one()


def post_async(client: LambdaClient, user: str) -> dict[str, Any]:
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": user, "async_mode": True})
    assert reply.status == 202, reply.body
    job: dict[str, Any] = reply.json()["job"]
    return job


def test_the_202_comes_before_extraction_and_the_worker_does_the_job(
    settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str, engine: Engine
) -> None:
    client = api(settings, tenant, llm, queue_url)
    llm.reply = recorded({})
    job = post_async(client, "u1")
    # Nothing ran in the request: no LLM call, no memory, the job still pending.
    assert llm.requests == []
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "pending"
    assert client.get("/v1/memories", query={"user_id": "u1"}).json()["results"] == []
    [record] = receive(queue_url)
    assert json.loads(record["body"]) == {"ingest_job": job["id"], "brain_id": tenant.brain_id}

    assert worker(client, [record]) == {"batchItemFailures": []}
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    assert {r["memory"]["content"] for r in done["results"]} == {
        "Lives in Lyon",
        "Likes green tea",
        "No longer has a dog",
    }
    assert {r["memory"]["user_id"] for r in done["results"]} == {"u1"}
    listed = client.get("/v1/memories", query={"user_id": "u1"}).json()["results"]
    assert len(listed) == 3

    # SQS delivers at least once: the same message again changes nothing, calls no LLM.
    calls, before, row = len(llm.requests), _state(engine, tenant), job_row(engine, job["id"])
    assert worker(client, [record]) == {"batchItemFailures": []}
    assert len(llm.requests) == calls
    assert _state(engine, tenant) == before
    assert job_row(engine, job["id"]) == row


def test_a_failing_llm_marks_the_job_failed_and_changes_nothing(
    settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str, engine: Engine
) -> None:
    client = api(settings, tenant, llm, queue_url)
    llm.reply = lambda body: (500, "model overloaded")
    before = _state(engine, tenant)
    reply = client.post(
        "/v3/memories/add/", {"messages": CHAT, "user_id": "u2", "async_mode": True}
    )
    [queued] = reply.json()["results"]
    assert queued["status"] == "PENDING" and llm.requests == []
    assert worker(client, receive(queue_url)) == {"batchItemFailures": []}
    event = client.get(f"/v1/event/{queued['event_id']}/").json()
    assert event["status"] == "FAILED", event
    assert event["error"]["code"] == "extraction_failed"
    assert "500" in event["error"]["message"] or "overloaded" in event["error"]["message"]
    job = client.get(f"/v1/jobs/{queued['event_id']}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "extraction_failed"
    assert _state(engine, tenant)[0] == before[0]  # no memory changed


def test_a_job_held_by_a_live_runner_is_retried_later_and_a_dead_ones_is_taken_over(
    settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str, engine: Engine
) -> None:
    client = api(settings, tenant, llm, queue_url)
    llm.reply = recorded({})
    job = post_async(client, "u3")
    [record] = receive(queue_url)
    # Another runner claimed it a moment ago: the message goes back to the queue (reported
    # failed), the job is not touched.
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE ingest_jobs SET status = 'running' WHERE id = :id"), {"id": job["id"]}
        )
    busy = worker(client, [record])
    assert busy == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert llm.requests == [] and job_row(engine, job["id"]).status == "running"
    # That runner died (its lease lapsed): the next delivery takes the job over and does it.
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE ingest_jobs SET updated_at = updated_at - :lease WHERE id = :id"),
            {"lease": jobs.LEASE_MS + 1, "id": job["id"]},
        )
    assert worker(client, [record]) == {"batchItemFailures": []}
    assert job_row(engine, job["id"]).status == "succeeded"


def test_a_runner_that_lost_its_claim_writes_nothing(
    settings: Settings,
    tenant: Tenant,
    llm: StubLLM,
    queue_url: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runner slower than its lease: another took the job over meanwhile, so this one's
    memories are rolled back and only the new holder's outcome counts."""
    client = api(settings, tenant, llm, queue_url)
    llm.reply = recorded({})
    job = post_async(client, "u4")
    plan = extraction.plan

    def slow_plan(*args: Any, **kw: Any) -> Any:
        planned = plan(*args, **kw)
        with transaction(engine) as conn:  # the takeover, while this runner still works
            conn.execute(
                text("UPDATE ingest_jobs SET updated_at = updated_at + 7 WHERE id = :id"),
                {"id": job["id"]},
            )
        return planned

    monkeypatch.setattr(extraction, "plan", slow_plan)
    before = _state(engine, tenant)
    result = worker(client, receive(queue_url))
    assert len(result["batchItemFailures"]) == 1  # delivered again later, to find it done
    assert _state(engine, tenant)[0] == before[0]
    assert job_row(engine, job["id"]).status == "running"


def test_an_abandoned_job_is_not_started_late(
    settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str, engine: Engine
) -> None:
    """Once a job is reported abandoned, a late delivery must not make that report untrue."""
    client = api(settings, tenant, llm, queue_url)
    llm.reply = recorded({})
    job = post_async(client, "u5")
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE ingest_jobs SET updated_at = updated_at - :age WHERE id = :id"),
            {"age": jobs.ABANDONED_MS + 1, "id": job["id"]},
        )
    assert client.get(f"/v1/jobs/{job['id']}").json()["error"]["code"] == "job_abandoned"
    assert worker(client, receive(queue_url)) == {"batchItemFailures": []}
    assert llm.requests == []
    row = job_row(engine, job["id"])
    assert row.status == "failed" and json.loads(row.error)["code"] == "job_abandoned"


def test_a_job_the_queue_refused_is_failed_and_said_so(
    settings: Settings, tenant: Tenant, llm: StubLLM, queue_url: str, engine: Engine
) -> None:
    missing = queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    client = api(settings, tenant, llm, missing)
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u6", "async_mode": True})
    assert reply.status == 502, reply.body
    assert reply.error_code == "job_not_queued"
    job_id = reply.json()["error"]["details"]["job_id"]
    failed = client.get(f"/v1/jobs/{job_id}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "job_not_queued"
    assert llm.requests == []
