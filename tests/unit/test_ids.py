"""Timestamps as the API shows them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.kernel.ids import iso, parse_time


@pytest.mark.parametrize(
    "ms", [0, 1, 999, 1_000, 1_763_770_000_123, 4_102_444_799_999, -1, -86_400_001]
)
def test_iso_is_utc_milliseconds_and_round_trips(ms: int) -> None:
    expected = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    assert iso(ms) == expected.replace("+00:00", "Z")
    assert parse_time(iso(ms) or "") == ms


def test_iso_of_nothing_is_nothing() -> None:
    assert iso(None) is None
