"""Opaque page cursors: base64url of a small JSON position, checked when read back."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from core.kernel.errors import InvalidInput


def encode(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor's numbers go into SQL: the stores hold 64-bit integers (SQLite raises OverflowError
# past them, PostgreSQL a NumericValueOutOfRange), so a tampered position must stop here.
_INT64 = (-(2**63), 2**63 - 1)


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        # bool is an int to Python, and 1e308 a float: neither is a position we wrote.
        return type(value) is int and _INT64[0] <= value <= _INT64[1]
    return type(value) is kind


# A page's position as a cursor holds it: the keys its reader names in `keys`, each checked to
# its type (the reader's own choice of keys, so a mapping).
Position = dict[str, Any]


def decode(cursor: str, *, keys: Mapping[str, type]) -> Position:
    """The position in `cursor`, each of `keys` present with the type named for it (int: one
    that fits in 64 bits; str). Anything else is the same 422: a cursor is opaque, so what was
    tampered with is not worth telling apart."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        position = None
    if not isinstance(position, dict) or not all(
        k in position and _fits(position[k], kind) for k, kind in keys.items()
    ):
        raise InvalidInput(
            "cursor is not valid: pass back next_cursor from the previous page unchanged",
            details={"field": "cursor"},
        )
    return position


def keyset(
    cursor: str | None,
    params: dict[str, Any],
    *,
    time: str = "created_at",
    ident: str = "id",
    newest: bool = True,
) -> str | None:
    """The WHERE condition for the rows past `cursor` in (time, id) order, newest first unless
    `newest` is off; its values go into `params`. None without a cursor."""
    if cursor is None:
        return None
    position = decode(cursor, keys={"t": int, "i": str})
    params.update(ct=position["t"], ci=position["i"])
    past = "<" if newest else ">"
    return f"({time} {past} :ct OR ({time} = :ct AND {ident} {past} :ci))"


def page(
    rows: Sequence[Any], limit: int, *, time: str = "created_at"
) -> tuple[list[Any], str | None]:
    """At most `limit` of the `limit + 1` rows read, and the cursor to the rest (None if none)."""
    if len(rows) <= limit:
        return list(rows), None
    kept = list(rows[:limit])
    last = kept[-1]
    return kept, encode({"t": getattr(last, time), "i": last.id})
