"""The gateway: the only public port. Web client, /api forwarding, WebSockets, API docs."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.settings import Settings, settings_for

from .chat import CHAT_HANDLERS, Deployments
from .docs import DOCS_STATIC, docs_page, openapi_document
from .proxy import PROXY_HANDLERS, new_client
from .logs import LogHub
from .sockets import echo, job_sockets
from .web import web_client
from .settings import GatewaySettings


async def _open_client(app: Litestar) -> None:
    app.state.http = new_client()
    app.state.log_hub = LogHub(app.state.nc, app.state.js)
    app.state.deployments = Deployments()


async def _close_client(app: Litestar) -> None:
    await app.state.http.aclose()


SPEC = ServiceSpec(
    name="gateway",
    description="public HTTP and WebSocket entry point",
    route_handlers=[*CHAT_HANDLERS, *PROXY_HANDLERS, echo, job_sockets, openapi_document, docs_page, DOCS_STATIC, web_client],
    on_startup=[_open_client],
    on_shutdown=[_close_client],
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service gateway`."""
    return create_service_app(SPEC, settings_for(GatewaySettings, settings))
