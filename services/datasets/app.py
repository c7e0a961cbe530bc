"""The datasets service: public and private datasets and their files."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.settings import Settings

SPEC = ServiceSpec(name="datasets", description="public and private datasets and their files")


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service datasets`."""
    return create_service_app(SPEC, settings)
