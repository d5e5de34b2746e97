"""What each call sends, shared by the sync and the async client, and how an answer is read
and when a request is tried again."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from mnemo_client.errors import error_from

DEFAULT_BASE_URL = "http://localhost:8080"
# Throttled, or the server (or a gateway in front of it) failed: worth another try. Mnemo
# answers a repeated create with the memory the first one saved, so retrying a POST is safe.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] | None = None
    json: Any = None


@dataclass(frozen=True)
class Backoff:
    max_retries: int = 3
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; the server's Retry-After is a floor."""
        delay = random.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, 60.0))
        return delay


def segment(value: str) -> str:
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query(options: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Query parameters: None left out, lists repeated (tag=a&tag=b)."""
    params: list[tuple[str, str]] = []
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            params.extend((name, _query_value(v)) for v in value)
        else:
            params.append((name, _query_value(value)))
    return tuple(params)


def body(options: Mapping[str, Any], **required: Any) -> dict[str, Any]:
    return {**required, **options}


def retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: the backoff covers it


def read(response: httpx.Response) -> Any:
    """The JSON of a success; the matching exception for an error."""
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    if response.status_code >= 400:
        raise error_from(
            response.status_code,
            data,
            response.text,
            request_id=response.headers.get("x-request-id"),
            retry_after=retry_after(response),
        )
    return data


def headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    out = {"Accept": "application/json", "User-Agent": "mnemo-client/0.1"}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    out.update(extra or {})
    return out
