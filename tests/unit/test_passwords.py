"""Password hashing (core/identity/passwords.py): the stored format, a known PBKDF2 vector and
malformed hashes. Sign-up, login and the upgrade of old hashes: tests/core/test_accounts.py."""

from __future__ import annotations

import base64

import pytest

from core.identity import passwords

PASSWORD = "correct horse battery"


def test_the_real_600k_hash_has_memoryvaults_format_and_verifies() -> None:
    stored = passwords.hash_password(PASSWORD, 600_000)
    algorithm, iterations, salt, key = stored.split("$")
    assert (algorithm, iterations) == ("pbkdf2_sha256", "600000")
    assert "=" not in salt + key and "+" not in salt + key and "/" not in salt + key
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert passwords.verify_password(PASSWORD, stored, 600_000) == passwords.Verdict(True, False)
    assert not passwords.verify_password(PASSWORD + "!", stored, 600_000).ok


def test_a_known_pbkdf2_vector_verifies() -> None:
    # RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1 (first 32 bytes).
    key = bytes.fromhex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
    salt = base64.urlsafe_b64encode(b"salt").rstrip(b"=").decode()
    stored = f"pbkdf2_sha256$1${salt}${base64.urlsafe_b64encode(key).rstrip(b'=').decode()}"
    assert passwords.verify_password("passwd", stored, 1_000) == passwords.Verdict(True, True)


@pytest.mark.parametrize(
    "stored",
    ["", "md5$1$a$b", "pbkdf2_sha256$x$c2FsdA$AAAA", "pbkdf2_sha256$0$c2FsdA$AAAA", "a$b$c"],
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not passwords.verify_password(PASSWORD, stored, 1_000).ok
