"""The gateway: the only public port. Web client, /api forwarding, WebSockets, API docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import httpx
from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.dependencies import provide_part
from services.common.lifecycle import Context
from services.common.net import parse_networks
from services.common.settings import Settings, settings_for

from .adapters import AdapterRights
from .chat import CHAT_HANDLERS
from .docs import DOCS_STATIC, docs_page, openapi_document
from .limits import Limits, client_concurrency
from .logs import LogHub
from .lookups import Deployments, FineTuningJobs, RegistryModels
from .models import MODEL_HANDLERS
from .proxy import PROXY_HANDLERS, new_client
from .revocation import OpenSockets, close_on_revocation, follow_revocations
from .server import server_options as _server_options
from .settings import GatewaySettings
from .sockets import echo, job_sockets
from .tickets import Tickets, issue_ticket
from .upstreams import UPSTREAMS, UpstreamHealth
from .web import web_client


@dataclass(frozen=True, kw_only=True)
class GatewayContext(Context):
    """The shared context, and the gateway's HTTP client, log viewers' hub, deployment, model, adapter and
    fine-tuning job lookups, WebSocket tickets and open sockets."""

    http: httpx.AsyncClient
    log_hub: LogHub
    deployments: Deployments
    registry_models: RegistryModels
    adapter_rights: AdapterRights
    fine_tuning_jobs: FineTuningJobs
    tickets: Tickets
    open_sockets: OpenSockets
    upstreams: UpstreamHealth


def _gateway_context(base: Context) -> GatewayContext:
    """The gateway's parts, built once the bus is up."""
    http = new_client()
    settings = cast(GatewaySettings, base.settings)
    log_hub = LogHub(base.nc, base.js)
    base.reconnected.append(log_hub.reconnected)  # live lines sent while NATS was away are read from LOGS
    return base.extended(
        GatewayContext,
        http=http,
        log_hub=log_hub,
        deployments=Deployments(http, settings.upstreams("scheduler")),
        registry_models=RegistryModels(http, settings.upstreams("registry")),
        adapter_rights=AdapterRights(base.nc),
        fine_tuning_jobs=FineTuningJobs(http, settings.upstreams("scheduler"), settings.upstreams("registry")),
        tickets=Tickets(base.js, settings.ws_ticket_ttl_s, settings.nats_replicas),
        open_sockets=OpenSockets(),
        upstreams=UpstreamHealth(http, {name: settings.upstreams(name) for name in UPSTREAMS}),
    )


async def _upstream_health(context: GatewayContext) -> dict[str, tuple[bool, str]]:
    """/health's word on each service the gateway forwards to."""
    return await context.upstreams.check()


async def _open_tickets(context: GatewayContext) -> None:
    """Bind to (or create) the tickets' KV bucket."""
    await context.tickets.open()


async def _close_revoked_sockets(context: GatewayContext) -> None:
    """Close the open WebSockets of every session and user auth revokes from now on."""
    await follow_revocations(context.nc, context.open_sockets)


async def _close_client(context: GatewayContext) -> None:
    """Close the HTTP client (its connections to the services)."""
    await context.http.aclose()


def _limits(settings: Settings) -> dict:
    gateway = cast(GatewaySettings, settings)
    limits = Limits(
        client=gateway.client_concurrency,
        upstream=gateway.upstream_concurrency,
        websockets=gateway.websockets_per_user,
        trusted=parse_networks(gateway.trusted_proxies),
    )
    return {"limits": limits}


SPEC = ServiceSpec(
    name="gateway",
    description="public HTTP and WebSocket entry point",
    route_handlers=[
        *CHAT_HANDLERS,
        *MODEL_HANDLERS,
        *PROXY_HANDLERS,
        echo,
        job_sockets,
        issue_ticket,
        openapi_document,
        docs_page,
        DOCS_STATIC,
        web_client,
    ],
    context=_gateway_context,
    on_startup=[_open_tickets, _close_revoked_sockets],
    on_shutdown=[_close_client],
    middleware=[close_on_revocation, client_concurrency],
    state=_limits,
    health_checks=_upstream_health,
    dependencies={
        "http": provide_part("http"),
        "log_hub": provide_part("log_hub"),
        "deployments": provide_part("deployments"),
        "registry_models": provide_part("registry_models"),
        "adapter_rights": provide_part("adapter_rights"),
        "fine_tuning_jobs": provide_part("fine_tuning_jobs"),
        "tickets": provide_part("tickets"),
    },
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service gateway`."""
    return create_service_app(SPEC, settings_for(GatewaySettings, settings))


def server_options(settings: Settings | None = None) -> dict:
    """What `llmct service gateway` sets on uvicorn: the deadline on request headers."""
    return _server_options(settings_for(GatewaySettings, settings).header_timeout_s)
