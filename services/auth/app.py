"""The auth service: users, invite codes, tokens, API keys and roles."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.lifecycle import Background, Context
from services.common.settings import Settings, settings_for

from . import service, store
from .routes import AdminController, AuthController
from .settings import AuthSettings

PRUNE_EVERY_S = 600


async def _ensure_admin(context: Context) -> None:
    """The first admin, from the settings, when there is none yet."""
    await service.ensure_admin(context.pool, cast(AuthSettings, context.settings))


async def _prune_forever(context: Context) -> None:
    """Forget old login failures, registration attempts and expired revoked sessions, every PRUNE_EVERY_S."""
    settings = cast(AuthSettings, context.settings)
    while True:
        with contextlib.suppress(Exception):
            await store.prune(context.pool, max(settings.login_window_s, settings.register_window_s))
        await asyncio.sleep(PRUNE_EVERY_S)


SPEC = ServiceSpec(
    name="auth",
    description="users, invite codes, access tokens, API keys and roles",
    route_handlers=[AuthController, AdminController],
    on_startup=[_ensure_admin],
    background=[Background(name="pruner", run=_prune_forever)],
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service auth`: the shared settings given (or read) and auth's own."""
    auth_settings = settings_for(AuthSettings, settings)
    auth_settings.trusted_networks  # noqa: B018 - a bad LLMCT_TRUSTED_PROXIES stops the start, not a login
    return create_service_app(SPEC, auth_settings)
