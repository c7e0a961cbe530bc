"""A byte range of an object read out of a real nats-server (services/common/objects.read_range): the bytes asked,
exactly, from the chunks that hold them only, also when two writers' chunks interleave in the stream."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx
import nats
import pytest
from litestar import Litestar, Request, get
from litestar.response import Stream

from services.common import objects, ranges
from services.common.contracts import Buckets
from services.common.errors import EXCEPTION_HANDLERS, not_found
from tests.helpers import unique

pytestmark = pytest.mark.integration

MIB = objects.CHUNK_BYTES
SIZE = 20 * MIB + 4321  # 21 chunks, the last one short


@pytest.fixture
async def nc(nats_server):
    client = await nats.connect(nats_server.url)
    await objects.ensure_buckets(client.jetstream())
    yield client
    await client.close()


async def read(js, name: str, start: int, end: int) -> bytes:
    return b"".join([part async for part in objects.read_range(js, Buckets.OUTPUTS, name, start, end)])


def spans(size: int) -> list[tuple[int, int]]:
    return [
        (0, 0),
        (0, size - 1),
        (MIB - 1, MIB),  # across a chunk boundary
        (3 * MIB + 7, 9 * MIB + 11),
        (size - 1, size - 1),
        (size - 5000, size - 1),  # only in the short last chunk
        (19 * MIB, size - 1),
    ]


async def put(js, tmp_path, size: int) -> tuple[str, bytes]:
    body = os.urandom(size)
    name = Buckets.job_object(unique("job"), "model.safetensors")
    source = tmp_path / unique("file")
    source.write_bytes(body)
    await objects.put_file(js, Buckets.OUTPUTS, name, source)
    return name, body


async def test_a_range_is_the_bytes_asked_and_only_its_chunks_travel(nc, tmp_path):
    js = nc.jetstream()
    name, body = await put(js, tmp_path, SIZE)
    for start, end in spans(SIZE):
        assert await read(js, name, start, end) == body[start : end + 1], (start, end)

    before = nc.stats["in_bytes"]
    assert await read(js, name, SIZE - 10, SIZE - 1) == body[-10:]
    assert nc.stats["in_bytes"] - before < 64 * 1024, "only the short last chunk comes over the wire"
    before = nc.stats["in_bytes"]
    assert len(await read(js, name, 10 * MIB, 11 * MIB)) == MIB + 1
    assert nc.stats["in_bytes"] - before < 2 * MIB + 64 * 1024, "two chunks of 21"


async def test_ranges_of_objects_written_at_once_are_found_between_each_others_chunks(nc, tmp_path):
    js = nc.jetstream()
    (a, body_a), (b, body_b) = await asyncio.gather(put(js, tmp_path, 8 * MIB + 3), put(js, tmp_path, 8 * MIB + 5))
    for name, body in ((a, body_a), (b, body_b)):
        for start, end in ((0, 10), (5 * MIB + 1, 7 * MIB + 2), (len(body) - 2, len(body) - 1)):
            assert await read(js, name, start, end) == body[start : end + 1], (name, start, end)


async def test_a_range_outside_the_object_or_of_no_object_is_refused(nc, tmp_path):
    js = nc.jetstream()
    name, _ = await put(js, tmp_path, MIB)
    with pytest.raises(ValueError, match="not inside"):
        await read(js, name, MIB, MIB + 1)
    with pytest.raises(objects.ObjectMissing):
        await read(js, Buckets.job_object(unique("job"), "absent"), 0, 1)


def store_app(js) -> Litestar:
    """An owner's download route in `objects` mode: the object answered out of the store, whole or a range."""

    @get("/outputs/{name:path}")
    async def download(request: Request, name: str) -> Stream:
        try:
            return await ranges.ranged_object(request.headers, js, Buckets.OUTPUTS, name.lstrip("/"))
        except objects.ObjectMissing:
            raise not_found("file") from None

    return Litestar([download], exception_handlers=EXCEPTION_HANDLERS)


async def test_an_owner_answers_ranges_out_of_the_store(nc, tmp_path):
    js = nc.jetstream()
    name, body = await put(js, tmp_path, 3 * MIB + 11)
    transport = httpx.ASGITransport(app=store_app(js))
    async with httpx.AsyncClient(transport=transport, base_url="http://owner") as client:
        whole = await client.get(f"/outputs/{name}")
        assert whole.status_code == 200 and whole.content == body
        etag = whole.headers["etag"]
        assert etag == f'"sha256-{hashlib.sha256(body).hexdigest()}"'
        cut = 2 * MIB - 3
        rest = await client.get(f"/outputs/{name}", headers={"Range": f"bytes={cut}-", "If-Range": etag})
        assert rest.status_code == 206 and whole.content[:cut] + rest.content == body
        assert rest.headers["content-range"] == f"bytes {cut}-{len(body) - 1}/{len(body)}"
        past = await client.get(f"/outputs/{name}", headers={"Range": f"bytes={len(body)}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(body)}"
        stale = await client.get(f"/outputs/{name}", headers={"Range": f"bytes={cut}-", "If-Range": '"sha256-0"'})
        assert stale.status_code == 200 and stale.content == body
        assert (await client.get("/outputs/job-none/absent")).status_code == 404


async def test_a_range_of_an_object_replaced_since_it_was_announced_is_refused(nc, tmp_path):
    js = nc.jetstream()
    name, body = await put(js, tmp_path, MIB + 1)
    with pytest.raises(objects.ObjectCorrupt, match="replaced"):
        async for _ in objects.read_range(js, Buckets.OUTPUTS, name, 0, 9, sha256="0" * 64):
            pass
    got = [p async for p in objects.read_range(js, Buckets.OUTPUTS, name, 0, 9, hashlib.sha256(body).hexdigest())]
    assert b"".join(got) == body[:10]
