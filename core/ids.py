"""Identifiers and timestamps."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so new rows land at the end of indexes."""
    ms = now_ms()
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 64) & 0x0FFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(value: str | int | float | datetime) -> int:
    """ISO 8601 (naive means UTC) or epoch seconds -> epoch milliseconds."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float):
        return int(value * 1000)
    else:
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return int(float(text) * 1000)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
