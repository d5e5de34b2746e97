"""Who the process is to PostgreSQL when the password is not in the URL.

On AWS the URL in the environment names the host, port and database only. The user and
password come from a Secrets Manager secret, read when the first connection is opened and kept
for the life of the instance, or from an RDS IAM authentication token, which boto3 signs
locally (no network call) and which the database accepts for 15 minutes.

A rotated secret (or an expired token) shows up as the database refusing the login: the engine
then asks for `fresh()` credentials once and tries again (core/kernel/db/engine.py).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from core.kernel import secrets
from core.kernel.secrets import secret_string


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None = None
    # From a secret that carries them (RDS's "credentials for an RDS database" shape); used
    # only where the URL leaves them out, so the URL always wins on where to connect.
    host: str | None = None
    port: int | None = None
    dbname: str | None = None

    def __repr__(self) -> str:
        # Never the password, whatever ends up formatting this object.
        return f"Credentials(username={self.username!r}, host={self.host!r})"


class CredentialSource(Protocol):
    """Hashable (engines are cached per source) and safe to call from any thread."""

    def current(self) -> Credentials: ...

    def fresh(self) -> Credentials:
        """Credentials read or signed anew, after the database refused the current ones."""
        ...


class CredentialsError(RuntimeError):
    """The secret holds no usable credentials."""


def _parse_secret(arn: str, raw: str) -> Credentials:
    try:
        data = json.loads(raw)
    except ValueError:
        raise CredentialsError(f"the secret {arn} is not JSON") from None
    if not isinstance(data, dict) or not data.get("password"):
        raise CredentialsError(
            f"the secret {arn} needs a JSON object with `username` and `password` "
            "(and optionally `host`, `port`, `dbname`)"
        )
    port = data.get("port")
    return Credentials(
        username=str(data["username"]) if data.get("username") else None,
        password=str(data["password"]),
        host=str(data["host"]) if data.get("host") else None,
        port=int(port) if port not in (None, "") else None,
        dbname=str(data["dbname"]) if data.get("dbname") else None,
    )


@dataclass(frozen=True)
class SecretsManagerSource:
    secret_arn: str
    region: str | None = None

    def current(self) -> Credentials:
        return _parse_secret(self.secret_arn, secret_string(self.secret_arn, self.region))

    def fresh(self) -> Credentials:
        raw = secret_string(self.secret_arn, self.region, fresh=True)
        return _parse_secret(self.secret_arn, raw)


# RDS IAM tokens are valid for 15 minutes; a new one is signed well before that so a
# connection is never opened with a token about to lapse.
_TOKEN_SECONDS = 600


@dataclass(frozen=True)
class IamTokenSource:
    host: str
    port: int
    username: str
    region: str | None = None

    def _sign(self) -> Credentials:
        import boto3

        client = boto3.client("rds", region_name=self.region)
        token = client.generate_db_auth_token(
            DBHostname=self.host, Port=self.port, DBUsername=self.username
        )
        return Credentials(username=self.username, password=token)

    def current(self) -> Credentials:
        key = f"iam:{self.username}@{self.host}:{self.port}"
        with _lock:
            found = _tokens.get(key)
            if found is not None and time.monotonic() - found[0] < _TOKEN_SECONDS:
                return found[1]
        return self.fresh()

    def fresh(self) -> Credentials:
        signed = self._sign()
        with _lock:
            _tokens[f"iam:{self.username}@{self.host}:{self.port}"] = (time.monotonic(), signed)
        return signed


_tokens: dict[str, tuple[float, Credentials]] = {}
_lock = threading.Lock()


def forget() -> None:
    """Drop every cached secret and token: before a SnapStart snapshot is taken, so no
    credential is written into it, and so a restored instance reads the current secret."""
    secrets.forget()
    with _lock:
        _tokens.clear()


def is_auth_failure(exc: BaseException) -> bool:
    """Whether a failed connect means "wrong credentials" (worth one retry with fresh ones),
    not an unreachable or paused server. libpq reports it in the message; the SQLSTATE
    (28P01 invalid_password, 28000 invalid authorization) is there when the server sent one."""
    state: Any = getattr(exc, "sqlstate", None)
    if state in ("28P01", "28000"):
        return True
    text = str(exc).lower()
    return "password authentication failed" in text or "pam authentication failed" in text
