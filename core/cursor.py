"""Opaque page cursors: base64url of a small JSON position, checked when read back."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.errors import InvalidInput


def encode(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, *, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or any(k not in position for k in keys):
        raise InvalidInput(
            "cursor is not valid: pass back next_cursor from the previous page unchanged",
            details={"field": "cursor"},
        )
    return position
