"""The auth service: users, invite codes, tokens, API keys and roles."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.settings import Settings, settings_for

from . import service, store
from .routes import AdminController, AuthController
from .settings import AuthSettings

PRUNE_EVERY_S = 600


async def _start(app: Litestar) -> None:
    await service.ensure_admin(app.state.pool, app.state.settings)
    app.state.pruner = asyncio.create_task(_prune_forever(app))


async def _prune_forever(app: Litestar) -> None:
    while True:
        with contextlib.suppress(Exception):
            await store.prune(app.state.pool, app.state.settings.login_window_s)
        await asyncio.sleep(PRUNE_EVERY_S)


async def _stop(app: Litestar) -> None:
    app.state.pruner.cancel()


SPEC = ServiceSpec(
    name="auth",
    description="users, invite codes, access tokens, API keys and roles",
    route_handlers=[AuthController, AdminController],
    on_startup=[_start],
    on_shutdown=[_stop],
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service auth`: the shared settings given (or read) and auth's own."""
    return create_service_app(SPEC, settings_for(AuthSettings, settings))
