"""Request and response shapes of /api/secrets: a secret's value goes in, never out."""

from __future__ import annotations

from datetime import datetime

import msgspec


class SecretValue(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A value to store (at most 4 KiB of UTF-8, no control characters); it is never shown again."""

    value: str


class SecretStatus(msgspec.Struct, kw_only=True):
    """One secret of the catalogue as its owner sees it: whether it is set and when, never its value."""

    name: str
    env: str  # the environment variable a job's train stage gets it as
    label: str
    set: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SecretList(msgspec.Struct, kw_only=True):
    """Every secret a user may store (the fixed catalogue), each with whether the caller has set it."""

    items: list[SecretStatus]
