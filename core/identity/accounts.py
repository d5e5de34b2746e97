"""Accounts: people who log in with an email and a password.

Password hashing costs ~0.5 s by design, so it never runs inside a transaction (on SQLite a
write transaction holds the database's only write lock). `authenticate` therefore takes the
engine and opens its own short transactions around the hash, not a connection.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, text

from core.identity import memberships, passwords, sessions
from core.identity.models import AccountRecord, BrainRecord
from core.kernel.config import AuthSettings
from core.kernel.db.engine import transaction
from core.kernel.errors import Conflict, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms

# Deliberately loose (what MemoryVault accepts): the real check is whether mail arrives, and
# rejecting valid-but-odd addresses is worse than accepting a typo.
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
MAX_EMAIL = 254


def normalize_email(raw: str) -> str:
    """Trimmed, NFKC-normalised and lower-cased: one account per mailbox however it is typed."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise InvalidInput("that is not an email address", details={"field": "email"})
    return email


def check_password(password: str) -> None:
    problem = passwords.check_strength(password)
    if problem is not None:
        raise InvalidInput(problem, code="weak_password", details={"field": "password"})


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    display_name: str | None
    created_at: int

    def public(self) -> AccountRecord:
        out = {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "created_at": iso(self.created_at),
        }
        return cast(AccountRecord, out)


_COLUMNS = "id, email, display_name, created_at"


def _account(row: Any) -> Account:
    return Account(row.id, row.email, row.display_name, row.created_at)


def get(conn: Connection, account_id: str) -> Account:
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id"), {"id": account_id}
    ).first()
    if row is None:
        raise NotFound("no such account")
    return _account(row)


def find_by_email(conn: Connection, email: str) -> Account | None:
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM accounts WHERE email = :email"), {"email": email}
    ).first()
    return None if row is None else _account(row)


def email_taken(conn: Connection, email: str) -> bool:
    found = conn.execute(text("SELECT 1 FROM accounts WHERE email = :e"), {"e": email}).first()
    return found is not None


def insert(
    conn: Connection, email: str, password_hash: str, display_name: str | None
) -> Account | None:
    """The new account, or None when the email is already taken (a concurrent signup won)."""
    now = now_ms()
    account_id = new_id()
    result = conn.execute(
        text(
            "INSERT INTO accounts (id, email, password_hash, display_name, created_at, "
            "updated_at) VALUES (:id, :email, :hash, :name, :now, :now) "
            "ON CONFLICT (email) DO NOTHING"
        ),
        {"id": account_id, "email": email, "hash": password_hash, "name": display_name, "now": now},
    )
    if result.rowcount != 1:
        return None
    return Account(account_id, email, display_name, now)


def authenticate(engine: Engine, email: str, password: str, iterations: int) -> Account | None:
    """The account if the password is right, else None. Costs one password hash whether or not
    the email exists, so neither the answer nor its timing tells which emails have accounts.
    A hash with fewer iterations than configured (an older or imported one) is upgraded."""
    with transaction(engine, write=False) as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS}, password_hash FROM accounts WHERE email = :email"),
            {"email": email},
        ).first()
    if row is None:
        passwords.burn(iterations)
        return None
    verdict = passwords.verify_password(password, row.password_hash, iterations)
    if not verdict.ok:
        return None
    if verdict.needs_rehash:
        fresh = passwords.hash_password(password, iterations)
        with transaction(engine) as conn:
            # Only replace the hash we verified: a password changed meanwhile wins.
            conn.execute(
                text(
                    "UPDATE accounts SET password_hash = :new, updated_at = :now "
                    "WHERE id = :id AND password_hash = :old"
                ),
                {"new": fresh, "now": now_ms(), "id": row.id, "old": row.password_hash},
            )
    return _account(row)


@dataclass(frozen=True)
class SignedIn:
    account: Account
    issued: sessions.Issued
    brain: BrainRecord | None
    created: bool  # a new account (signup) rather than an existing one (login)


@dataclass(frozen=True)
class Client:
    """Where a login comes from, kept on the session for the session list."""

    user_agent: str | None = None
    ip: str | None = None


def _open_session(
    engine: Engine,
    account: Account,
    auth: AuthSettings,
    client: Client,
    brain_id: str | None,
    *,
    created: bool,
) -> SignedIn:
    with transaction(engine) as conn:
        brains = memberships.list_brains(conn, account.id)
        if brain_id is not None:
            brain = next((b for b in brains if b["id"] == brain_id), None)
            if brain is None:
                raise NotFound("no such brain")
        else:
            brain = brains[0] if brains else None
        issued = sessions.create(
            conn,
            account.id,
            None if brain is None else brain["id"],
            sessions.Lifetimes.of(auth),
            user_agent=client.user_agent,
            ip=client.ip,
        )
    return SignedIn(account, issued, brain, created)


def login(
    engine: Engine,
    email: str,
    password: str,
    auth: AuthSettings,
    client: Client,
    brain_id: str | None = None,
) -> SignedIn | None:
    """A new session for the account, on `brain_id` or its first brain; None if the email or
    password is wrong (which one is not said)."""
    account = authenticate(engine, email, password, auth.password_iterations)
    if account is None:
        return None
    return _open_session(engine, account, auth, client, brain_id, created=False)


def signup(
    engine: Engine,
    email: str,
    password: str,
    auth: AuthSettings,
    client: Client,
    *,
    display_name: str | None = None,
    brain_name: str | None = None,
) -> SignedIn:
    """Create the account with a first brain it owns, and a session on it.

    Without a mail channel, signup cannot hide entirely that an email is taken; what it can do
    is say no more than it must. Signing up again with the right password is simply a login;
    with a wrong one the answer is the same whatever the reason, and costs the same one hash
    as a real signup, so timing does not tell either."""
    check_password(password)
    with transaction(engine, write=False) as conn:
        taken = email_taken(conn, email)
    if not taken:
        hashed = passwords.hash_password(password, auth.password_iterations)
        with transaction(engine) as conn:
            account = insert(conn, email, hashed, display_name)
            if account is not None:
                brain = memberships.create_brain(conn, account.id, brain_name or "My brain")
                issued = sessions.create(
                    conn,
                    account.id,
                    brain["id"],
                    sessions.Lifetimes.of(auth),
                    user_agent=client.user_agent,
                    ip=client.ip,
                )
                return SignedIn(account, issued, brain, created=True)
        # A concurrent signup took the email between our check and our insert.
    signed_in = login(engine, email, password, auth, client)
    if signed_in is None:
        raise Conflict(
            "could not sign up with these details; if you already have an account, log in",
            code="signup_failed",
        )
    return signed_in
