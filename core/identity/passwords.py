"""Password hashing: PBKDF2-HMAC-SHA256 in MemoryVault's `pbkdf2_sha256$iterations$salt$hash`
format (salt and hash base64url without padding, a 16-byte salt, a 32-byte key), so accounts
exported from MemoryVault log in unchanged and are upgraded to the configured iteration count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

ALGORITHM = "pbkdf2_sha256"
SALT_BYTES = 16
KEY_BYTES = 32
MIN_LENGTH = 10
MAX_LENGTH = 1024  # PBKDF2 hashes long inputs first, but nobody needs a 1 MB password
# A stored hash with more iterations than this is refused rather than spun on: it can only
# come from a corrupt or hostile import, and would pin a Lambda for minutes.
_MAX_ITERATIONS = 10_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # MemoryVault writes base64url without padding; accept padded and standard base64 too.
    cleaned = text.replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _derive(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations, KEY_BYTES)


def hash_password(password: str, iterations: int) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True)
class Parsed:
    iterations: int
    salt: bytes
    key: bytes


def parse(stored: str) -> Parsed | None:
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM or not parts[1].isdigit():
        return None
    iterations = int(parts[1])
    if not 1 <= iterations <= _MAX_ITERATIONS:
        return None
    try:
        salt, key = _unb64(parts[2]), _unb64(parts[3])
    except (binascii.Error, ValueError):
        return None
    if not salt or len(key) != KEY_BYTES:
        return None
    return Parsed(iterations, salt, key)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # The hash is sound but weaker than configured: store a fresh one now that we know the
    # password.
    needs_rehash: bool = False


def verify_password(password: str, stored: str, iterations: int) -> Verdict:
    parsed = parse(stored)
    if parsed is None:
        burn(iterations)  # a broken hash costs the same as a wrong password
        return Verdict(False)
    candidate = _derive(password, parsed.salt, parsed.iterations)
    if not hmac.compare_digest(candidate, parsed.key):
        return Verdict(False)
    return Verdict(True, needs_rehash=parsed.iterations < iterations)


@lru_cache(maxsize=4)
def _dummy_salt(iterations: int) -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def burn(iterations: int) -> None:
    """Spend what a real verification costs. Login for an unknown email runs this, so the
    response time does not tell an attacker which emails have accounts."""
    _derive("not a password", _dummy_salt(iterations), iterations)


def check_strength(password: str) -> str | None:
    """Why the password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None
