"""The shape every service shares: a Litestar app whose lifespan owns the pool and the bus."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, MediaType, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from nats.micro import add_service

from . import contracts
from .bus import bus_is_healthy, close_bus, connect_bus, ensure_streams
from .errors import EXCEPTION_HANDLERS
from .requests import Endpoint, serve
from .security import RevokedSessions, provide_principal, require_principal
from .settings import Settings, settings_from_env
from .store import StoreNotMigrated, check_migrated, create_pool, store_is_healthy

log = logging.getLogger(__name__)

VERSION = "0.1.0"

Hook = Callable[[Litestar], Awaitable[None]]


@dataclass(kw_only=True)
class ServiceSpec:
    """What makes one service different from the others."""

    name: str
    description: str
    route_handlers: Sequence[Any] = ()
    uses_store: bool = True
    on_startup: Sequence[Hook] = ()
    on_shutdown: Sequence[Hook] = ()
    dependencies: dict[str, Provide] = field(default_factory=dict)
    manages_streams: bool = True
    """Creates and updates the JetStream streams at start-up (agents may not: their NATS user cannot)."""
    bus_options: Callable[[], dict] | None = None
    """More keyword arguments for `connect_bus` (an agent's own inbox prefix)."""
    endpoints: Sequence[Endpoint] = ()
    """The questions this service owns, answered over NATS request/reply (services.common.requests)."""


async def health_report(state: State, spec: ServiceSpec) -> tuple[bool, dict]:
    """Really ask Postgres and NATS; returns (healthy, report)."""
    checks = {"nats": await bus_is_healthy(state.get("nc"))}
    if spec.uses_store:
        checks["postgres"] = await store_is_healthy(state.get("pool"))
    healthy = all(problem is None for problem in checks.values())
    report = {
        "status": "ok" if healthy else "degraded",
        "service": spec.name,
        "checks": {name: problem or "ok" for name, problem in checks.items()},
    }
    return healthy, report


def _health_route(spec: ServiceSpec):
    @get("/health", opt={"public": True}, include_in_schema=False)
    async def health(state: State) -> Response:
        healthy, report = await health_report(state, spec)
        return Response(report, status_code=200 if healthy else 503, media_type=MediaType.JSON)

    return health


class MetricsController(PrometheusController):
    path = "/metrics"
    opt = {"public": True}
    include_in_schema = False


async def _start_discovery(app: Litestar, spec: ServiceSpec):
    """Answer NATS service discovery ($SRV.PING/INFO/STATS) so `nats micro ls` sees us."""
    service = await add_service(
        app.state.nc, name=f"llmct-{spec.name}", version=VERSION, description=spec.description
    )

    async def health(request) -> None:
        _, report = await health_report(app.state, spec)
        await request.respond(json.dumps(report).encode())

    await service.add_endpoint(name="health", subject=f"llmct.{spec.name}.health", handler=health)
    return service


async def _follow_revocations(app: Litestar) -> None:
    revoked: RevokedSessions = app.state.revoked_sessions

    async def on_revoked(msg) -> None:
        event = contracts.decode(msg.data)
        if isinstance(event, contracts.SessionRevoked):
            revoked.add(event.session_id, event.expires_at)

    # Subscribe before loading, so a logout between the two is not missed.
    await app.state.nc.subscribe(contracts.Subjects.SESSION_REVOKED, cb=on_revoked)
    await revoked.load(app.state.pool)
    # Core NATS drops what is published while we are away: catch up from Postgres on reconnect.
    app.state.bus_reconnected.append(lambda: revoked.load(app.state.pool))


def _lifespan(spec: ServiceSpec):
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        if spec.uses_store:
            app.state.pool = await create_pool(settings.database_url)
            try:
                await check_migrated(app.state.pool)
            except StoreNotMigrated as exc:
                log.error("%s refuses to start: %s", spec.name, exc)
                await app.state.pool.close()
                raise
        app.state.bus_reconnected = []
        app.state.nc = await connect_bus(settings.nats_url, spec.name, app.state.bus_reconnected,
                                         user=settings.nats_user, password=settings.nats_password,
                                         creds=settings.nats_creds, **(spec.bus_options() if spec.bus_options else {}))
        app.state.js = app.state.nc.jetstream()
        if spec.manages_streams:
            await ensure_streams(app.state.js)
        if spec.uses_store:
            await _follow_revocations(app)
        discovery = await _start_discovery(app, spec)
        for hook in spec.on_startup:
            await hook(app)
        for endpoint in spec.endpoints:  # answered once the hooks have set up what the answers read
            await serve(discovery, app, endpoint)
        log.info("%s ready", spec.name)
        try:
            yield
        finally:
            for hook in reversed(spec.on_shutdown):
                await hook(app)
            await discovery.stop()
            await close_bus(app.state.nc)
            if spec.uses_store:
                await app.state.pool.close()
            log.info("%s stopped: bus drained, pool closed", spec.name)

    return lifespan


def create_service_app(spec: ServiceSpec, settings: Settings | None = None) -> Litestar:
    """Build the Litestar app of one service."""
    settings = settings or settings_from_env()
    if spec.uses_store and len(settings.secret_key) < 32:
        raise RuntimeError("LLMCT_SECRET_KEY must be set (32+ characters) and shared by every service")
    return Litestar(
        route_handlers=[_health_route(spec), MetricsController, *spec.route_handlers],
        lifespan=[_lifespan(spec)],
        guards=[require_principal],
        dependencies={"principal": Provide(provide_principal, sync_to_thread=False), **spec.dependencies},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[PrometheusConfig(app_name=f"llmct_{spec.name}", group_path=True).middleware],
        state=State({"settings": settings, "revoked_sessions": RevokedSessions(), "spec": spec}),
        openapi_config=OpenAPIConfig(
            title=f"LLM-Cloud-Trainer {spec.name}",
            version=VERSION,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
            security=[{"bearer": []}],
            # Internal schema for the gateway to merge; the public docs live at /api/docs.
            openapi_router=Router(path="/schema", route_handlers=[], opt={"public": True}),
        ),
        debug=False,
        # Plain stderr logging set up by `llmct`: Litestar's queue handler loses the last lines at exit.
        logging_config=None,
    )
