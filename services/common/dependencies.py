"""What every service's routes may ask for by name (Litestar dependency injection), registered once by
`create_service_app`: the context the lifespan built, and its parts. None of them shows in the OpenAPI document.

A route names what it needs (`pool: Pool`, `settings: Injected[AuthSettings]`, `nc: Client`, `js: JetStreamContext`,
`revoked: RevokedSessions`, `principal: Principal`, or `context` for the whole of it); a service adds its own in
`ServiceSpec.dependencies`, usually read from its own context (`provide_part`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from asyncpg import Pool
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Dependency
from nats.aio.client import Client
from nats.js import JetStreamContext

from .lifecycle import Context
from .security import RevokedSessions, provide_principal
from .settings import Settings
from .startup import ready_context

T = TypeVar("T")

Injected = Annotated[T, Dependency(skip_validation=True)]
"""A route parameter given as it is, unchecked: for dataclasses (settings, contexts), which Litestar would otherwise
rebuild from the instance, and refuse when it is a subclass (a test's settings that are every service's at once)."""


def provide_context(state: State) -> Context:
    """The context the lifespan built (the service's own subclass of `Context` where it has one); 503 while the
    service still waits for Postgres or NATS."""
    return ready_context(state)


def provide_pool(context: Injected[Context]) -> Pool:
    """The service's asyncpg pool."""
    return context.pool


def provide_settings(state: State) -> Settings:
    """The service's settings (its own subclass of `Settings` where it has one)."""
    return state.settings


def provide_nc(context: Injected[Context]) -> Client:
    """The service's NATS connection."""
    return context.nc


def provide_js(context: Injected[Context]) -> JetStreamContext:
    """The service's JetStream context."""
    return context.js


def provide_revoked(context: Injected[Context]) -> RevokedSessions:
    """The sessions revoked so far (auth adds to it at logout)."""
    return context.revoked


def provide_part(name: str) -> Provide:
    """A dependency reading one attribute of the service's own context (e.g. the gateway's HTTP client)."""

    def provide(context: Any) -> Any:
        return getattr(context, name)

    provide.__doc__ = f"The context's {name}."
    return Provide(provide, sync_to_thread=False)


def _provide(fn: Callable) -> Provide:
    return Provide(fn, sync_to_thread=False)


DEPENDENCIES: dict[str, Provide] = {
    "principal": _provide(provide_principal),
    "context": _provide(provide_context),
    "pool": _provide(provide_pool),
    "settings": _provide(provide_settings),
    "nc": _provide(provide_nc),
    "js": _provide(provide_js),
    "revoked": _provide(provide_revoked),
}
