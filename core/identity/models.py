"""Request and response models of accounts, sessions, brains, members and keys (REST and the
OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from core.identity.keys import MAX_ACTIVE_KEYS, REVOKED_SHOWN

# A key as replies carry it (`KeyOut`): typed where it is made, core/identity/keys.py, which
# this module imports for its limits.
from core.identity.keys import KeyRecord as KeyRecord

# The longest brain name.
MAX_NAME = 200


class _RawIn(BaseModel):
    # No whitespace stripping: a password is exactly what was typed.
    model_config = ConfigDict(extra="forbid")


Transport = Literal["bearer", "cookie"]


class SignupIn(_RawIn):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    display_name: str | None = Field(None, max_length=200)
    brain_name: str | None = Field(None, max_length=200, description="Name of the first brain")
    transport: Transport = "bearer"


class LoginIn(_RawIn):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    brain_id: str | None = Field(None, description="Start on this brain (default: the first)")
    transport: Transport = "bearer"


class RefreshIn(_RawIn):
    refresh_token: str | None = Field(None, description="Omit to use the refresh cookie")
    transport: Transport = "bearer"


class SwitchBrainIn(_RawIn):
    brain_id: str


class AccountOut(BaseModel):
    id: str
    email: str
    display_name: str | None
    created_at: str


class TokensOut(BaseModel):
    session_id: str
    token_type: str
    expires_in: int
    refresh_expires_at: str
    access_token: str | None = Field(None, description="Absent with transport=cookie")
    refresh_token: str | None = Field(None, description="Absent with transport=cookie")


class SignedInOut(TokensOut):
    account: AccountOut
    brain: dict[str, Any] | None


class MeOut(BaseModel):
    account: AccountOut
    brain: dict[str, Any] | None
    session_id: str


class SessionRevoked(BaseModel):
    session_id: str
    revoked: bool


class RevokedCount(BaseModel):
    revoked: int = Field(description="How many sessions were revoked")


class BrainSwitched(BaseModel):
    session_id: str
    brain: dict[str, Any]


class SessionOut(BaseModel):
    id: str
    brain_id: str | None = Field(description="The brain the session is on")
    client_id: str | None = Field(description="The OAuth client that holds it; null: a sign-in")
    client_name: str | None
    user_agent: str | None
    ip: str | None
    created_at: str
    last_used_at: str
    expires_at: str
    current: bool = Field(description="The session this request came in on")


class SessionsOut(BaseModel):
    results: list[SessionOut]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BrainIn(_In):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    slug: str | None = Field(
        None, description="URL-safe name; default: made from the name, plus a random suffix"
    )


class BrainPatch(_In):
    name: str = Field(min_length=1, max_length=MAX_NAME)


class BrainDelete(_In):
    confirm: str = Field(description="The brain's slug, repeated to confirm the deletion")


Role = str


class MemberIn(_In):
    email: str = Field(max_length=320)
    role: Role = Field("member", description="owner or member")


class MemberPatch(_In):
    role: Role = Field(description="owner or member")


class BrainOut(BaseModel):
    id: str
    slug: str
    name: str
    role: str
    created_at: str
    updated_at: str


class BrainList(BaseModel):
    results: list[BrainOut]


class MemberOut(BaseModel):
    account_id: str
    email: str
    display_name: str | None
    role: str
    added_at: str


class MemberList(BaseModel):
    results: list[MemberOut]


class BrainDeleted(BaseModel):
    id: str
    deleted: bool


class MemberRemoved(BaseModel):
    account_id: str
    removed: bool


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, max_length=200)
    user_id: str | None = Field(
        None, min_length=1, max_length=256, description="Scope the key to one end user"
    )
    read_only: bool = False


class KeyListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_revoked: bool = Field(
        False,
        description=f"Also the {REVOKED_SHOWN} most recently revoked keys "
        f"(a brain holds at most {MAX_ACTIVE_KEYS:,} active ones).",
    )


class KeyOut(BaseModel):
    id: str
    name: str | None
    prefix: str
    user_id: str | None
    read_only: bool
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The secret: shown once, store it now")


class KeyList(BaseModel):
    results: list[KeyOut]


class KeyRevoked(BaseModel):
    id: str
    revoked: bool


# -- Typed records ------------------------------------------------------------------------------
# What core/identity returns: the JSON a route sends, field for field (`BrainOut`, ...).


class AccountRecord(TypedDict):
    id: str
    email: str
    display_name: str | None
    created_at: str


class SessionRecord(TypedDict):
    id: str
    brain_id: str | None
    client_id: str | None
    client_name: str | None
    user_agent: str | None
    ip: str | None
    created_at: str
    last_used_at: str
    expires_at: str
    current: bool


class BrainRecord(TypedDict):
    id: str
    slug: str
    name: str
    role: str
    created_at: str
    updated_at: str


class BrainDeletedRecord(TypedDict):
    id: str
    deleted: bool


class MemberRecord(TypedDict):
    account_id: str
    email: str
    display_name: str | None
    role: str
    added_at: str


class MemberRemovedRecord(TypedDict):
    account_id: str
    removed: bool
