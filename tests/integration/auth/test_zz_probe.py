import asyncio
import pytest
from services.auth import service
from services.common.errors import ApiError
from services.common.store import create_pool
pytestmark = pytest.mark.integration

async def test_probe(settings):
    pool = await create_pool(settings.database_url)
    async def one():
        try:
            await service.login(pool, settings, username="ghost-race", password="x", address="10.1.1.1")
        except ApiError as e:
            return e.status
    rs = await asyncio.gather(*[one() for _ in range(15)])
    open("/tmp/probe/out.txt","a").write(f"## direct concurrent {rs}\n")
    await pool.close()
