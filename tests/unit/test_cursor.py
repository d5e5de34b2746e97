"""Page cursors (core/kernel/cursor.py): opaque, round-tripping, and refused whole when
tampered with. That every list route applies the check: tests/api/test_hostile_input.py."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest

from core.kernel import cursor
from core.kernel.errors import InvalidInput

KEYSET = {"t": int, "i": str}


def _raw(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def test_a_position_round_trips_url_safe_and_unpadded() -> None:
    position = {"t": 2**63 - 1, "i": "01J~ü/+?"}
    made = cursor.encode(position)
    assert "=" not in made and "+" not in made and "/" not in made
    assert cursor.decode(made, keys=KEYSET) == position


@pytest.mark.parametrize(
    "made",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        _raw("a string"),
        _raw([1, 2]),
        _raw({"t": 1}),  # a key missing
        _raw({"t": True, "i": "x"}),  # bool is an int to Python, not a position
        _raw({"t": 1.0, "i": "x"}),
        _raw({"t": 2**63, "i": "x"}),  # past the stores' 64-bit integers
        _raw({"t": -(2**63) - 1, "i": "x"}),
        _raw({"t": 1, "i": 5}),
        _raw({"t": "1", "i": "x"}),
        "W" * 10_000,
        _raw([[[[[[[[[[]]]]]]]]]] * 1),
    ],
)
def test_a_tampered_cursor_is_the_same_invalid_input(made: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        cursor.decode(made, keys=KEYSET)
    assert caught.value.details == {"field": "cursor"}
    assert "next_cursor" in caught.value.message  # says what to pass instead


def test_the_keyset_condition_binds_its_values() -> None:
    params: dict[str, Any] = {}
    assert cursor.keyset(None, params) is None and params == {}
    made = cursor.encode({"t": 5, "i": "x'; DROP TABLE memories; --"})
    sql = cursor.keyset(made, params)
    assert sql == "(created_at < :ct OR (created_at = :ct AND id < :ci))"
    assert params == {"ct": 5, "ci": "x'; DROP TABLE memories; --"}
    oldest_first = cursor.keyset(made, {}, time="m.updated_at", ident="m.id", newest=False)
    assert oldest_first == "(m.updated_at > :ct OR (m.updated_at = :ct AND m.id > :ci))"


def test_a_page_has_a_cursor_only_when_more_rows_were_read() -> None:
    rows = [SimpleNamespace(id=f"m{i}", created_at=100 - i) for i in range(4)]
    assert cursor.page(rows[:3], 3) == (rows[:3], None)
    kept, after = cursor.page(rows, 3)
    assert kept == rows[:3] and after is not None
    assert cursor.decode(after, keys=KEYSET) == {"t": 98, "i": "m2"}
