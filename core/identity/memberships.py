"""Brains as accounts see them: membership with a role, and the brain's own management.

Members read and write memories; owners also rename or delete the brain and manage members and
keys. A brain the account is not a member of does not exist for it (404, never 403), so ids
of other tenants' brains cannot be probed. Invariants that span rows (a brain keeps at least one
owner) are checked under a lock on the brain row, so two owners demoting each other at once
cannot leave it ownerless.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any, cast

from sqlalchemy import Connection, text

from core.identity.brains import check_slug
from core.identity.models import (
    MAX_NAME,
    BrainDeletedRecord,
    BrainRecord,
    MemberRecord,
    MemberRemovedRecord,
)
from core.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms

ROLES = ("owner", "member")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(ROLES)}; got {role!r}", details={"field": "role"}
        )
    return role


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"a brain name is 1-{MAX_NAME} characters", details={"field": "name"})
    return name


def _slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40]
    return slug or "brain"


def role_of(conn: Connection, brain_id: str, account_id: str) -> str | None:
    role = conn.execute(
        text("SELECT role FROM brain_members WHERE brain_id = :b AND account_id = :a"),
        {"b": brain_id, "a": account_id},
    ).scalar()
    return None if role is None else str(role)


def require_member(conn: Connection, brain_id: str, account_id: str) -> str:
    """The account's role in the brain; 404 when it is not a member."""
    role = role_of(conn, brain_id, account_id)
    if role is None:
        raise NotFound("no such brain")
    return role


def require_owner(conn: Connection, brain_id: str, account_id: str) -> None:
    if require_member(conn, brain_id, account_id) != "owner":
        raise Forbidden("only an owner of this brain can do that", code="owner_only")


def _lock_brain(conn: Connection, brain_id: str) -> None:
    # A no-op write takes the row lock on PostgreSQL; SQLite writers are already serialised
    # by BEGIN IMMEDIATE. Portable, unlike SELECT ... FOR UPDATE.
    conn.execute(text("UPDATE brains SET updated_at = updated_at WHERE id = :id"), {"id": brain_id})


def _brain_out(row: Any) -> BrainRecord:
    out = {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "role": row.role,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    return cast(BrainRecord, out)


_BRAIN_SELECT = (
    "SELECT b.id, b.slug, b.name, b.created_at, b.updated_at, m.role FROM brains b "
    "JOIN brain_members m ON m.brain_id = b.id AND m.account_id = :account "
)


def list_brains(conn: Connection, account_id: str) -> list[BrainRecord]:
    rows = conn.execute(
        text(_BRAIN_SELECT + "ORDER BY b.created_at, b.id"), {"account": account_id}
    ).all()
    return [_brain_out(r) for r in rows]


def get_brain(conn: Connection, account_id: str, brain_id: str) -> BrainRecord:
    row = conn.execute(
        text(_BRAIN_SELECT + "WHERE b.id = :id"), {"account": account_id, "id": brain_id}
    ).first()
    if row is None:
        raise NotFound("no such brain")
    return _brain_out(row)


def create_brain(
    conn: Connection, account_id: str, name: str, slug: str | None = None
) -> BrainRecord:
    """A new brain owned by the account. Without a slug one is made from the name plus a random
    suffix, so two people naming a brain "Work" do not collide."""
    name = _check_name(name)
    if slug is not None:
        check_slug(slug)
    else:
        slug = f"{_slugify(name)}-{secrets.token_hex(3)}"
    now = now_ms()
    brain_id = new_id()
    created = conn.execute(
        text(
            "INSERT INTO brains (id, slug, name, created_at, updated_at) "
            "VALUES (:id, :slug, :name, :now, :now) ON CONFLICT (slug) DO NOTHING"
        ),
        {"id": brain_id, "slug": slug, "name": name, "now": now},
    )
    if created.rowcount != 1:
        raise Conflict(f"the brain name {slug!r} is taken", code="slug_taken")
    conn.execute(
        text(
            "INSERT INTO brain_members (brain_id, account_id, role, created_at) "
            "VALUES (:b, :a, 'owner', :now)"
        ),
        {"b": brain_id, "a": account_id, "now": now},
    )
    return get_brain(conn, account_id, brain_id)


def rename(conn: Connection, account_id: str, brain_id: str, name: str) -> BrainRecord:
    require_owner(conn, brain_id, account_id)
    conn.execute(
        text("UPDATE brains SET name = :name, updated_at = :now WHERE id = :id"),
        {"name": _check_name(name), "now": now_ms(), "id": brain_id},
    )
    return get_brain(conn, account_id, brain_id)


def delete(conn: Connection, account_id: str, brain_id: str, confirm: str) -> BrainDeletedRecord:
    """Delete the brain and everything in it. `confirm` must repeat the brain's slug: deleting
    a tenant is not something a stray request should be able to do."""
    brain = get_brain(conn, account_id, brain_id)
    if brain["role"] != "owner":
        raise Forbidden("only an owner of this brain can delete it", code="owner_only")
    if confirm != brain["slug"]:
        raise InvalidInput(
            "to delete this brain, send confirm set to its slug",
            code="confirmation_required",
            details={"field": "confirm", "expected": brain["slug"]},
        )
    if conn.dialect.name == "sqlite":
        # The SQLite full-text index is keyed by memory rowid and has no foreign key to
        # cascade from (core/retrieval/lexical.py keeps it in step row by row).
        conn.execute(
            text(
                "DELETE FROM memory_fts WHERE rowid IN "
                "(SELECT rowid FROM memories WHERE brain_id = :id)"
            ),
            {"id": brain_id},
        )
    # OAuth grants were for this brain alone: end them. First-party sessions on it lose their
    # active brain (the foreign key sets it to NULL) and can switch to another.
    conn.execute(
        text(
            "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = 'brain_deleted' "
            "WHERE brain_id = :id AND client_id IS NOT NULL AND revoked_at IS NULL"
        ),
        {"id": brain_id, "now": now_ms()},
    )
    # Every table with tenant data references brains ON DELETE CASCADE.
    conn.execute(text("DELETE FROM brains WHERE id = :id"), {"id": brain_id})
    return {"id": brain_id, "deleted": True}


def members(conn: Connection, account_id: str, brain_id: str) -> list[MemberRecord]:
    require_member(conn, brain_id, account_id)
    rows = conn.execute(
        text(
            "SELECT a.id, a.email, a.display_name, m.role, m.created_at FROM brain_members m "
            "JOIN accounts a ON a.id = m.account_id WHERE m.brain_id = :b "
            "ORDER BY m.created_at, a.id"
        ),
        {"b": brain_id},
    ).all()
    return [_member_out(r) for r in rows]


def _member_out(row: Any) -> MemberRecord:
    out = {
        "account_id": row.id,
        "email": row.email,
        "display_name": row.display_name,
        "role": row.role,
        "added_at": iso(row.created_at),
    }
    return cast(MemberRecord, out)


def _member(conn: Connection, brain_id: str, member_id: str) -> MemberRecord:
    row = conn.execute(
        text(
            "SELECT a.id, a.email, a.display_name, m.role, m.created_at FROM brain_members m "
            "JOIN accounts a ON a.id = m.account_id WHERE m.brain_id = :b AND m.account_id = :a"
        ),
        {"b": brain_id, "a": member_id},
    ).first()
    if row is None:
        raise NotFound("no such member in this brain")
    return _member_out(row)


def add_member(
    conn: Connection, account_id: str, brain_id: str, email: str, role: str
) -> MemberRecord:
    """Add an existing account by its email. Only owners may, so only they learn whether an
    email has an account here."""
    require_owner(conn, brain_id, account_id)
    check_role(role)
    found = conn.execute(text("SELECT id FROM accounts WHERE email = :e"), {"e": email}).scalar()
    if found is None:
        raise NotFound(
            "no account with that email: ask them to sign up first", code="account_not_found"
        )
    added = conn.execute(
        text(
            "INSERT INTO brain_members (brain_id, account_id, role, created_at) "
            "VALUES (:b, :a, :role, :now) ON CONFLICT (brain_id, account_id) DO NOTHING"
        ),
        {"b": brain_id, "a": found, "role": role, "now": now_ms()},
    )
    if added.rowcount != 1:
        raise Conflict("that account is already a member", code="already_member")
    return _member(conn, brain_id, str(found))


def bind(conn: Connection, brain_id: str, email: str, role: str) -> MemberRecord:
    """The operator's way in (the CLI, no owner needed): make an existing account a member of
    the brain with `role`, or change its role if it is one. How a brain made by MNEMO_API_KEY
    or `mnemo keys create`, which has no members, becomes visible in the console."""
    check_role(role)
    found = conn.execute(text("SELECT id FROM accounts WHERE email = :e"), {"e": email}).scalar()
    if found is None:
        raise NotFound(
            f"no account with the email {email}: sign up in the console first",
            code="account_not_found",
        )
    conn.execute(
        text(
            "INSERT INTO brain_members (brain_id, account_id, role, created_at) "
            "VALUES (:b, :a, :role, :now) "
            "ON CONFLICT (brain_id, account_id) DO UPDATE SET role = excluded.role"
        ),
        {"b": brain_id, "a": found, "role": role, "now": now_ms()},
    )
    return _member(conn, brain_id, str(found))


def _owners(conn: Connection, brain_id: str) -> int:
    count = conn.execute(
        text("SELECT count(*) FROM brain_members WHERE brain_id = :b AND role = 'owner'"),
        {"b": brain_id},
    ).scalar()
    return int(count or 0)


def set_role(
    conn: Connection, account_id: str, brain_id: str, member_id: str, role: str
) -> MemberRecord:
    check_role(role)
    _lock_brain(conn, brain_id)  # before the checks, so they hold until commit
    require_owner(conn, brain_id, account_id)
    current = _member(conn, brain_id, member_id)
    if current["role"] == "owner" and role != "owner" and _owners(conn, brain_id) <= 1:
        raise Conflict(
            "a brain needs at least one owner: make someone else an owner first",
            code="last_owner",
        )
    conn.execute(
        text("UPDATE brain_members SET role = :role WHERE brain_id = :b AND account_id = :a"),
        {"role": role, "b": brain_id, "a": member_id},
    )
    return _member(conn, brain_id, member_id)


def remove_member(
    conn: Connection, account_id: str, brain_id: str, member_id: str
) -> MemberRemovedRecord:
    """Owners remove anyone; a member may remove only themself (leave). The last owner cannot
    leave. Tokens on the brain stop working at once: token checks read the membership."""
    _lock_brain(conn, brain_id)  # before the checks, so they hold until commit
    role = require_member(conn, brain_id, account_id)
    if member_id != account_id and role != "owner":
        raise Forbidden("only an owner can remove other members", code="owner_only")
    current = _member(conn, brain_id, member_id)
    if current["role"] == "owner" and _owners(conn, brain_id) <= 1:
        raise Conflict(
            "the last owner cannot leave: make someone else an owner, or delete the brain",
            code="last_owner",
        )
    conn.execute(
        text("DELETE FROM brain_members WHERE brain_id = :b AND account_id = :a"),
        {"b": brain_id, "a": member_id},
    )
    return {"account_id": member_id, "removed": True}
