"""The registry service: models: presets, job outputs, lineage and who may use which."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.settings import Settings

from . import handlers
from .answers import ENDPOINTS, registry_context
from .routes import ModelController

SPEC = ServiceSpec(
    name="registry",
    description="models: presets, job outputs, lineage and who may use which",
    route_handlers=[ModelController],
    on_startup=[handlers.sync_presets],
    background=handlers.BACKGROUND,
    consumers=handlers.CONSUMERS,
    endpoints=ENDPOINTS,
    context=registry_context,
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service registry`."""
    return create_service_app(SPEC, settings)
