"""mem0's platform API shapes <-> Mnemo's: records, filters, requests. No SQL, no I/O.

What maps to what:
  * a memory: mem0's `memory` is Mnemo's `content`, `categories` its tags, `hash` the MD5 of the
    text (as mem0 computes it), `app_id` a metadata field (Mnemo has users, agents and runs);
    `memory_type` is `procedural_memory` for procedural memories, else absent;
  * v2 filters ({"AND": [...]}, {"OR": [...]}, {"NOT": [...]}, operators in, nin, gt, gte, lt,
    lte, ne, contains, icontains, "*"): rewritten into Mnemo's filter expression, where entity
    fields, dates, categories and keywords are the memory's columns ($user_id, $created_at,
    $tag, $content) and anything else is a metadata field;
  * errors: mem0's clients read `detail`; Mnemo's `error` object rides along.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from core.app.models import OutcomeRecord
from core.kernel.errors import InvalidInput

PROCEDURAL = "procedural_memory"

_ENTITY_COLUMNS = {
    "user_id": "$user_id",
    "agent_id": "$agent_id",
    "run_id": "$run_id",
    "created_at": "$created_at",
    "updated_at": "$updated_at",
    "timestamp": "$occurred_at",
    "id": "$id",
    "memory_id": "$id",
    "memory_ids": "$id",
    "categories": "$tag",
    "keywords": "$content",
}
_OPERATORS = {
    "eq": "eq",
    "ne": "ne",
    "in": "in",
    "nin": "nin",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "contains": "contains",
    "icontains": "contains",
}
ENTITY_FIELDS = ("user_id", "agent_id", "run_id")


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def record(memory: Mapping[str, Any], *, score: float | None = None) -> dict[str, Any]:
    """A Mnemo memory as a mem0 record."""
    metadata = dict(memory.get("metadata") or {})
    out: dict[str, Any] = {
        "id": memory["id"],
        "memory": memory["content"],
        "hash": md5(memory["content"]),
        "metadata": metadata or None,
        "categories": list(memory.get("tags") or []),
        "created_at": memory["created_at"],
        "updated_at": memory["updated_at"],
        "user_id": memory.get("user_id"),
        "agent_id": memory.get("agent_id"),
        "run_id": memory.get("run_id"),
        "app_id": metadata.get("app_id"),
        "immutable": False,
        "expiration_date": None,
        "state": memory.get("state"),
    }
    if metadata.get("memory_type") == PROCEDURAL:
        out["memory_type"] = PROCEDURAL
    if score is not None:
        out["score"] = score
    return out


def event(outcome: OutcomeRecord) -> dict[str, Any]:
    """One of add's results: what happened to a memory (mem0 platform and OSS fields both)."""
    memory = outcome["memory"]
    out = {
        "id": memory["id"],
        "event": outcome["event"],
        "memory": memory["content"],
        "data": {"memory": memory["content"]},
        **{k: v for k, v in record(memory).items() if k not in ("id", "memory")},
    }
    if outcome.get("previous_content") is not None:
        out["previous_memory"] = outcome["previous_content"]
    return out


def _condition(column: str, value: Any, where: str) -> Any:
    if value == "*":  # mem0's wildcard: any value, but set
        return {"exists": True}
    if not isinstance(value, dict):
        if column == "$id" and isinstance(value, list):
            return {"in": value}
        if column == "$tag" and isinstance(value, list):
            return {"in": value}
        return {"eq": value}
    out: dict[str, Any] = {}
    for op, operand in value.items():
        mapped = _OPERATORS.get(op)
        if mapped is None:
            raise InvalidInput(
                f"unknown filter operator {op!r}; use one of {', '.join(sorted(_OPERATORS))}",
                code="invalid_filter",
                details={"field": f"{where}.{op}"},
            )
        if operand == "*":
            return {"exists": True}
        out[mapped] = operand
    return out


def filters(node: Any, where: str = "filters") -> dict[str, Any]:
    """A mem0 v2 filter as a Mnemo filter expression (core/retrieval/filters.py)."""
    if not isinstance(node, dict) or not node:
        raise InvalidInput(
            "filters is a non-empty JSON object", code="invalid_filter", details={"field": where}
        )
    parts: list[dict[str, Any]] = []
    for key, value in node.items():
        here = f"{where}.{key}"
        if key in ("AND", "OR"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(
                    f"{key} takes a non-empty list", code="invalid_filter", details={"field": here}
                )
            parts.append({key: [filters(item, f"{here}.{i}") for i, item in enumerate(value)]})
        elif key == "NOT":
            items = value if isinstance(value, list) else [value]
            inner = [filters(item, f"{here}.{i}") for i, item in enumerate(items)]
            parts.append({"NOT": inner[0] if len(inner) == 1 else {"AND": inner}})
        elif key == "metadata":
            if not isinstance(value, dict) or not value:
                raise InvalidInput(
                    "metadata takes an object of fields",
                    code="invalid_filter",
                    details={"field": here},
                )
            parts.extend({name: _metadata(v)} for name, v in value.items())
        elif key in _ENTITY_COLUMNS:
            column = _ENTITY_COLUMNS[key]
            parts.append({column: _condition(column, value, here)})
        else:  # app_id, memory_type and any other name: a metadata field
            parts.append({key: _metadata(value)})
    return parts[0] if len(parts) == 1 else {"AND": parts}


def _metadata(value: Any) -> Any:
    if value == "*":
        return {"exists": True}
    if isinstance(value, dict):
        return {_OPERATORS.get(op, op): v for op, v in value.items()}
    return value


def entity_equalities(node: Any) -> dict[str, str]:
    """The entity ids a filter pins down with a plain equality at its top level (ANDed):
    what add takes from `filters`, and a user-scoped key's implied user."""
    found: dict[str, str] = {}
    if not isinstance(node, dict):
        return found
    conjuncts = node.get("AND") if set(node) == {"AND"} else [node]
    for part in conjuncts or []:
        if not isinstance(part, dict):
            continue
        for key in ENTITY_FIELDS:
            value = part.get(key)
            if isinstance(value, str) and value != "*":
                found[key] = value
    return found


def error_body(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "detail": message,
        "error": {"code": code, "message": message, "details": details},
    }
