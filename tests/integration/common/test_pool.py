"""The platform's pool against a real Postgres: a connection goes back without the reset statement, yet one given
back inside a transaction is rolled back, and a transaction-scoped advisory lock ends with its transaction."""

import pytest

from services.common.store import PooledConnection, create_pool

pytestmark = pytest.mark.integration


async def test_a_released_connection_keeps_nothing_of_its_transaction(settings):
    pool = await create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn:
            assert isinstance(conn._con, PooledConnection)  # the proxy's connection: the class the pool was given
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS pool_probe (x int)")
            transaction = conn.transaction()
            await transaction.start()  # not managed: given back open
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(424242)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
            async with pool.acquire() as other:
                assert await other.fetchval("SELECT pg_try_advisory_xact_lock(424242)")
    finally:
        await pool.close()
