"""The tool registry: each tool is one entry naming the REST twin's models and the core call it
makes. Input schemas come from those pydantic models, so a tool accepts exactly what its REST
endpoint accepts (plus the identifiers REST carries in the path).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine

from core.kernel import cursor as cursors
from core.kernel.config import Limits, RankingSettings, Settings
from core.kernel.errors import FieldError, InvalidInput, MnemoError, field_errors
from core.kernel.scope import Scope
from core.memory.indexing import Indexer
from core.memory.models import MemoryIn, Strict
from core.retrieval.search import QueryVector
from handlers.mcp.protocol import INVALID_PARAMS, RpcError

P = ParamSpec("P")
T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
Refs = Mapping[str, str]


class Runner(Protocol):
    """What a tool runs with: the caller's scope and the same read/write/index helpers the REST
    handlers use (handlers/context.py `Context`, adapted in handlers/routes/mcp.py)."""

    @property
    def scope(self) -> Scope: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def ranking(self) -> RankingSettings: ...

    async def read(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T: ...

    async def read_each(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """`read` for search and context packs: no transaction on PostgreSQL."""
        ...

    async def write(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T: ...

    async def own_transactions(
        self,
        fn: Callable[Concatenate[Engine, Settings, Scope, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        """For core calls that open their own transactions (summaries)."""
        ...

    async def indexer(self, items: Sequence[MemoryIn]) -> Indexer: ...

    async def text_indexer(self, texts: Sequence[str]) -> Indexer: ...

    async def query_vector(self, query: str) -> QueryVector: ...


class NoArguments(Strict):
    """For tools whose only input is an identifier."""


@dataclass(frozen=True)
class Ref:
    """An identifier REST carries in the path (`/v1/memories/{id}`): a required string here."""

    name: str
    description: str


Run = Callable[[Runner, Refs, B], Awaitable[Any]]


@dataclass(frozen=True)
class Tool(Generic[B]):
    name: str
    title: str
    description: str
    run: Run[B]
    body: type[B]
    refs: tuple[Ref, ...] = ()
    output: type[BaseModel] | None = None
    writes: bool = False
    destructive: bool = False
    idempotent: bool = True
    # Adjusts the generated input schema where the REST model is looser than what it accepts
    # (a batch's items are validated one by one as memories, typed `object` in the model).
    schema_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def definition(self) -> dict[str, Any]:
        """The `Tool` object of tools/list."""
        schema = _untitled(self.body.model_json_schema(mode="validation"))
        properties = {
            ref.name: {"type": "string", "minLength": 1, "description": ref.description}
            for ref in self.refs
        }
        properties.update(schema.get("properties", {}))
        schema["properties"] = properties
        required = [ref.name for ref in self.refs] + schema.get("required", [])
        if required:
            schema["required"] = required
        if self.schema_hook is not None:
            schema = _untitled(self.schema_hook(schema))
        annotations: dict[str, Any] = {
            "title": self.title,
            "readOnlyHint": not self.writes,
            "openWorldHint": False,
        }
        if self.writes:
            annotations["destructiveHint"] = self.destructive
            annotations["idempotentHint"] = self.idempotent
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": schema,
            "annotations": annotations,
        }
        if self.output is not None:
            out["outputSchema"] = _untitled(self.output.model_json_schema(mode="serialization"))
        return out

    def parse(self, arguments: dict[str, Any]) -> tuple[dict[str, str], B]:
        """Identifiers and the REST body model from the call's arguments; InvalidInput listing
        every problem, in the same shape as a REST 422."""
        rest = dict(arguments)
        refs: dict[str, str] = {}
        errors: list[FieldError] = []
        for ref in self.refs:
            value = rest.pop(ref.name, None)
            if isinstance(value, str) and value.strip():
                refs[ref.name] = value.strip()
            else:
                message = (
                    "Field required" if value is None else "Input should be a non-empty string"
                )
                errors.append({"field": ref.name, "message": message, "type": "string_type"})
        try:
            body = self.body.model_validate(rest)
        except ValidationError as exc:
            errors += field_errors(exc.errors(include_url=False))
        if errors:
            first = errors[0]
            where = f" at {first['field']}" if first["field"] else ""
            raise InvalidInput(f"{first['message']}{where}", details=errors)
        return refs, body


_SUBSCHEMAS = ("items", "additionalProperties", "not")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs")


class Toolbox:
    """Tools declared where their code is: `@box.tool(name, title, ...)` over the function that
    runs one makes its entry. The function's docstring is the tool's description (its lines
    joined by spaces: a description is one paragraph) and the model annotated on its third
    parameter is the tool's input, so neither is written twice."""

    def __init__(self) -> None:
        self.tools: list[Tool[Any]] = []

    def tool(
        self,
        name: str,
        title: str,
        *,
        output: type[BaseModel] | None = None,
        refs: tuple[Ref, ...] = (),
        writes: bool = False,
        destructive: bool = False,
        idempotent: bool = True,
        schema_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Callable[[Run[B]], Run[B]]:
        def declare(run: Run[B]) -> Run[B]:
            third = list(inspect.signature(run).parameters)[2]
            self.tools.append(
                Tool(
                    name=name,
                    title=title,
                    description=" ".join(inspect.cleandoc(run.__doc__ or "").split("\n")),
                    run=run,
                    body=get_type_hints(run)[third],
                    refs=refs,
                    output=output,
                    writes=writes,
                    destructive=destructive,
                    idempotent=idempotent,
                    schema_hook=schema_hook,
                )
            )
            return run

        return declare


def _untitled(schema: Any) -> Any:
    """Drop pydantic's generated titles ("User Id" for user_id): they repeat the property
    names and cost the model tokens. Only the `title` keyword goes, never a property named
    title."""
    if not isinstance(schema, dict):
        return schema
    schema.pop("title", None)
    for key in _SUBSCHEMAS:
        _untitled(schema.get(key))
    for key in _SUBSCHEMA_LISTS:
        for sub in schema.get(key) or ():
            _untitled(sub)
    for key in _SUBSCHEMA_MAPS:
        for sub in (schema.get(key) or {}).values():
            _untitled(sub)
    return schema


@dataclass(frozen=True)
class ToolResult:
    value: Any
    is_error: bool = False


def error_value(exc: MnemoError) -> dict[str, Any]:
    """A tool error carries Mnemo's error shape, as the REST API answers it."""
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


class Registry:
    def __init__(self, tools: Sequence[Tool[Any]]) -> None:
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tool names in {names}")
        self.tools = tuple(tools)
        self._by_name = {t.name: t for t in tools}
        self._reading = tuple(t for t in tools if not t.writes)
        # Built on first listing: JSON schemas take milliseconds to generate, which a Lambda
        # cold start serving a tools/call should not pay.
        self._definitions: dict[str, dict[str, Any]] = {}

    def definition(self, tool: Tool[Any]) -> dict[str, Any]:
        found = self._definitions.get(tool.name)
        if found is None:
            found = self._definitions[tool.name] = tool.definition()
        return found

    def visible(self, read_only: bool) -> tuple[Tool[Any], ...]:
        """Read-only callers are not shown tools they may not call."""
        return self._reading if read_only else self.tools

    def page(
        self, *, read_only: bool, cursor: Any, size: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        tools = self.visible(read_only)
        start = 0
        if cursor is not None:
            start = self._position(tools, cursor)
        chunk = tools[start : start + size]
        more = start + size < len(tools)
        next_cursor = cursors.encode({"after": chunk[-1].name}) if more and chunk else None
        return [self.definition(t) for t in chunk], next_cursor

    @staticmethod
    def _position(tools: Sequence[Tool[Any]], cursor: Any) -> int:
        # A cursor names the last tool of its page rather than an offset, so a page boundary
        # does not shift if a caller's visible set differs between pages.
        if isinstance(cursor, str):
            try:
                after = cursors.decode(cursor, keys={"after": str})["after"]
            except InvalidInput:
                after = None
            for i, tool in enumerate(tools):
                if tool.name == after:
                    return i + 1
        raise RpcError(INVALID_PARAMS, "invalid cursor: pass back nextCursor unchanged")

    def find(self, name: Any) -> Tool[Any]:
        tool = self._by_name.get(name) if isinstance(name, str) else None
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        return tool

    async def call(self, name: Any, arguments: Any, runner: Runner) -> ToolResult:
        """Run a tool. What the caller can fix (bad arguments, not found, read-only key) comes
        back as an error result the model can read; an unknown tool or malformed request is a
        protocol error (MCP "Tools: Error Handling")."""
        tool = self.find(name)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "arguments must be an object")
        try:
            if tool.writes:
                runner.scope.require_write()
            refs, body = tool.parse(arguments)
            return ToolResult(await tool.run(runner, refs, body))
        except MnemoError as exc:
            return ToolResult(error_value(exc), is_error=True)
