"""Who is asking, and what they may see: every core call receives one."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import Forbidden


@dataclass(frozen=True)
class Scope:
    brain_id: str
    principal: str
    user_id: str | None = None
    read_only: bool = False

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
