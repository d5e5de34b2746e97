"""Every reply a test receives from the app is checked against /openapi.json.

The document is what clients are promised; the suite is where the app is exercised most. So
each reply that reaches a test through an in-process client (the Mangum handler that
tests/lambda_client.py and tests/oauth_fixtures.py drive, Starlette's TestClient, httpx's
ASGITransport) is validated against the schema the document gives its operation and status,
and the test fails at the call that got it, naming the route, the status and what is wrong.

Strict on purpose: an object's documented properties are all it may carry (a field the
document does not name is a mismatch, as is a status it does not list), and formats
(date-time, uri, ...) are checked. Errors must be the documented error envelope: Mnemo's
`{"error": {...}}`, or the shape the route names for itself (OAuth's, OpenMemory's, ...).

tests/conftest.py installs it for the whole session; a test that sends what no real client
would and checks something else (a fuzzer, a test of the checker itself) opts out with
`@pytest.mark.unchecked_replies("why")`.

A `mnemo serve` subprocess (tests/serve.py) checks its own replies, whoever its client is
(httpx, the MCP SDK, authlib, a headless browser, a Node client): tests/checked_serve.py runs
the command with this checker around the app and appends each violation to a file; `serving`
registers that file, and the test during which a violation was written fails at its end naming
every one (a client may send from a task of its own that swallows an exception, as the MCP SDK
does, so failing at the call would not reach the test). What is written after the last test
fails the fixture that stops the server.

To list every mismatch of a run at once instead of failing at the first, set
MNEMO_CONTRACT_SURVEY to a file path: each violation is appended to it as one line.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jsonschema_rs
from mangum import Mangum
from starlette.routing import BaseRoute, Match
from starlette.testclient import _TestClientTransport

from handlers.api import ROUTE_MODULES
from handlers.http import ApiRoute, Undocumented
from handlers.lazy import LazyRoutes
from handlers.openapi import _CONVERTOR, build
from handlers.openapi import _ERROR as ERROR
from handlers.routes import health

# Replies that no documented model describes, by design, and why. Any other route the app
# answers from must be in /openapi.json (tests/api/test_openapi_doc.py) and match it here; a
# reply from a route that is neither fails the test.
ALLOWED: Mapping[str, str] = {
    "/openapi.json": "the document itself; tests/api/test_openapi_doc.py validates it as OpenAPI",
    "/console": "the web console's HTML pages and form posts: a browser UI, not the API",
    "not_supported": (
        "a call of a foreign API (mem0, OpenMemory) that Mnemo answers only to say it has no "
        "counterpart (501 not_supported); left out of the document on purpose (README)"
    ),
    "/mcp GET|DELETE": "MCP's stateless server answers 405 to these; the transport's, not ours",
    "OPTIONS": "CORS preflights, answered by handlers/cors.py before any route",
    "HEAD": "Starlette's HEAD beside each GET: the GET's headers without a body",
}


def allowance(method: str, route: BaseRoute) -> str | None:
    """The ALLOWED entry that lets a route answer without a documented operation, if any."""
    path = getattr(route, "path", "")
    if path.startswith("/console"):
        return "/console"
    if path == "/mcp" and method in ("GET", "DELETE"):
        return "/mcp GET|DELETE"
    if isinstance(route, Undocumented) and "unsupported" in inspect.unwrap(route.endpoint).__name__:
        return "not_supported"
    return None


class ContractViolation(AssertionError):
    """A reply that is not what /openapi.json documents for its operation and status."""


@dataclass(frozen=True)
class Reply:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


def _strict(schema: Any) -> Any:
    """A copy where an object with named properties allows no others unless it says so."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


class Contract:
    """The app's routes, matched as the app matches them, and for each route a request hits
    the document of that route alone, with a compiled validator per status and media type.
    Everything is made on first use: a test process pays only for the routes its tests call
    (importing every route module and documenting every model costs seconds)."""

    def __init__(self) -> None:
        self.lazy = LazyRoutes(ROUTE_MODULES)
        self.documents: dict[int, dict[str, Any]] = {}
        self.validators: dict[tuple[int, str, str], Any] = {}
        self.twins: dict[int, BaseRoute] = {}
        self.envelope: Any = None

    def _route(self, method: str, path: str) -> tuple[Match, BaseRoute | None]:
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        partial: BaseRoute | None = None
        for route in [*health.routes, self.lazy]:
            match, child = route.matches(scope)
            found = child.get("mnemo.lazy_route", route) if route is self.lazy else route
            if match is Match.FULL:
                return match, found
            if match is Match.PARTIAL and partial is None:
                partial = found
        return (Match.PARTIAL, partial) if partial is not None else (Match.NONE, None)

    def _twin(self, route: BaseRoute) -> BaseRoute:
        """An Undocumented twin (the same endpoint under a path without its trailing slash, or
        with an empty segment) answers as its documented operation does."""
        if not isinstance(route, Undocumented):
            return route
        twin = self.twins.get(id(route))
        if twin is None:
            endpoint = inspect.unwrap(route.endpoint)
            # The twin is in the same route module, which matching this route has loaded.
            loaded = [r for routes in self.lazy._loaded.values() for r in routes]
            twin = next(
                (
                    r
                    for r in loaded
                    if isinstance(r, ApiRoute)
                    and r.method in (route.methods or ())
                    and inspect.unwrap(r.endpoint) is endpoint
                ),
                route,
            )
            self.twins[id(route)] = twin
        return twin

    def _operation(self, route: ApiRoute) -> dict[str, Any]:
        """The route's operation in a document of its own (with the components it uses)."""
        document = self.documents.get(id(route))
        if document is None:
            spec = build([route])
            (ops,) = spec["paths"].values()
            document = {"op": ops[route.method.lower()], "components": _strict(spec["components"])}
            self.documents[id(route)] = document
        return document

    def _validator(self, route: ApiRoute, status: str, media: str) -> Any:
        key = (id(route), status, media)
        validator = self.validators.get(key)
        if validator is None:
            document = self._operation(route)
            schema = _strict(document["op"]["responses"][status]["content"][media]["schema"])
            validator = jsonschema_rs.validator_for(
                {**schema, "components": document["components"]}, validate_formats=True
            )
            self.validators[key] = validator
        return validator

    def check(self, reply: Reply) -> None:
        """Raises ContractViolation when the reply is not what the document promises."""
        method = reply.method.upper()
        if method in ("OPTIONS", "HEAD") or reply.path == "/openapi.json":
            return  # ALLOWED
        match, route = self._route(method, reply.path)
        if route is None or match is not Match.FULL:
            # No such route, or not this method on it: the app's own error envelope.
            self._expect_error(reply, f"{method} {reply.path} (no route)")
            return
        if allowance(method, route) is not None:
            return
        route = self._twin(route)
        if not isinstance(route, ApiRoute):
            raise ContractViolation(
                f"{method} {reply.path} {reply.status}: answered by a route /openapi.json does "
                "not document; give it a Doc (handlers/http.py), or, if it is not part of the "
                "API, an entry with its reason in tests/contract.py ALLOWED"
            )
        template = _CONVERTOR.sub(r"{\1}", route.path)
        where = f"{method} {template} {reply.status}"
        responses = self._operation(route)["op"]["responses"]
        status = str(reply.status)
        if status not in responses:
            if reply.status < 400:
                documented = sorted(s for s in responses if s != "default")
                raise ContractViolation(
                    f"{where}: status not documented (documented: {documented})"
                )
            status = "default"
        content = responses[status].get("content")
        if content is None:
            if reply.body:
                raise ContractViolation(
                    f"{where}: a body where none is documented: {reply.body!r:.200}"
                )
            return
        media = reply.content_type.split(";")[0].strip().lower()
        if media not in content:
            raise ContractViolation(
                f"{where}: {media or 'no content type'} is not documented ({sorted(content)})"
            )
        if media not in ("application/json", "application/problem+json"):
            return  # ndjson, HTML, an event stream: the media type is the contract
        self._validate(route, status, media, reply, where)

    def _validate(self, route: ApiRoute, status: str, media: str, reply: Reply, where: str) -> None:
        try:
            data = json.loads(reply.body)
        except ValueError as exc:
            raise ContractViolation(
                f"{where}: the body is not JSON ({exc}): {reply.body!r:.200}"
            ) from None
        error = next(iter(self._validator(route, status, media).iter_errors(data)), None)
        if error is not None:
            at = "/".join(str(p) for p in error.instance_path) or "(the body)"
            raise ContractViolation(
                f"{where}: the reply does not match the documented model at {at}: {error.message}"
                f"\n  body: {reply.body[:500]!r}"
            )

    def _expect_error(self, reply: Reply, where: str) -> None:
        if reply.status < 400:
            raise ContractViolation(f"{where}: {reply.status} from no documented operation")
        if self.envelope is None:
            self.envelope = jsonschema_rs.validator_for(_strict(ERROR))
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = reply.body.decode(errors="replace")
        error = next(iter(self.envelope.iter_errors(data)), None)
        if error is not None:
            raise ContractViolation(
                f"{where} {reply.status}: not the error envelope: {error.message}"
            )


@functools.cache
def contract() -> Contract:
    return Contract()


# Whether replies are checked now; the session fixture turns it on, a marked test off.
_state = {"on": False}
# The violation files of the `mnemo serve` processes up now, with how far each has been read.
_served: dict[Path, int] = {}


def _served_violations() -> list[str]:
    """What the served processes have written since the last look (whole lines only)."""
    found: list[str] = []
    for log, offset in _served.items():
        with suppress(FileNotFoundError), log.open("rb") as f:
            f.seek(offset)
            data = f.read()
            end = data.rfind(b"\n") + 1
            _served[log] = offset + end
            found += [json.loads(line)["violation"] for line in data[:end].splitlines()]
    return found


def _report_served(found: list[str]) -> None:
    __tracebackhide__ = True
    if not found:
        return
    survey = os.environ.get("MNEMO_CONTRACT_SURVEY")
    if survey:
        with open(survey, "a") as out:
            out.writelines(violation.split("\n")[0] + "\n" for violation in found)
        return
    raise ContractViolation(
        f"{len(found)} repl{'y' if len(found) == 1 else 'ies'} of `mnemo serve` not what "
        "/openapi.json documents:\n" + "\n".join(found)
    )


@contextmanager
def checking(on: bool) -> Iterator[None]:
    before = _state["on"]
    _state["on"] = on
    try:
        yield
    finally:
        _state["on"] = before
        found = _served_violations()
    if on:
        _report_served(found)


@contextmanager
def serving(log: Path) -> Iterator[None]:
    """The `mnemo serve` writing its violations to `log` (tests/checked_serve.py) is up while
    open; at the end, what no test has claimed yet fails the block."""
    _served[log] = 0
    try:
        yield
    finally:
        found = _served_violations()
        del _served[log]
    _report_served(found)


def _is_mnemo(app: Any) -> bool:
    return any(isinstance(r, LazyRoutes) for r in getattr(app, "routes", ()))


def _lambda_reply(event: Mapping[str, Any], result: Mapping[str, Any]) -> Reply | None:
    context = event.get("requestContext") or {}
    if "http" in context:  # HTTP API v2, Function URL
        method, path = context["http"]["method"], unquote(event.get("rawPath") or "/")
    elif "httpMethod" in event:  # REST v1, ALB
        method, path = event["httpMethod"], event.get("path") or "/"
    else:
        return None
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), values[0] if values else "")
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    return Reply(method, path, int(result["statusCode"]), headers.get("content-type", ""), raw)


def _http_reply(request: httpx.Request, response: httpx.Response) -> Reply:
    return Reply(
        request.method,
        request.url.path,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
    )


def _check(reply: Reply) -> None:
    __tracebackhide__ = True
    survey = os.environ.get("MNEMO_CONTRACT_SURVEY")
    try:
        contract().check(reply)
    except ContractViolation as exc:
        if not survey:
            raise
        with open(survey, "a") as out:
            out.write(str(exc).split("\n")[0] + "\n")


def check_lambda(event: Any, result: Any) -> None:
    """Check what a Lambda handler answered to an HTTP event (other events pass): for handlers
    run where Mangum cannot be wrapped, such as the deploy rehearsal's function processes."""
    __tracebackhide__ = True
    if _state["on"] and isinstance(event, dict) and isinstance(result, dict):
        reply = _lambda_reply(event, result)
        if reply is not None:
            _check(reply)


def _wrap_mangum(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def checked(self: Mangum, event: Any, context: Any) -> Any:
        result = call(self, event, context)
        if _is_mnemo(self.app):
            check_lambda(event, result)
        return result

    return checked


def _wrap_test_client(handle: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
    @functools.wraps(handle)
    def checked(self: Any, request: httpx.Request) -> httpx.Response:
        response = handle(self, request)
        if _state["on"] and _is_mnemo(self.app):
            response.read()
            _check(_http_reply(request, response))
        return response

    return checked


def _wrap_asgi_transport(handle: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handle)
    async def checked(self: httpx.ASGITransport, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await handle(self, request)
        if _state["on"] and _is_mnemo(self.app):
            await response.aread()
            _check(_http_reply(request, response))
        return response

    return checked


# Media types whose replies are read and checked in full; the rest by status and type alone.
BUFFERED = ("application/json", "application/problem+json", "")


# Where each client hands a reply back to the test, and the check wrapped around it.
_HOOKS: list[tuple[Any, str, Callable[[Any], Any]]] = [
    (Mangum, "__call__", _wrap_mangum),
    (_TestClientTransport, "handle_request", _wrap_test_client),
    (httpx.ASGITransport, "handle_async_request", _wrap_asgi_transport),
]


@contextmanager
def installed() -> Iterator[None]:
    """Every in-process client checks its replies while this is open (and `checking(True)`)."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in _HOOKS]
    for (owner, name, wrap), (_, _, original) in zip(_HOOKS, saved, strict=True):
        setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


__all__ = [
    "ALLOWED",
    "BUFFERED",
    "Contract",
    "ContractViolation",
    "Reply",
    "checking",
    "contract",
    "installed",
    "serving",
]
