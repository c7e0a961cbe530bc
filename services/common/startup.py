"""Starting a service whose Postgres or NATS is not there yet: wait for them with backoff, say on /health what it
waits for, and start once they answer, instead of exiting (a supervisor would only start it again into the same
outage)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
import nats.errors

from .bus import tls_context
from .errors import ApiError
from .settings import Settings

log = logging.getLogger(__name__)

FIRST_WAIT_S = 0.5
MAX_WAIT_S = 10.0
PROBE_TIMEOUT_S = 2

# What a start step raises when a dependency is away (or goes away while the service starts): wait and try again.
# Anything else (a database not migrated, a bug) ends the start, as before.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    nats.errors.Error,
)


@dataclass
class Startup:
    """Where a service's start stands: what /health reports until it is ready."""

    ready: bool = False
    waiting_for: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the start has either finished or found something to wait for."""
    failure: BaseException | None = None

    def report(self, service: str) -> dict:
        return {
            "status": "starting",
            "service": service,
            "waiting_for": list(self.waiting_for),
            # The kind of failure only: the message (addresses, users) is for the log, and /health may be public.
            "checks": {name: self.problems.get(name, "ok").split(":", 1)[0] for name in self.waiting_for},
        }


async def postgres_problem(settings: Settings) -> str | None:
    """None when Postgres lets us in, else why not."""
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=PROBE_TIMEOUT_S)
    except (*TRANSIENT, asyncpg.PostgresError) as exc:
        return _said(exc)
    await conn.close()
    return None


async def nats_problem(settings: Settings) -> str | None:
    """None when NATS lets us in, else why not (one try, no reconnecting)."""
    auth: dict = {"user": settings.nats_user, "password": settings.nats_password} if settings.nats_user else {}
    if settings.nats_creds:
        auth["user_credentials"] = settings.nats_creds
    errors: list[str] = []

    async def remember(exc: Exception) -> None:
        errors.append(_said(exc))

    servers = [part.strip() for part in settings.nats_url.split(",") if part.strip()]
    tls = tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)
    if tls is not None:  # the same TLS as the connection the service then opens (connect_bus)
        auth["tls"] = tls
    try:
        nc = await nats.connect(
            servers,
            # nats-py tries a server again and again unless attempts are bounded (0 means unbounded there)
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            connect_timeout=PROBE_TIMEOUT_S,
            error_cb=remember,
            **auth,
        )
    except (*TRANSIENT, nats.errors.NoServersError) as exc:
        return errors[-1] if errors else _said(exc)
    await nc.close()
    return None


def _said(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}".strip().rstrip(":")[:200]


Probe = Callable[[Settings], Awaitable[str | None]]


def probes_for(uses_store: bool) -> dict[str, Probe]:
    """The dependencies a service waits for at start: NATS always, Postgres when it has a store."""
    return {"postgres": postgres_problem, "nats": nats_problem} if uses_store else {"nats": nats_problem}


async def wait_for_dependencies(name: str, settings: Settings, probes: dict[str, Probe], startup: Startup) -> None:
    """Return once every dependency answers; until then retry with backoff, logging what is awaited."""
    delay = FIRST_WAIT_S
    while True:
        found = {dep: await probe(settings) for dep, probe in probes.items()}
        startup.problems = {dep: problem for dep, problem in found.items() if problem is not None}
        startup.waiting_for = list(startup.problems)
        if not startup.waiting_for:
            return
        startup.started.set()  # the lifespan lets the server answer /health meanwhile
        said = "; ".join(f"{dep}: {problem}" for dep, problem in startup.problems.items())
        log.warning("%s waiting for %s (%s); next try in %.1f s", name, ", ".join(startup.waiting_for), said, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_WAIT_S)


StartSteps = Callable[[AsyncExitStack], Awaitable[None]]


async def start_when_ready(
    name: str, settings: Settings, probes: dict[str, Probe], startup: Startup, steps: StartSteps, stack: AsyncExitStack
) -> None:
    """Wait for the dependencies, then run the start steps on `stack`; a dependency lost midway unwinds what they
    did and waits again. Sets `startup.ready` on success, `startup.failure` on an error that waiting cannot cure."""
    delay = FIRST_WAIT_S
    try:
        while True:
            await wait_for_dependencies(name, settings, probes, startup)
            attempt = AsyncExitStack()
            try:
                await steps(attempt)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await attempt.aclose()
                if not isinstance(exc, TRANSIENT):
                    raise
                log.warning("%s: a dependency went away while starting (%s); trying again", name, _said(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)
                continue
            stack.push_async_exit(attempt)
            startup.ready, startup.waiting_for, startup.problems = True, [], {}
            return
    except Exception as exc:
        startup.failure = exc
        raise
    finally:
        startup.started.set()


def ready_context(state) -> Any:
    """The context the lifespan built, or a 503 with Retry-After while the service still waits for a dependency."""
    context, startup = state.get("context"), state.get("startup")
    if context is None or (startup is not None and not startup.ready):
        waiting = ", ".join(startup.waiting_for) if startup and startup.waiting_for else "its start"
        raise ApiError(
            503,
            "service_starting",
            f"this service is starting (waiting for {waiting}); nothing was changed, retry shortly",
            headers={"Retry-After": "2"},
        )
    return context
