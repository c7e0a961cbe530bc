"""The Postgres store: an asyncpg pool, migrations and the check that they are applied."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class StoreNotMigrated(RuntimeError):
    """The database is not at the newest migration."""


def alembic_config(database_url: str):
    """An alembic Config for our one migration history."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    return config


def sqlalchemy_url(database_url: str) -> str:
    """postgresql://... as SQLAlchemy's asyncpg dialect spells it."""
    scheme, _, rest = database_url.partition("://")
    return f"postgresql+asyncpg://{rest}" if scheme in ("postgresql", "postgres") else database_url


def head_revision() -> str:
    """The newest revision in the migration history."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql://x")).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def migrate(database_url: str) -> None:
    """Apply every pending migration (blocking; never call inside a running event loop)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary-format JSONB codec: the text format breaks COPY.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + json.dumps(v).encode(),
        decoder=lambda b: json.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )


class PooledConnection(asyncpg.Connection):
    """A pool's connection, given back without asyncpg's reset statement (`pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`): a round trip to Postgres on every release, a few per job, for session state the
    platform never leaves behind. Its advisory locks are all transaction-scoped (`pg_advisory_xact_lock`), its
    cursors live in transactions, it neither LISTENs nor SETs a session variable (tests/unit/test_pool_reset.py
    keeps it so). A connection given back inside a transaction is still rolled back: asyncpg does that apart."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(database_url: str, *, attempts: int = 30) -> asyncpg.Pool:
    """Open a pool, waiting a while for Postgres to come up."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncpg.create_pool(
                database_url,
                min_size=1,
                max_size=10,
                init=_init_connection,
                command_timeout=30,
                connection_class=PooledConnection,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            if attempt == attempts:
                raise
            log.warning("postgres not ready (%s), retrying", exc)
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


async def check_migrated(pool: asyncpg.Pool) -> None:
    """Refuse to run on a database that is not at the newest migration."""
    head = head_revision()
    try:
        current = await pool.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        current = None
    if current != head:
        raise StoreNotMigrated(
            f"database is at migration {current or 'none'}, this code needs {head}: run `llmct migrate`"
        )


async def store_is_healthy(pool: asyncpg.Pool | None) -> str | None:
    """None when Postgres answers, else what is wrong."""
    if pool is None:
        return "no pool"
    try:
        async with asyncio.timeout(2):
            await pool.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return f"query failed: {exc.__class__.__name__}"
    return None
