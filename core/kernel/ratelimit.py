"""Rate limits: fixed-window counters, in the SQL store or in DynamoDB.

Each hit is one atomic increment-and-read (an upsert with RETURNING; DynamoDB's ADD with
UPDATED_NEW), so concurrent requests can never both see the last free slot. A hit commits in its
own transaction before the guarded work runs, so a failed login still counts.

Fixed windows let a client spend up to twice the limit across a window boundary; for brute-force
protection that is fine, and it keeps each hit to a single write.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, text

from core.kernel.config import Rate, RateLimitSettings
from core.kernel.db.engine import transaction
from core.kernel.errors import MnemoError
from core.kernel.ids import now_ms


class RateLimited(MnemoError):
    """Too many requests (429, with Retry-After)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    retry_after: int  # seconds until the window resets


class Limiter(Protocol):
    def hit(self, bucket: str, rate: Rate, now: int | None = None) -> Decision: ...

    def peek(self, bucket: str, rate: Rate, now: int | None = None) -> int:
        """The hits counted so far in the current window, counting none."""
        ...


def _window(rate: Rate, now: int) -> tuple[int, int]:
    size = rate.seconds * 1000
    start = now - now % size
    return start, start + size


def seconds_left(rate: Rate, now: int | None = None) -> int:
    """Seconds until the current window of `rate` ends."""
    now = now_ms() if now is None else now
    return max(1, math.ceil((_window(rate, now)[1] - now) / 1000))


def _decision(count: int, rate: Rate, end: int, now: int) -> Decision:
    return Decision(count <= rate.count, count, max(1, math.ceil((end - now) / 1000)))


_UPSERT = text(
    "INSERT INTO rate_limits (bucket, window_start, count, expires_at) "
    "VALUES (:bucket, :start, 1, :end) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limits.count + 1 "
    "RETURNING count"
)


class SqlLimiter:
    # Expired rows are swept by a small fraction of hits, so no scheduled job is needed.
    sweep_probability = 0.01

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(self, bucket: str, rate: Rate, now: int | None = None) -> Decision:
        now = now_ms() if now is None else now
        start, end = _window(rate, now)
        with transaction(self.engine) as conn:
            count = conn.execute(_UPSERT, {"bucket": bucket, "start": start, "end": end}).scalar()
            if random.random() < self.sweep_probability:
                conn.execute(text("DELETE FROM rate_limits WHERE expires_at < :now"), {"now": now})
        return _decision(int(count or 0), rate, end, now)

    def peek(self, bucket: str, rate: Rate, now: int | None = None) -> int:
        start, _ = _window(rate, now_ms() if now is None else now)
        with transaction(self.engine, write=False) as conn:
            count = conn.execute(
                text("SELECT count FROM rate_limits WHERE bucket = :bucket AND window_start = :s"),
                {"bucket": bucket, "s": start},
            ).scalar()
        return int(count or 0)


class DynamoLimiter:
    """One item per (bucket, window): partition key `pk` (string), numeric `count`, and
    `expires_at` in epoch seconds for the table's TTL to reap."""

    def __init__(self, table: str, *, region: str | None = None, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3  # lazy: boto3 costs ~100 ms of cold start and is only needed here

            client = boto3.client("dynamodb", region_name=region)
        self.client = client

    def hit(self, bucket: str, rate: Rate, now: int | None = None) -> Decision:
        now = now_ms() if now is None else now
        start, end = _window(rate, now)
        reply = self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"{bucket}#{start}"}},
            UpdateExpression="ADD #count :one SET expires_at = if_not_exists(expires_at, :exp)",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":exp": {"N": str(end // 1000 + 60)}},
            ReturnValues="UPDATED_NEW",
        )
        return _decision(int(reply["Attributes"]["count"]["N"]), rate, end, now)

    def peek(self, bucket: str, rate: Rate, now: int | None = None) -> int:
        start, _ = _window(rate, now_ms() if now is None else now)
        reply = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"{bucket}#{start}"}},
            ConsistentRead=True,
            ProjectionExpression="#count",
            ExpressionAttributeNames={"#count": "count"},
        )
        item = reply.get("Item")
        return int(item["count"]["N"]) if item else 0


_dynamo: dict[str, DynamoLimiter] = {}
_lock = threading.Lock()


def limiter_for(settings: RateLimitSettings, engine: Engine) -> Limiter:
    """The configured backend. The DynamoDB client is made once per process and reused across
    warm invocations; the SQL limiter is just the engine, so it is made per call."""
    table = settings.dynamodb_table
    if settings.backend != "dynamodb" or table is None:
        return SqlLimiter(engine)
    found = _dynamo.get(table)
    if found is None:
        with _lock:
            found = _dynamo.get(table)
            if found is None:
                found = _dynamo[table] = DynamoLimiter(table, region=settings.dynamodb_region)
    return found


def forget() -> None:
    """Drop the cached DynamoDB client (tests swap mocked AWS in and out)."""
    with _lock:
        _dynamo.clear()


def bucket(rule: str, subject: str) -> str:
    # Subjects (emails, IPs) are hashed: the table is a counter, not a log of who tried what.
    return f"{rule}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


def enforce(limiter: Limiter, settings: RateLimitSettings, rule: str, subject: str | None) -> None:
    """Count one hit of `rule` (e.g. "login.ip") for `subject`; 429 once over the limit."""
    rate = settings.rule(rule)
    if rate is None or not subject:
        return
    decision = limiter.hit(bucket(rule, subject), rate)
    if not decision.allowed:
        action = rule.split(".")[0]
        raise RateLimited(
            f"too many {action} requests: try again in {decision.retry_after} s",
            retry_after=decision.retry_after,
            details={"rule": rule, "limit": rate.count, "window_seconds": rate.seconds},
        )
