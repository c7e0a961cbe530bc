"""Per-user dataset quota: what one user's uploaded datasets may take in all.

The platform's default is LLMCT_DATASET_QUOTA_BYTES; an admin may set another for a user (`dataset_quotas`).
An upload is held to the room left before it is received (its byte budget), and checked again when it is
stored, under a lock per owner, so two uploads at once cannot both take the last room.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common import readmodels
from services.common.errors import not_found

from . import store
from .settings import DatasetSettings
from .uploads import Budget, over_quota


class QuotaSetting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an admin sets for one user; null is the platform's default (LLMCT_DATASET_QUOTA_BYTES)."""

    max_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None


class DatasetQuota(msgspec.Struct, kw_only=True):
    """A user's dataset quota in force, what an admin set for them, and what their uploads take now."""

    user_id: str
    max_bytes: int
    custom: QuotaSetting
    used_bytes: int


async def quota_of(conn, settings: DatasetSettings, user_id: str) -> DatasetQuota:
    custom = await store.custom_quota(conn, user_id)
    return DatasetQuota(
        user_id=user_id,
        max_bytes=settings.quota_bytes if custom is None else custom,
        custom=QuotaSetting(max_bytes=custom),
        used_bytes=await store.stored_bytes(conn, user_id),
    )


async def budget_for(pool, settings: DatasetSettings, owner_id: str) -> Budget:
    """The byte budget of an upload by `owner_id`: the dataset cap, or the room left in their quota."""
    async with pool.acquire() as conn:
        quota = await quota_of(conn, settings, owner_id)
    budget = Budget(cap=settings.max_bytes, quota=quota.max_bytes, used=quota.used_bytes)
    if budget.limit == 0:
        raise budget.refusal()
    return budget


async def check_room(conn, settings: DatasetSettings, owner_id: str, size: int) -> None:
    """Refuse `size` more bytes for the owner beyond their quota; locks the owner's quota for the transaction."""
    await store.lock_owner_quota(conn, owner_id)
    quota = await quota_of(conn, settings, owner_id)
    if quota.used_bytes + size > quota.max_bytes:
        raise over_quota(quota.max_bytes, quota.used_bytes, f"the dataset ({size:,} bytes)")


async def set_quota(pool, settings: DatasetSettings, admin_id: str, user_id: str, data: QuotaSetting) -> DatasetQuota:
    async with pool.acquire() as conn:
        if not await readmodels.users_exist(conn, user_id):
            raise not_found("user")
        await store.set_custom_quota(conn, user_id, data.max_bytes, admin_id)
        return await quota_of(conn, settings, user_id)


async def show_quota(pool, settings: DatasetSettings, user_id: str) -> DatasetQuota:
    async with pool.acquire() as conn:
        if not await readmodels.users_exist(conn, user_id):
            raise not_found("user")
        return await quota_of(conn, settings, user_id)
