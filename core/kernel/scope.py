"""Who is asking, and what they may see: every core call receives one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.kernel.errors import Forbidden


@dataclass(frozen=True)
class Scope:
    brain_id: str
    principal: str
    user_id: str | None = None
    read_only: bool = False
    # Set for account sessions and OAuth tokens: who is acting and with which role in the
    # brain ("owner" or "member", read live on every request). API keys carry no account;
    # MNEMO_API_KEY (single-key mode) acts as the default brain's owner.
    role: str | None = None
    account_id: str | None = None
    session_id: str | None = None
    client_id: str | None = None  # the OAuth client, for tokens issued through /oauth

    def where(self, params: dict[str, Any], alias: str = "") -> str:
        """The clause every statement on a brain's rows starts from: this brain, and this user
        when the caller is scoped to one. Outside it a row does not exist (a 404, never a 403).
        Binds `:brain` (and `:scope_user`) in `params`; `alias` prefixes the columns ("m.")."""
        params["brain"] = self.brain_id
        clause = f"{alias}brain_id = :brain"
        if self.user_id is not None:
            params["scope_user"] = self.user_id
            clause += f" AND {alias}user_id = :scope_user"
        return clause

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def require_owner(self) -> None:
        if not self.is_owner:
            raise Forbidden("only an owner of this brain can do that", code="owner_only")

    def require_owner_write(self) -> None:
        """Owner-only changes: an owner's read-only key or grant (OAuth memories:read) may read
        what owners read, never change what owners manage."""
        self.require_write()
        self.require_owner()

    def require_write(self) -> None:
        if self.read_only:
            raise Forbidden("this key is read-only", code="read_only_key")

    def user_for_write(self, requested: str | None) -> str | None:
        """The user a write lands on: a user-scoped key can only write its own user."""
        if self.user_id is None:
            return requested
        if requested is not None and requested != self.user_id:
            raise Forbidden(
                f"this key is scoped to one user; omit user_id or pass {self.user_id!r}",
                code="user_scope_mismatch",
            )
        return self.user_id
