"""Request and response shapes of /api/auth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

# msgspec matches with re.search, where `$` also matches before a final newline: (?!\n) stops "alice\n".
Username = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=32,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$(?!\n)",
        description="3-32 characters: lowercase letters, digits, '.', '_' or '-'",
    ),
]
Password = Annotated[str, Meta(min_length=1, max_length=256)]
# Postgres text cannot hold NUL: refusing it here names the field instead of failing in the store.
NO_NUL = r"^[^\x00]*$"


class RegisterRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: Username
    password: Password
    invite_code: Annotated[str, Meta(max_length=256, pattern=NO_NUL)] = ""


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
    password: Password


class TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int


Role = Literal["admin", "user"]
KeyScope = Literal["full", "read_only", "inference"]


class User(msgspec.Struct, kw_only=True):
    id: str
    username: str
    role: str
    created_at: datetime
    disabled: bool = False


class UserPage(msgspec.Struct, kw_only=True):
    items: list[User]
    next_cursor: str | None


class ApiKeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
    scope: Annotated[
        KeyScope, Meta(description="full; read_only: GET and HEAD only; inference: the OpenAI routes /v1/* only")
    ] = "full"
    expires_in_days: Annotated[int, Meta(ge=1, le=3650, description="none: the key never expires")] | None = None


class ApiKey(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    scope: str = "full"
    expires_at: datetime | None = None


class ApiKeyCreated(ApiKey, kw_only=True):
    key: str
    """Shown once; only its hash is stored."""


class UserChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an admin changes about an account; either ends every session and API key use of the old role."""

    disabled: bool | None = None
    role: Role | None = None


class PasswordReset(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    password: Password


class InviteCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_uses: Annotated[int, Meta(ge=1, le=10_000)] = 1
    expires_in_hours: Annotated[int, Meta(ge=1, le=24 * 365)] | None = 24 * 7


class Invite(msgspec.Struct, kw_only=True):
    code: str
    max_uses: int
    uses: int
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


S = TypeVar("S", bound=msgspec.Struct)


def to(struct: type[S], record) -> S:
    """A response struct from a database row, taking only the fields it declares."""
    return struct(**{name: record[name] for name in struct.__struct_fields__})
