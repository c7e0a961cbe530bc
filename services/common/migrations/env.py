"""Alembic environment: one history for the whole store, run through asyncpg."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def _online_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # services.common.store.alembic_config always sets it
        raise RuntimeError("the alembic config has no sqlalchemy.url to migrate")
    return url


async def _run_online() -> None:
    engine = create_async_engine(_online_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
