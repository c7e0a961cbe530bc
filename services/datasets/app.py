"""The datasets service: public and private datasets, their files and dataset_info.json."""

from __future__ import annotations

import asyncio
import logging

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.contracts import Buckets
from services.common.dependencies import provide_part
from services.common.lifecycle import Background
from services.common.object_writer import sweep_orphans
from services.common.settings import Settings, from_env, settings_from_env

from .answers import ENDPOINTS
from .catalog import sync_public_datasets
from .context import DatasetsContext, datasets_context
from .openai_routes import FilesController, UploadsController
from .openai_uploads import expire_uploads
from .routes import DatasetController, QuotaController
from .settings import DatasetSettings

log = logging.getLogger(__name__)


async def _start(context: DatasetsContext) -> None:
    """Sync the public list into the table, rewrite dataset_info.json, sweep abandoned uploads."""
    layout = context.datasets.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    async with context.pool.acquire() as conn:
        await sync_public_datasets(conn, layout.root)  # pyright: ignore[reportArgumentType] - a pool's proxy
    await _sweep_uploads(context)


async def _sweep_uploads(context: DatasetsContext) -> None:
    """Remove unfinished uploads (a crash, a client gone) with no progress for LLMCT_UPLOAD_MAX_AGE_S: their
    incoming folders and, in `objects` mode, the chunks they streamed into the datasets bucket."""
    datasets = context.datasets
    try:
        swept = await asyncio.to_thread(datasets.layout.sweep_incoming, datasets.settings.upload_max_age_s)
    except OSError as exc:
        log.warning("unfinished uploads could not be swept (the next pass retries): %s", exc)
        return
    if swept:
        log.info("removed %d unfinished uploads", swept)
    try:
        expired = await expire_uploads(datasets)
    except Exception as exc:  # noqa: BLE001 - the database away: the next pass retries
        log.warning("expired OpenAI uploads could not be swept (the next pass retries): %s", exc)
    else:
        if expired:
            log.info("removed the parts of %d expired OpenAI uploads", expired)
    if context.inputs is not None:  # `objects` mode: chunks an upload streamed before the service died
        try:
            swept = await sweep_orphans(context.js, Buckets.DATASETS, datasets.settings.upload_max_age_s)
        except Exception as exc:  # noqa: BLE001 - NATS away: the next pass retries
            log.warning("unnamed chunks in the datasets bucket could not be swept (the next pass retries): %s", exc)
            return
        if swept:
            log.info("purged the chunks of %d unfinished uploads from %s", swept, Buckets.DATASETS)


async def _sweep_uploads_forever(context: DatasetsContext) -> None:
    """Sweep unfinished uploads every LLMCT_UPLOAD_SWEEP_S, not only at start-up: a long-lived service keeps
    the disk a dead upload took otherwise."""
    while True:
        await asyncio.sleep(context.datasets.settings.upload_sweep_s)
        await _sweep_uploads(context)


async def _stop(context: DatasetsContext) -> None:
    """Stop the row-check worker processes, if an upload started them."""
    context.datasets.checks.close()


def create_app(settings: Settings | None = None, dataset_settings: DatasetSettings | None = None) -> Litestar:
    """App factory for `llmct service datasets`."""
    spec = ServiceSpec(
        name="datasets",
        description="public and private datasets, their files and dataset_info.json",
        route_handlers=[DatasetController, QuotaController, FilesController, UploadsController],
        context=datasets_context(dataset_settings or from_env(DatasetSettings)),
        on_startup=[_start],
        on_shutdown=[_stop],
        background=[Background(name="upload sweeper", run=_sweep_uploads_forever)],
        dependencies={"datasets": provide_part("datasets")},
        endpoints=ENDPOINTS,
    )
    return create_service_app(spec, settings or settings_from_env())
