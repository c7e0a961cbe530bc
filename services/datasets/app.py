"""The datasets service: public and private datasets, their files and dataset_info.json."""

from __future__ import annotations

import asyncio
import logging

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.settings import Settings, from_env, settings_from_env

from .answers import ENDPOINTS
from .catalog import sync_public_datasets
from .layout import DataLayout
from .routes import DatasetController
from .settings import DatasetSettings

log = logging.getLogger(__name__)


def _starter(dataset_settings: DatasetSettings):
    async def start(app: Litestar) -> None:
        """Sync the public list into the table, rewrite dataset_info.json, sweep abandoned uploads."""
        layout = DataLayout(app.state.settings.storage.data)
        layout.root.mkdir(parents=True, exist_ok=True)
        app.state.dataset_layout = layout
        app.state.dataset_settings = dataset_settings
        async with app.state.pool.acquire() as conn:
            await sync_public_datasets(conn, layout.root)
        swept = await asyncio.to_thread(layout.sweep_incoming)
        if swept:
            log.info("removed %d abandoned uploads", swept)

    return start


def create_app(settings: Settings | None = None, dataset_settings: DatasetSettings | None = None) -> Litestar:
    """App factory for `llmct service datasets`."""
    spec = ServiceSpec(
        name="datasets",
        description="public and private datasets, their files and dataset_info.json",
        route_handlers=[DatasetController],
        on_startup=[_starter(dataset_settings or from_env(DatasetSettings))],
        endpoints=ENDPOINTS,
    )
    return create_service_app(spec, settings or settings_from_env())
