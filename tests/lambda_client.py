"""Drives the Lambda handler in-process with real API Gateway HTTP API v2 events, as
`sam local invoke -e` would: the request path the tests exercise is the production one."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from mangum import Mangum
from starlette.applications import Starlette

from core.kernel.config import Settings
from handlers.api import create_app

EVENTS = Path(__file__).resolve().parent.parent / "events"
_TEMPLATE = json.loads((EVENTS / "http_api_v2.json").read_text())


@dataclass
class LambdaContext:
    function_name: str = "mnemo-api"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mnemo-api"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        data = self.json()
        return data.get("error", {}).get("code") if isinstance(data, dict) else None


def http_event(
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
) -> dict[str, Any]:
    event = copy.deepcopy(_TEMPLATE)
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    event["rawQueryString"] = urlencode(query or {}, doseq=True)
    all_headers = {k: v for k, v in event["headers"].items() if k != "content-length"}
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        all_headers.setdefault("content-length", str(len(raw)))
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
    event["headers"] = all_headers
    return event


class LambdaClient:
    def __init__(self, settings: Settings, key: str | None = None) -> None:
        self.app: Starlette = create_app(settings)
        self.handler = Mangum(self.app, lifespan="off")
        self.key = key

    def as_key(self, key: str | None) -> LambdaClient:
        other = copy.copy(self)
        other.key = key
        return other

    def invoke(self, event: dict[str, Any]) -> Reply:
        result = self.handler(event, LambdaContext())
        body = result.get("body") or ""
        if result.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return Reply(result["statusCode"], dict(result.get("headers") or {}), body)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if self.key is not None:
            all_headers.setdefault("authorization", f"Bearer {self.key}")
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("content-type", "application/json")
        return self.invoke(http_event(method, path, query=query, headers=all_headers, body=body))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, json_body=json_body, **kw)

    def patch(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.request("PATCH", path, json_body=json_body, **kw)

    def delete(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return self.request("DELETE", path, json_body=json_body, **kw)
