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
