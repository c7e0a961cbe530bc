"""Settings of the gateway, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.settings import REPO_ROOT, Settings, env


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(Settings):
    """The platform's shared settings and the gateway's own."""

    web_dist: Path = env("LLMCT_WEB_DIST", REPO_ROOT / "web" / "dist", doc="the built web client the gateway serves")
    ws_ticket_ttl_s: float = env(
        "LLMCT_WS_TICKET_TTL_S",
        30.0,
        doc="seconds a WebSocket ticket (POST /api/ws/tickets) stays good for its one use.",
    )
    header_timeout_s: float = env(
        "LLMCT_GATEWAY_HEADER_TIMEOUT_S",
        10.0,
        doc="seconds a client has to send a request's line and headers; then 408 and the connection is closed",
    )
    body_idle_s: float = env(
        "LLMCT_GATEWAY_BODY_IDLE_S",
        30.0,
        doc="seconds a forwarded request body may pause between two chunks; then 408 and the upstream call is ended",
    )
    upstream_concurrency: int = env(
        "LLMCT_GATEWAY_UPSTREAM_CONCURRENCY",
        256,
        doc="requests the gateway forwards to one service at once; more answer 503 with Retry-After",
    )
    client_concurrency: int = env(
        "LLMCT_GATEWAY_CLIENT_CONCURRENCY",
        32,
        doc="requests in flight from one client address at once; more answer 429 with Retry-After",
    )
    websockets_per_user: int = env(
        "LLMCT_GATEWAY_WEBSOCKETS_PER_USER",
        16,
        doc="WebSockets one user may hold open at once; the next is closed at once with code 4429",
    )
    trusted_proxies: str = env(
        "LLMCT_TRUSTED_PROXIES",
        "127.0.0.0/8,::1/128",
        doc="CIDRs of proxies (the gateway, a TLS proxy) whose X-Forwarded-For names the client",
    )
    chat_url_allow: str = env(
        "LLMCT_CHAT_URL_ALLOW",
        "",
        doc="comma-separated URL prefixes chat content may make a model server fetch (`image_url` and the like); "
        "any other URL is refused (422), `data:` URIs always pass",
    )
