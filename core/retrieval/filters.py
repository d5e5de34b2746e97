"""mem0-style metadata filters -> SQL, with every value bound and every path checked.

{"topic": "work"}                       equality
{"score": {"gte": 3, "lt": 9}}          operators: eq ne in nin gt gte lt lte contains
{"AND": [...]}, {"OR": [...]}, {"NOT": {...}}
Dotted names reach nested objects: {"author.name": "Ada"}.
{"field": {"exists": true}}             the field is set (false: it is not)

Names starting with "$" are the memory's own columns rather than metadata fields, so one
expression can mix them (mem0's v2 filters do: {"OR": [{"user_id": ...}, {"agent_id": ...}]}):
$id $user_id $agent_id $run_id $type $source $content (text), $created_at $updated_at
$occurred_at (ISO 8601 or epoch seconds), and $tag (one of the memory's tags).
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.kernel.errors import InvalidInput
from core.kernel.ids import parse_time

_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_OPS = {*_COMPARE, "in", "nin", "contains", "exists"}
_TEXT_COLUMNS = ("id", "user_id", "agent_id", "run_id", "type", "source", "content")
_TIME_COLUMNS = ("created_at", "updated_at", "occurred_at")
_MAX_NODES = 64
# An in/nin list becomes one bound comparison per value: PostgreSQL refuses a statement past
# 65,535 parameters, and planned thousands of ORs slowly before it got there.
MAX_IN_VALUES = 100
# Both stores compare integers as 64-bit; SQLite's driver raises OverflowError past that.
_INT64 = (-(2**63), 2**63 - 1)
Scalar = str | int | float | bool


def _bad(message: str, field: str) -> InvalidInput:
    return InvalidInput(message, details={"field": field})


def _check_list(op: str, operand: Any, where: str) -> None:
    """`in` and `nin` take a short non-empty list: each value is a bound parameter, and past
    the driver's limit (SQLite 32,766, PostgreSQL 65,535) a long list would fail as a 500."""
    if not isinstance(operand, list) or not operand:
        raise _bad(f"{op} takes a non-empty list", where)
    if len(operand) > MAX_IN_VALUES:
        raise InvalidInput(
            f"{op} takes at most {MAX_IN_VALUES} values; this list has {len(operand)}",
            code="filter_too_large",
            details={"field": where, "limit": MAX_IN_VALUES},
        )


class MetadataFilter:
    def __init__(self, dialect: str, params: dict[str, Any], alias: str = "m") -> None:
        self.dialect = dialect
        self.params = params
        self.alias = alias
        self.column = f"{alias}.metadata"
        self.nodes = 0

    def sql(self, expression: dict[str, Any], where: str = "filters.metadata") -> str:
        if not isinstance(expression, dict) or not expression:
            raise _bad("a metadata filter is a non-empty JSON object", where)
        parts = [self._node(key, value, where) for key, value in expression.items()]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _node(self, key: str, value: Any, where: str) -> str:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _bad(f"a metadata filter may have at most {_MAX_NODES} conditions", where)
        if key in ("AND", "OR"):
            if not isinstance(value, list) or not value:
                raise _bad(f"{key} takes a non-empty list of filters", f"{where}.{key}")
            joined = f" {key} ".join(
                self.sql(item, f"{where}.{key}.{i}") for i, item in enumerate(value)
            )
            return f"({joined})"
        if key == "NOT":
            return f"NOT ({self.sql(value, f'{where}.NOT')})"
        if key.startswith("$"):
            return self._column_node(key[1:], value, f"{where}.{key}")
        if not _PATH.match(key):
            raise _bad(f"{key!r} is not a metadata field name (letters, digits, _ - .)", where)
        if isinstance(value, dict):
            if not value:
                raise _bad("an operator object needs at least one operator", f"{where}.{key}")
            return " AND ".join(
                self._condition(key, op, operand, f"{where}.{key}.{op}")
                for op, operand in value.items()
            )
        return self._condition(key, "eq", value, f"{where}.{key}")

    def _bind(self, value: Any) -> str:
        name = f"md_{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def _scalar(self, value: Any, where: str) -> Scalar:
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                raise _bad("an integer in a filter must fit in 64 bits (about +-9.2e18)", where)
            return value
        if isinstance(value, bool | float | str):
            return value
        raise _bad("compare metadata with a string, number or boolean", where)

    def _condition(self, path: str, op: str, operand: Any, where: str) -> str:
        if op not in _OPS:
            raise _bad(f"unknown operator {op!r}; use one of {', '.join(sorted(_OPS))}", where)
        if op in ("in", "nin"):
            _check_list(op, operand, where)
            ors = " OR ".join(self._compare(path, "=", self._scalar(v, where)) for v in operand)
            if op == "in":
                return f"({ors})"
            return f"(NOT ({ors}) OR {self._value(path)} IS NULL)"
        if op == "contains":
            if not isinstance(operand, str):
                raise _bad("contains takes a string", where)
            return self._contains(path, operand)
        if op == "exists":
            if not isinstance(operand, bool):
                raise _bad("exists takes true or false", where)
            return f"{self._value(path)} IS {'NOT ' if operand else ''}NULL"
        condition = self._compare(path, _COMPARE[op], self._scalar(operand, where))
        if op == "ne":  # a memory without the field is "not equal" too
            return f"({condition} OR {self._value(path)} IS NULL)"
        return condition

    def _value(self, path: str) -> str:
        """The field as SQL: a JSON value on PostgreSQL, a native value on SQLite."""
        if self.dialect == "postgresql":
            return (
                f"(CAST({self.column} AS jsonb) #> CAST({self._bind(path.split('.'))} AS text[]))"
            )
        json_path = "$." + ".".join(f'"{part}"' for part in path.split("."))
        return f"json_extract({self.column}, {self._bind(json_path)})"

    def _compare(self, path: str, sql_op: str, value: Scalar) -> str:
        if self.dialect == "postgresql":
            # jsonb compares numbers as numbers and strings as strings, like the JSON values.
            return f"{self._value(path)} {sql_op} CAST({self._bind(json.dumps(value))} AS jsonb)"
        if isinstance(value, bool):  # SQLite's json_extract gives 1/0 for true/false
            value = int(value)
        return f"{self._value(path)} {sql_op} {self._bind(value)}"

    def _contains(self, path: str, needle: str) -> str:
        if self.dialect == "postgresql":
            text_value = f"({self._value(path)} #>> '{{}}')"
            return f"strpos(lower({text_value}), lower({self._bind(needle)})) > 0"
        return f"instr(lower({self._value(path)}), lower({self._bind(needle)})) > 0"

    # --- the memory's own columns ("$name") ---------------------------------------------

    def _column_node(self, name: str, value: Any, where: str) -> str:
        if name not in (*_TEXT_COLUMNS, *_TIME_COLUMNS, "tag"):
            known = ", ".join(f"${c}" for c in (*_TEXT_COLUMNS, *_TIME_COLUMNS, "tag"))
            raise _bad(f"${name} is not a memory column; use one of {known}", where)
        ops = value if isinstance(value, dict) else {"eq": value}
        if not ops:
            raise _bad("an operator object needs at least one operator", where)
        parts = []
        for op, operand in ops.items():
            if op not in _OPS:
                raise _bad(f"unknown operator {op!r}; use one of {', '.join(sorted(_OPS))}", where)
            if name == "tag":
                parts.append(self._tag(op, operand, f"{where}.{op}"))
            else:
                parts.append(self._column(name, op, operand, f"{where}.{op}"))
        return " AND ".join(parts)

    def _column_value(self, name: str, value: Any, where: str) -> Any:
        if name in _TIME_COLUMNS:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise _bad(f"${name} takes an ISO 8601 time or epoch seconds", where)
            try:
                stamp = parse_time(value)
            except (ValueError, OverflowError):
                raise _bad(f"{value!r} is not an ISO 8601 time", where) from None
            if not _INT64[0] <= stamp <= _INT64[1]:
                raise _bad(f"{value!r} is out of range for a time", where)
            return stamp
        if not isinstance(value, str):
            raise _bad(f"${name} takes a string", where)
        return value

    def _column(self, name: str, op: str, operand: Any, where: str) -> str:
        column = f"{self.alias}.{name}"
        if op == "exists":
            if not isinstance(operand, bool):
                raise _bad("exists takes true or false", where)
            return f"{column} IS {'NOT ' if operand else ''}NULL"
        if op in ("in", "nin"):
            _check_list(op, operand, where)
            members = ", ".join(self._bind(self._column_value(name, v, where)) for v in operand)
            if op == "in":
                return f"{column} IN ({members})"
            return f"({column} NOT IN ({members}) OR {column} IS NULL)"
        if op == "contains":
            if not isinstance(operand, str) or name in _TIME_COLUMNS:
                raise _bad(f"contains takes a string and a text column, not ${name}", where)
            needle = self._bind(operand)
            if self.dialect == "postgresql":
                return f"strpos(lower({column}), lower({needle})) > 0"
            return f"instr(lower({column}), lower({needle})) > 0"
        condition = (
            f"{column} {_COMPARE[op]} {self._bind(self._column_value(name, operand, where))}"
        )
        return f"({condition} OR {column} IS NULL)" if op == "ne" else condition

    def _tag(self, op: str, operand: Any, where: str) -> str:
        """A condition on the memory's tags, through memory_tags (always in its brain)."""
        tagged = (
            f"SELECT 1 FROM memory_tags mt WHERE mt.brain_id = {self.alias}.brain_id "
            f"AND mt.memory_id = {self.alias}.id"
        )
        if op == "exists":
            if not isinstance(operand, bool):
                raise _bad("exists takes true or false", where)
            return f"{'' if operand else 'NOT '}EXISTS ({tagged})"
        if op in ("in", "nin"):
            _check_list(op, operand, where)
            values = [self._tag_text(v, where) for v in operand]
            members = ", ".join(self._bind(v) for v in values)
            found = f"EXISTS ({tagged} AND mt.tag IN ({members}))"
            return found if op == "in" else f"NOT {found}"
        if op == "contains":
            needle = self._bind(self._tag_text(operand, where))
            if self.dialect == "postgresql":
                return f"EXISTS ({tagged} AND strpos(mt.tag, {needle}) > 0)"
            return f"EXISTS ({tagged} AND instr(mt.tag, {needle}) > 0)"
        if op in ("eq", "ne"):
            found = f"EXISTS ({tagged} AND mt.tag = {self._bind(self._tag_text(operand, where))})"
            return found if op == "eq" else f"NOT {found}"
        raise _bad(f"$tag takes eq, ne, in, nin, contains or exists, not {op}", where)

    @staticmethod
    def _tag_text(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _bad("a tag is a non-empty string", where)
        return " ".join(value.split()).lower()
