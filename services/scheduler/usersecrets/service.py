"""What /api/secrets does: the catalogue with what the caller set, a value checked and encrypted before it is
stored, a delete. Only ever the caller's own; no route, an admin's included, reads a value back."""

from __future__ import annotations

import unicodedata

from services.common.errors import ApiError
from services.common.usersecrets import (
    BY_ENV,
    BY_NAME,
    CATALOGUE,
    MAX_VALUE_BYTES,
    SECRET_NAMES,
    SecretKind,
    missing_message,
)

from ..settings import SchedulerSettings
from . import store
from .sealing import keyring
from .views import SecretList, SecretStatus, SecretValue


def kind_of(name: str) -> SecretKind:
    """The catalogue's entry for `name`; 422 naming the names there are."""
    kind = BY_NAME.get(name)
    if kind is None:
        raise ApiError(
            422, "unknown_secret", f"no secret named {name[:64]!r}: one of {', '.join(SECRET_NAMES)}", "name"
        )
    return kind


def checked_value(data: SecretValue) -> str:
    """The value when it can be stored; 422 saying what is wrong with it (never repeating it)."""
    value = data.value
    if not value:
        raise ApiError(422, "empty_secret", "the value is empty: to remove a secret, DELETE it", "value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ApiError(422, "secret_too_long", f"the value is over {MAX_VALUE_BYTES} bytes", "value")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ApiError(
            422, "secret_not_text", "the value holds control characters (a newline, a tab): paste it alone", "value"
        )
    return value


def status_of(kind: SecretKind, row) -> SecretStatus:
    return SecretStatus(
        name=kind.name,
        env=kind.env,
        label=kind.label,
        set=row is not None,
        created_at=row["created_at"] if row else None,
        updated_at=row["updated_at"] if row else None,
    )


async def unset_for_job(pool, user_id: str, envs) -> list[str]:
    """For a submit that wants to refuse early: what to tell `user_id` for each of these variables (catalogue
    names, as `job_secret_names` gives them) that has no value set; empty when all are. The agent asks again when
    the stage starts, so a secret deleted in between still fails the job then (`secrets_unavailable`)."""
    names = {BY_ENV[env].name: env for env in envs}
    have = {row["name"] for row in await store.secrets_of(pool, user_id)}
    return [missing_message(env) for name, env in names.items() if name not in have]


async def listing(pool, settings: SchedulerSettings, user_id: str) -> SecretList:
    """The catalogue, each with whether `user_id` has set it."""
    keyring(settings.secrets_key)  # 503 when secrets are off: nothing set could be used
    rows = {row["name"]: row for row in await store.secrets_of(pool, user_id)}
    return SecretList(items=[status_of(kind, rows.get(kind.name)) for kind in CATALOGUE])


async def put(pool, settings: SchedulerSettings, user_id: str, name: str, data: SecretValue) -> SecretStatus:
    """Encrypt and store (or replace) one of the user's secrets."""
    kind, value = kind_of(name), checked_value(data)
    sealed, key_id = keyring(settings.secrets_key).seal(user_id, kind.name, value)
    return status_of(kind, await store.put_secret(pool, user_id, kind.name, sealed, key_id))


async def remove(pool, settings: SchedulerSettings, user_id: str, name: str) -> None:
    """Delete one of the user's secrets; 404 when it is not set."""
    kind = kind_of(name)
    keyring(settings.secrets_key)
    if not await store.delete_secret(pool, user_id, kind.name):
        raise ApiError(404, "not_found", f"secret {kind.name} is not set")
