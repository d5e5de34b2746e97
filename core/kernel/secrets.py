"""Secrets Manager values, read once per process and kept for its life.

A Lambda instance reads each secret at its first use (one GetSecretValue per cold start, not
per request) and again only when told the value went stale (`fresh=True`: the database refused
the password after a rotation). `forget()` empties the cache before a SnapStart snapshot, so
no secret is written into one.
"""

from __future__ import annotations

import threading
import time

# arn -> (value, when read: time.monotonic())
_values: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


class SecretError(RuntimeError):
    """The secret could not be read (no such secret, no permission, no network)."""


def _read(arn: str, region: str | None) -> str:
    import boto3  # lazily: a process without secrets never loads it
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager", region_name=region)
    try:
        value = client.get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as exc:
        raise SecretError(f"could not read the secret {arn}: {exc}") from exc
    raw = value.get("SecretString")
    if not isinstance(raw, str):
        raise SecretError(f"the secret {arn} has no SecretString")
    return raw


def secret_string(
    arn: str, region: str | None = None, *, fresh: bool = False, max_age: float | None = None
) -> str:
    """The secret's value: cached, read anew when `fresh` or older than `max_age` seconds
    (for a secret nothing tells the process has changed, like the single API key)."""

    def usable(found: tuple[str, float] | None) -> bool:
        if found is None or fresh:
            return False
        return max_age is None or time.monotonic() - found[1] < max_age

    found = _values.get(arn)
    if usable(found):
        assert found is not None
        return found[0]
    with _lock:
        found = _values.get(arn)
        if not usable(found):
            found = _values[arn] = (_read(arn, region), time.monotonic())
        assert found is not None
        return found[0]


def forget() -> None:
    with _lock:
        _values.clear()
