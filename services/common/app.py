"""The shape every service shares: a Litestar app whose lifespan owns the pool, the bus and what runs on them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, MediaType, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from nats.micro import add_service

from . import contracts, objects, redaction
from .bus import bus_is_healthy, close_bus, connect_bus, ensure_streams
from .consumers import Consumer
from .dependencies import DEPENDENCIES
from .errors import EXCEPTION_HANDLERS
from .lifecycle import Background, Context, Running
from .requests import Endpoint, serve
from .security import RevokedSessions, require_principal
from .settings import Settings, settings_from_env
from .startup import Startup, probes_for, start_when_ready
from .store import StoreNotMigrated, check_migrated, create_pool, store_is_healthy

log = logging.getLogger(__name__)

VERSION = "0.1.0"

Hook = Callable[[Any], Awaitable[None]]
"""A one-shot step given the service's context (`Context` or the service's own subclass of it)."""


@dataclass(kw_only=True)
class ServiceSpec:
    """What makes one service different from the others."""

    name: str
    description: str
    route_handlers: Sequence[Any] = ()
    uses_store: bool = True
    context: Callable[[Context], Context] | None = None
    """The service's own context, built from the shared one once the pool and NATS are up (its parts)."""
    on_startup: Sequence[Hook] = ()
    """One-shot set-up (presets, the first admin), run in order before the background parts start."""
    on_shutdown: Sequence[Hook] = ()
    """One-shot tear-down, run in reverse order once the background parts and consumers have stopped."""
    background: Sequence[Background[Any]] = ()
    """Long-running parts (loops, start/stop pairs), started in order after the hooks."""
    consumers: Sequence[Consumer[Any, Any]] = ()
    """Durable JetStream consumers, started after the background parts."""
    dependencies: dict[str, Provide] = field(default_factory=dict)
    """What the service's routes get injected besides the shared ones (services.common.dependencies)."""
    manages_streams: bool = True
    """Creates and updates the JetStream streams at start-up (agents may not: their NATS user cannot)."""
    bus_options: Callable[[], dict] | None = None
    """More keyword arguments for `connect_bus` (an agent's own inbox prefix)."""
    endpoints: Sequence[Endpoint] = ()
    """The questions this service owns, answered over NATS request/reply (services.common.requests)."""
    middleware: Sequence[Any] = ()
    """ASGI middleware of the service's own, inside the shared ones (the gateway's WebSocket revocation and
    per-client limit)."""
    state: Callable[[Settings], dict] | None = None
    """What the service keeps in its app's state besides the shared things, built from its settings."""
    health_checks: Callable[[Any], Awaitable[dict[str, tuple[bool, str]]]] | None = None
    """The services behind this one, on /health under `upstreams`: name -> (up, what to say) (the gateway's). One
    down makes /health 503 while `checks` (this process's own) may all be ok."""


HealthOf = tuple[bool, dict]


async def health_report(context: Context | None, spec: ServiceSpec, startup: Startup | None = None) -> HealthOf:
    """Really ask Postgres and NATS (and the service's own checks); returns (healthy, report). While the service
    waits for a dependency at start, the report says `starting` and what it waits for."""
    if startup is not None and not startup.ready:
        return False, startup.report(spec.name)
    checks = {"nats": await bus_is_healthy(context.nc if context else None)}
    if spec.uses_store:
        checks["postgres"] = await store_is_healthy(context.store if context else None)
    behind = await spec.health_checks(context) if spec.health_checks and context is not None else {}
    down = [name for name, problem in checks.items() if problem is not None]
    down += [name for name, (up, _) in behind.items() if not up]
    report = {
        "status": "degraded" if down else "ok",
        "service": spec.name,
        "checks": {name: problem or "ok" for name, problem in checks.items()},
        **({"upstreams": {name: said for name, (_, said) in behind.items()}} if behind else {}),
        **({"down": down} if down else {}),
    }
    return not down, report


def _health_route(spec: ServiceSpec):
    @get("/health", opt={"public": True}, include_in_schema=False)
    async def health(state: State) -> Response:
        healthy, report = await health_report(state.get("context"), spec, state.get("startup"))
        return Response(report, status_code=200 if healthy else 503, media_type=MediaType.JSON)

    return health


class MetricsController(PrometheusController):
    path = "/metrics"
    opt = {"public": True}
    include_in_schema = False


async def _start_discovery(context: Context, spec: ServiceSpec):
    """Answer NATS service discovery ($SRV.PING/INFO/STATS) so `nats micro ls` sees us."""
    service = await add_service(context.nc, name=f"llmct-{spec.name}", version=VERSION, description=spec.description)

    async def health(request) -> None:
        _, report = await health_report(context, spec)
        await request.respond(json.dumps(report).encode())

    await service.add_endpoint(name="health", subject=f"llmct.{spec.name}.health", handler=health)
    return service


async def _follow_revocations(context: Context) -> None:
    """Keep the revoked sessions current: loaded now, then told by auth, and reloaded after a reconnect."""

    async def on_revoked(msg) -> None:
        match contracts.decode(msg.data):
            case contracts.SessionRevoked(session_id=session_id, expires_at=expires_at):
                context.revoked.add(session_id, expires_at)
            case contracts.UserRevoked(user_id=user_id, generation=generation):
                context.revoked.revoke_user(user_id, generation)

    # Subscribe before loading, so a logout between the two is not missed.
    await context.nc.subscribe(contracts.Subjects.SESSION_REVOKED, cb=on_revoked)
    await context.nc.subscribe(contracts.Subjects.USER_REVOKED, cb=on_revoked)
    await context.revoked.load(context.pool)
    # Core NATS drops what is published while we are away: catch up from Postgres on reconnect.
    context.reconnected.append(lambda: context.revoked.load(context.pool))


async def _open_store(stack: AsyncExitStack, spec: ServiceSpec, settings: Settings):
    """The asyncpg pool (closed when the stack unwinds), refusing a database that is not at the newest migration."""
    if not spec.uses_store:
        return None
    pool = await create_pool(settings.database_url, attempts=1)  # waiting is start_when_ready's
    stack.push_async_callback(pool.close)
    try:
        await check_migrated(pool)
    except StoreNotMigrated as exc:
        log.error("%s refuses to start: %s", spec.name, exc)
        raise
    return pool


async def _open_context(stack: AsyncExitStack, app: Litestar, spec: ServiceSpec) -> Context:
    """Open the pool and NATS (each closed when the stack unwinds) and build the service's context."""
    settings: Settings = app.state.settings
    pool = await _open_store(stack, spec, settings)
    reconnected: list = []
    nc = await connect_bus(
        settings.nats_url,
        spec.name,
        reconnected,
        user=settings.nats_user,
        password=settings.nats_password,
        creds=settings.nats_creds,
        **(spec.bus_options() if spec.bus_options else {}),
    )
    stack.push_async_callback(close_bus, nc)
    context = Context(
        settings=settings,
        nc=nc,
        js=nc.jetstream(),
        store=pool,
        revoked=app.state.revoked_sessions,
        reconnected=reconnected,
    )
    if spec.manages_streams:
        await ensure_streams(context.js, settings.nats_replicas)
        if settings.storage_mode == "objects":
            await objects.ensure_buckets(context.js, settings.nats_replicas)
    if spec.uses_store:
        await _follow_revocations(context)
    return context


async def _start(stack: AsyncExitStack, app: Litestar, spec: ServiceSpec) -> None:
    """Every start step in order; each registers its undoing on `stack` first, so a failure unwinds the rest."""
    base = await _open_context(stack, app, spec)
    discovery = await _start_discovery(base, spec)
    stack.push_async_callback(discovery.stop)
    context = spec.context(base) if spec.context else base
    app.state.context = context
    for hook in spec.on_startup:
        await hook(context)
    for hook in spec.on_shutdown:  # the stack runs them in reverse
        stack.push_async_callback(hook, context)
    running = Running()
    stack.push_async_callback(running.stop)
    for part in spec.background:
        await running.start(part, context)
    for consumer in spec.consumers:
        running.consume(context.js, consumer, context)
    for endpoint in spec.endpoints:  # answered once the parts have set up what the answers read
        await serve(discovery, context, endpoint)


def _lifespan(spec: ServiceSpec):
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        startup = app.state.startup = Startup()
        probes = probes_for(spec.uses_store)

        async def steps(stack: AsyncExitStack) -> None:
            try:
                await _start(stack, app, spec)
            except BaseException:
                app.state.pop("context", None)  # half built, and being torn down: routes answer 503 meanwhile
                raise

        async with AsyncExitStack() as stack:
            starting = asyncio.create_task(
                start_when_ready(spec.name, app.state.settings, probes, startup, steps, stack)
            )
            await startup.started.wait()  # started, or waiting for a dependency: the server answers /health now
            if starting.done():
                starting.result()  # what ended the start (a database not migrated) ends the process
                log.info("%s ready", spec.name)
            else:
                starting.add_done_callback(lambda task: _started_late(app, spec, task))
            try:
                yield
            finally:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
        log.info("%s stopped: bus drained, pool closed", spec.name)

    return lifespan


def _started_late(app: Litestar, spec: ServiceSpec, task: asyncio.Task) -> None:
    """A start that waited for a dependency has ended: ready, or failed for good (then the process stops, as it
    would have at once; `llmct service` exits 1 and a supervisor sees it)."""
    if task.cancelled():
        return
    if (exc := task.exception()) is None:
        log.info("%s ready", spec.name)
        return
    log.error("%s failed to start: %s", spec.name, exc, exc_info=exc)
    stop = app.state.get("stop_server")
    if stop is not None:
        stop()


def create_service_app(spec: ServiceSpec, settings: Settings | None = None) -> Litestar:
    """Build the Litestar app of one service."""
    settings = settings or settings_from_env()
    redaction.install()  # however the app is served, its logs carry no token, ticket or password
    if spec.uses_store and len(settings.secret_key) < 32:
        raise RuntimeError("LLMCT_SECRET_KEY must be set (32+ characters) and shared by every service")
    return Litestar(
        route_handlers=[_health_route(spec), MetricsController, *spec.route_handlers],
        lifespan=[_lifespan(spec)],
        guards=[require_principal],
        dependencies={**DEPENDENCIES, **spec.dependencies},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[PrometheusConfig(app_name=f"llmct_{spec.name}", group_path=True).middleware, *spec.middleware],
        state=State(
            {
                "settings": settings,
                "revoked_sessions": RevokedSessions(),
                "spec": spec,
                **(spec.state(settings) if spec.state else {}),
            }
        ),
        openapi_config=OpenAPIConfig(
            title=f"LLM-Cloud-Trainer {spec.name}",
            version=VERSION,
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
            # Internal schema for the gateway to merge; the public docs live at /api/docs.
            openapi_router=Router(path="/schema", route_handlers=[], opt={"public": True}),
        ),
        debug=False,
        # Plain stderr logging set up by `llmct`: Litestar's queue handler loses the last lines at exit.
        logging_config=None,
    )
