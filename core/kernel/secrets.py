"""Secrets Manager values, read once per process and kept for its life.

A Lambda instance reads each secret at its first use (one GetSecretValue per cold start, not
per request) and again only when told the value went stale (`fresh=True`: the database refused
the password after a rotation). `forget()` empties the cache before a SnapStart snapshot, so
no secret is written into one.
"""

from __future__ import annotations

import threading

_values: dict[str, str] = {}
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


def secret_string(arn: str, region: str | None = None, *, fresh: bool = False) -> str:
    if not fresh:
        found = _values.get(arn)
        if found is not None:
            return found
    with _lock:
        found = None if fresh else _values.get(arn)
        if found is None:
            found = _values[arn] = _read(arn, region)
    return found


def forget() -> None:
    with _lock:
        _values.clear()
