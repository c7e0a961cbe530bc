"""A service's lifespan owns what runs beside its routes: a start step that fails unwinds everything started before
it, and closes the bus and the pool; a clean shutdown stops every part, in reverse order."""

import asyncio

import pytest
from litestar.testing import AsyncTestClient

from services.common.app import ServiceSpec, create_service_app
from services.common.lifecycle import Background, Context

pytestmark = pytest.mark.integration


class Record:
    """What the parts saw: the context, the loop's task, and the order things stopped in."""

    def __init__(self) -> None:
        self.context: Context | None = None
        self.loop: asyncio.Task | None = None
        self.events: list[str] = []

    async def loop_forever(self, context: Context) -> None:
        self.context, self.loop = context, asyncio.current_task()
        try:
            await asyncio.Event().wait()
        finally:
            self.events.append("loop ended")

    async def stop(self, name: str) -> None:
        self.events.append(f"{name} stopped")

    def part(self, name: str, **more) -> Background:
        async def stop(context: Context) -> None:
            await self.stop(name)

        return Background(name=name, stop=stop, **more)


async def _refuse(context: Context) -> None:
    await asyncio.sleep(0.05)  # the first part's loop is running by now
    raise RuntimeError("the second start step fails")


def _spec(*parts: Background) -> ServiceSpec:
    return ServiceSpec(name="lifecycle-test", description="a service made for this test", background=parts)


async def test_a_failed_start_unwinds_what_had_started_and_closes_the_bus_and_pool(settings):
    record = Record()
    parts = (record.part("first", run=record.loop_forever), record.part("second", start=_refuse))
    app = create_service_app(_spec(*parts), settings)
    with pytest.raises(BaseException) as raised:
        async with AsyncTestClient(app=app):
            pass
    assert "the second start step fails" in repr(raised.value)
    assert record.loop is not None and record.loop.done(), "the first part's loop still runs"
    assert record.events == ["loop ended", "first stopped"]  # the second never started, so never stops
    context = record.context
    assert context is not None and context.nc.is_closed and context.pool.is_closing()


async def test_a_shutdown_cancels_every_loop_then_stops_the_parts_in_reverse_order(settings):
    record = Record()
    parts = (record.part("first", run=record.loop_forever), record.part("second"))
    async with AsyncTestClient(app=create_service_app(_spec(*parts), settings)) as client:
        assert (await client.get("/health")).status_code == 200
        assert record.loop is not None and not record.loop.done()
    assert record.events == ["loop ended", "second stopped", "first stopped"]
    assert record.context is not None and record.context.nc.is_closed and record.context.pool.is_closing()
