"""The deploy rehearsal: the stack template.yaml builds, run here.

Each function a process of its own running the handler the template names, with the
environment the template gives it under the default parameters (StoreMode aurora), pointed at
local stand-ins: one PostgreSQL server that, like the Aurora cluster, admits the application's
role only over TLS and only with its password; moto's Secrets Manager and SQS (server mode)
serving the database secret, the single-key secret, the drain queue and the ingestion queue; a
webhook receiver; an OpenAI-compatible LLM stub (the extraction settings an operator adds).
Nothing in any function's environment is a password.

The story: the first event a function ever sees is an EventBridge memory event, on a fresh
store (the default brain exists from the first start); an HTTP add writes an outbox row and a
drain message; that message, as the SQS poller hands it to Lambda, makes the DeliveryFunction
deliver a signed webhook; the schedule maintains the same data; an event for a missing brain
raises; an async_mode conversation answers 202 from the API and is done by the IngestFunction
from its queue message, once however often the message comes. Along the way: one connection
per instance, a connection the server dropped while the instance was frozen, a rotated
password, and SnapStart's snapshot holding no connection.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from sqlalchemy import create_engine, text

from core.webhooks.signing import verify
from scripts import package
from tests import contract
from tests.api.test_extraction import CHAT, StubLLM, recorded
from tests.e2e.test_package import HAVE_MODEL
from tests.e2e.test_template import functions, load_template, packaged, resolve, sam_transform
from tests.lambda_client import http_event
from tests.pg_server import PostgresServer, wait_for
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
REGION = "us-east-1"
ROLE = "mnemo_app"
DATABASE = "mnemo"  # the template's DatabaseName default
FUNCTIONS = ("ApiFunction", "DeliveryFunction", "MaintenanceFunction")

# The application's role: TLS and a password, as Aurora with rds.force_ssl; the test's own
# superuser connects locally without either.
HBA = f"""
local all all trust
hostnossl all {ROLE} 127.0.0.1/32 reject
hostssl all {ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


@dataclass
class Stack:
    admin_url: str
    secrets: Any
    sqs: Any
    db_secret_arn: str
    api_key: str
    queue_url: str
    queue_arn: str
    receiver: Receiver
    functions: dict[str, Function]
    ingest_queue_url: str
    llm: StubLLM

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                result = conn.execute(text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def connections(self) -> dict[str, int]:
        rows = self.sql(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE usename = :role GROUP BY application_name",
            role=ROLE,
        )
        return {name: count for name, count in rows}


class Function:
    """One function's execution environment: a process that ran the init phase and takes
    invocations one at a time."""

    def __init__(self, name: str, handler: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lambda_runtime", handler],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )

    def wait_ready(self) -> None:
        """The init phase is over (the three start side by side)."""
        assert self._read() == {"ready": True}

    def _read(self, timeout: float = 60.0) -> Any:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        assert line, f"{self.name} gave no answer; its log:\n{self.log.read_text()[-3000:]}"
        return json.loads(line)

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()
        reply: dict[str, Any] = self._read()
        return reply

    def invoke(self, event: dict[str, Any]) -> Any:
        reply = self.send({"event": event})
        assert "error" not in reply, (reply, self.log.read_text()[-3000:])
        contract.check_lambda(event, reply["result"])
        return reply["result"]

    def http(
        self, method: str, path: str, key: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        raw = None
        if body is not None:
            raw = json.dumps(body)
            headers["content-type"] = "application/json"
        result = self.invoke(http_event(method, path, headers=headers, body=raw))
        payload = result.get("body") or "null"
        if result.get("isBase64Encoded"):
            import base64

            payload = base64.b64decode(payload).decode()
        return result["statusCode"], json.loads(payload)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log_file.close()


def _task_root(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A stand-in for the package's /var/task holding what it ships beside the code: the
    default embedder's model, packed as scripts/package.py packs it. None without the model
    package here: the functions then run Embedder=builtin."""
    if not HAVE_MODEL:
        return None
    from core.embeddings.minilm import bundled_model_path

    task = tmp_path_factory.mktemp("task")
    package.pack_model(task, bundled_model_path())
    return task


def _function_env(
    transformed: dict[str, Any],
    name: str,
    values: dict[str, str],
    aws: dict[str, str],
    task: Path | None,
    llm_url: str,
) -> dict[str, str]:
    """The function's environment as the template sets it under the default parameters,
    its references to the stack's resources resolved to the local stand-ins."""
    deployed = resolve(transformed) if task else resolve(transformed, Embedder="builtin")
    variables = deployed["Resources"][name]["Properties"]["Environment"]["Variables"]
    env = {}
    for var, value in variables.items():
        if isinstance(value, dict) and "Fn::Sub" in value:
            value = re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], value["Fn::Sub"])
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            value = values[".".join([value["Fn::GetAtt"][0], value["Fn::GetAtt"][1]])]
        elif isinstance(value, dict):
            value = values[value["Ref"]]
        if task is not None and str(value).startswith("/var/task/"):
            value = str(task / str(value).removeprefix("/var/task/"))
        env[var] = str(value)
    return {
        **env,
        **aws,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        # What Lambda sets in every execution environment.
        "AWS_LAMBDA_FUNCTION_NAME": f"mnemo-{name}",
        # Local only: the receiver listens on http://127.0.0.1.
        "MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
        "MNEMO_LOG_LEVEL": "WARNING",
        # Not template parameters: what an operator sets to extract memories with an LLM.
        "MNEMO_EXTRACTION_LLM": "openai",
        "MNEMO_EXTRACTION_LLM_BASE_URL": llm_url,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from moto.server import ThreadedMotoServer

    server = PostgresServer(hba=HBA, tls=True)
    admin_url = server.start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    llm = StubLLM()
    started: list[Function] = []
    try:
        wait_for(admin_url)
        password = "pw-" + uuid.uuid4().hex
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'"))
            conn.execute(text(f"CREATE DATABASE {DATABASE} OWNER {ROLE}"))
        admin.dispose()

        moto.start()
        host, port = moto.get_host_and_port()
        aws = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        secrets = session.client("secretsmanager", endpoint_url=aws["AWS_ENDPOINT_URL"])
        sqs = session.client("sqs", endpoint_url=aws["AWS_ENDPOINT_URL"])
        # The shape RDS gives a ManageMasterUserPassword secret: username and password only.
        db_secret = secrets.create_secret(
            Name="rds!cluster-rehearsal",
            SecretString=json.dumps({"username": ROLE, "password": password}),
        )["ARN"]
        api_key = "sk-" + uuid.uuid4().hex
        key_secret = secrets.create_secret(Name="ApiKeySecret", SecretString=api_key)["ARN"]
        queue_url = sqs.create_queue(QueueName="mnemo-DeliveryQueue")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        ingest_queue_url = sqs.create_queue(QueueName="mnemo-IngestQueue")["QueueUrl"]

        transformed = sam_transform(packaged(load_template()))
        values = {
            "DatabaseCluster.Endpoint.Address": "127.0.0.1",
            "DatabaseCluster.Endpoint.Port": str(server.port),
            "DatabaseName": DATABASE,
            "DatabaseCluster.MasterUserSecret.SecretArn": db_secret,
            "ApiKeySecret": key_secret,
            "DeliveryQueue": queue_url,
            "IngestQueue": ingest_queue_url,
        }
        logs = tmp_path_factory.mktemp("functions")
        task = _task_root(tmp_path_factory)
        found = {}
        for name, props in functions(load_template()).items():
            env = _function_env(transformed, name, values, aws, task, llm.url)
            fn = Function(name, props["Handler"], env, logs / f"{name}.log")
            started.append(fn)
            found[name] = fn
        for fn in started:
            fn.wait_ready()
        with Receiver() as receiver:
            yield Stack(
                admin_url.rsplit("/", 1)[0] + f"/{DATABASE}",
                secrets,
                sqs,
                db_secret,
                api_key,
                queue_url,
                queue_arn,
                receiver,
                found,
                ingest_queue_url,
                llm,
            )
    finally:
        for fn in started:
            fn.stop()
        llm.close()
        moto.stop()
        server.stop()


def _load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def sqs_event(
    stack: Stack, messages: list[dict[str, Any]], queue_arn: str | None = None
) -> dict[str, Any]:
    """Received SQS messages as Lambda's poller hands them to the function, one batch."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn or stack.queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


def test_the_stack_runs_on_one_store(stack: Stack) -> None:
    api = stack.functions["ApiFunction"]
    delivery = stack.functions["DeliveryFunction"]
    maintenance = stack.functions["MaintenanceFunction"]
    # Init connected nobody: connections open on first use (and SnapStart snapshots none).
    assert stack.connections() == {}

    # 1. The very first invocation of all, on a fresh store: a memory event for the default
    # brain, which exists from the first start because the single key is configured.
    added = delivery.invoke(_load("eventbridge"))
    assert added["ok"] is True, added
    assert added["memory"]["source"] == "eventbridge:mnemo.crm"

    # 2. The HTTP API: the operator's key (from its secret) owns the default brain.
    status, health = api.http("GET", "/health")
    assert (status, health["store"]) == (200, "postgresql")
    status, listed = api.http("GET", "/v1/memories", stack.api_key)
    assert status == 200, listed
    assert [m["content"] for m in listed["results"]] == [added["memory"]["content"]]
    status, watch = api.http(
        "POST", "/v1/watches", stack.api_key, {"name": "crm", "webhook_url": stack.receiver.url}
    )
    assert status == 201, watch
    status, memory = api.http(
        "POST", "/v1/memories", stack.api_key, {"content": "Bob moved to the Lisbon office"}
    )
    assert status == 201, memory
    # ...which wrote an outbox row, and woke the DeliveryFunction through the queue.
    pending = stack.sql(
        "SELECT status FROM deliveries WHERE watch_id = :w AND entity_id = :m",
        w=watch["id"],
        m=memory["id"],
    )
    assert [tuple(r) for r in pending] == [("pending",)]
    received = stack.sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    # (a message per commit that wrote deliveries or may have: they only say "drain")
    assert received and all(json.loads(m["Body"]) == {"drain": True} for m in received)

    # 3. The drain message, as SQS hands it over, makes the DeliveryFunction deliver.
    assert stack.receiver.received == []
    assert delivery.invoke(sqs_event(stack, received)) == {"batchItemFailures": []}
    delivered = stack.sql(
        "SELECT event_type, entity_id, status FROM deliveries WHERE watch_id = :w", w=watch["id"]
    )
    assert delivered and all(r.status == "delivered" for r in delivered), delivered
    assert ("memory.created", memory["id"]) in [(r.event_type, r.entity_id) for r in delivered]
    assert len(stack.receiver.received) == len(delivered)
    for got in stack.receiver.received:
        verify(watch["secret"], got.headers["mnemo-signature"], got.body)
    assert any(memory["id"] in got.body.decode() for got in stack.receiver.received)

    # 4. The schedule maintains the same data: the brain the others wrote is visited.
    run = maintenance.invoke(_load("schedule"))
    assert run["ok"] is True, run
    rows = stack.sql("SELECT count(*) FROM stats WHERE type = 'maintenance'")
    assert rows[0][0] == 1
    # The one brain there is, made by the DeliveryFunction's first start and written by the
    # API: a MaintenanceFunction with a store of its own would have found none.
    assert stack.sql("SELECT slug FROM brains") == [("default",)]
    assert (run["tasks"]["hygiene"]["brains"], run["tasks"]["hygiene"]["skipped"]) == (1, 0)

    # 5. An event for a brain that does not exist raises: Lambda retries it, then the events
    # dead-letter queue keeps it.
    missing = _load("eventbridge")
    missing["detail"]["brain"] = "no-such-brain"
    refused = delivery.send({"event": missing})
    assert refused["error"] == "EventRefused"
    assert "no-such-brain" in refused["message"]

    # One connection per instance, each function's own, all as the secret's user over TLS.
    assert stack.connections() == {f"mnemo-{n}": 1 for n in FUNCTIONS}
    tls = stack.sql(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.usename = :role",
        role=ROLE,
    )
    assert tls[0][0] is True


def test_a_connection_dropped_while_frozen_is_replaced(stack: Stack) -> None:
    api = stack.functions["ApiFunction"]
    assert api.http("GET", "/v1/memories", stack.api_key)[0] == 200
    # While the instance is frozen the server drops its connection (Aurora pausing, an idle
    # timeout); on thaw the next request finds out before using it.
    stack.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n",
        n="mnemo-ApiFunction",
    )
    api.send({"freeze": 120})
    assert api.http("GET", "/v1/memories", stack.api_key)[0] == 200
    assert stack.connections()["mnemo-ApiFunction"] == 1


def test_a_rotated_password_is_read_again_once(stack: Stack) -> None:
    api = stack.functions["ApiFunction"]
    assert api.http("GET", "/v1/memories", stack.api_key)[0] == 200
    # Rotation: the database and the secret change; the instance still holds the old one.
    password = "pw-" + uuid.uuid4().hex
    stack.sql(f"ALTER ROLE {ROLE} PASSWORD '{password}'")
    stack.secrets.put_secret_value(
        SecretId=stack.db_secret_arn,
        SecretString=json.dumps({"username": ROLE, "password": password}),
    )
    stack.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n",
        n="mnemo-ApiFunction",
    )
    api.send({"freeze": 120})
    status, body = api.http("GET", "/v1/memories", stack.api_key)
    assert status == 200, body
    assert "refused the credentials" in api.log.read_text()


def test_snapstart_snapshot_holds_no_connection(stack: Stack) -> None:
    api = stack.functions["ApiFunction"]
    assert api.http("GET", "/health")[0] == 200
    assert stack.connections().get("mnemo-ApiFunction") == 1
    api.send({"snapshot": True})
    assert "mnemo-ApiFunction" not in stack.connections()
    # Restored: the first request connects (reading the secret again) and works.
    assert api.http("GET", "/v1/memories", stack.api_key)[0] == 200
    assert stack.connections()["mnemo-ApiFunction"] == 1


def test_an_async_job_is_done_by_the_ingest_function(stack: Stack) -> None:
    """async_mode on Lambda: the API function saves the job and answers 202 without calling
    the LLM; the queue's message, as the poller hands it over, makes the IngestFunction do the
    job; the same message again (SQS delivers at least once) changes nothing."""
    api, worker = stack.functions["ApiFunction"], stack.functions["IngestFunction"]
    stack.llm.reply = recorded({})
    asked = len(stack.llm.requests)
    body = {"messages": CHAT, "user_id": "rehearsal", "async_mode": True}
    status, queued = api.http("POST", "/v1/memories", stack.api_key, body)
    assert status == 202, queued
    assert len(stack.llm.requests) == asked  # nothing extracted in the API's invocation
    job = queued["job"]
    received = stack.sqs.receive_message(
        QueueUrl=stack.ingest_queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    assert [json.loads(m["Body"])["ingest_job"] for m in received] == [job["id"]]
    arn = "arn:aws:sqs:us-east-1:123456789012:mnemo-IngestQueue"
    event = sqs_event(stack, received, arn)
    assert worker.invoke(event) == {"batchItemFailures": []}
    status, done = api.http("GET", f"/v1/jobs/{job['id']}", stack.api_key)
    assert (status, done["status"]) == (200, "succeeded"), done
    assert {r["memory"]["content"] for r in done["results"]} >= {"Lives in Lyon"}
    calls = len(stack.llm.requests)
    assert worker.invoke(event) == {"batchItemFailures": []}
    assert len(stack.llm.requests) == calls
    assert api.http("GET", f"/v1/jobs/{job['id']}", stack.api_key)[1] == done
    assert stack.connections()["mnemo-IngestFunction"] == 1
