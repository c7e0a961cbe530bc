"""An object written into a bucket as its bytes arrive (services/common/object_writer.py) against a real
nats-server: read back by describe, fetch, read_range and nats-py's own ObjectStore; nothing left in the stream when
it is given up; the same bytes committed twice under one name stored once; memory flat for hundreds of MB."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from services.common import objects
from services.common.contracts import Buckets
from services.common.object_writer import ObjectWriter, chunk_count, sweep_orphans
from tests.helpers import eventually, unique

pytestmark = pytest.mark.integration

MIB = objects.CHUNK_BYTES
PIECE = 64 * 1024 + 7  # what a network read hands over: never a chunk's size, never aligned with one


async def written(js, body: bytes, bucket: str = Buckets.OUTPUTS) -> ObjectWriter:
    writer = ObjectWriter(js, bucket)
    for start in range(0, len(body), PIECE):
        await writer.write(body[start : start + PIECE])
    return writer


async def test_a_streamed_object_reads_back_like_any_other(js, tmp_path):
    body = os.urandom(5 * MIB + 12_345)
    name = Buckets.job_object(unique("job"), "model.safetensors")
    writer = await written(js, body)

    stored = await writer.commit(name)
    assert (stored.size, stored.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert await objects.describe(js, Buckets.OUTPUTS, name) == stored
    assert stored in await objects.list_objects(js, Buckets.OUTPUTS, name)
    target = tmp_path / "model.safetensors"
    assert await objects.fetch(js, Buckets.OUTPUTS, name, target) == stored and target.read_bytes() == body
    for start, end in ((0, 0), (MIB - 1, MIB), (2 * MIB + 5, 4 * MIB), (len(body) - 3, len(body) - 1)):
        part = b"".join([p async for p in objects.read_range(js, Buckets.OUTPUTS, name, start, end)])
        assert part == body[start : end + 1], (start, end)
    store = await js.object_store(Buckets.OUTPUTS)
    assert (await store.get(name)).data == body, "nats-py's own reader reads it too"
    assert await chunk_count(js, Buckets.OUTPUTS, writer.nuid) == 6

    empty = await (await written(js, b"")).commit(Buckets.job_object(unique("job"), "empty.json"))
    assert empty.size == 0 and empty.sha256 == hashlib.sha256(b"").hexdigest()
    assert (await objects.fetch(js, Buckets.OUTPUTS, empty.name, tmp_path / "empty.json")).size == 0


async def test_an_object_given_up_leaves_no_chunks(js):
    writer = await written(js, os.urandom(3 * MIB + 99))
    # The chunks went out as the bytes came, before any end of the object was known.
    await eventually(lambda: _has(js, Buckets.OUTPUTS, writer.nuid, 3))
    await writer.abort()
    assert await chunk_count(js, Buckets.OUTPUTS, writer.nuid) == 0
    await writer.abort()  # twice: nothing more to do

    half_sent = ObjectWriter(js, Buckets.OUTPUTS)
    await half_sent.write(os.urandom(MIB // 2))  # less than a chunk: nothing left the process yet
    await half_sent.abort()
    assert await chunk_count(js, Buckets.OUTPUTS, half_sent.nuid) == 0


async def test_the_same_bytes_twice_are_stored_once_and_other_bytes_replace(js):
    body = os.urandom(2 * MIB + 1)
    name = Buckets.dataset_object(hashlib.sha256(body).hexdigest())
    first, second = await written(js, body, Buckets.DATASETS), await written(js, body, Buckets.DATASETS)
    assert await first.commit(name) == await second.commit(name)
    assert (await objects.last_record(js, Buckets.DATASETS, name))[0].nuid == first.nuid  # pyright: ignore[reportOptionalMemberAccess]
    assert await chunk_count(js, Buckets.DATASETS, first.nuid) == 3
    assert await chunk_count(js, Buckets.DATASETS, second.nuid) == 0, "the second copy's chunks are purged"

    # Under a name that is not content-addressed, other bytes replace the object and its old chunks go.
    other = Buckets.job_object(unique("job"), "all_results.json")
    old = await written(js, b"old" * 500_000)
    await old.commit(other)
    new = await written(js, b"new" * 10)
    assert (await new.commit(other)).size == 30
    assert await chunk_count(js, Buckets.OUTPUTS, old.nuid) == 0
    assert (await objects.describe(js, Buckets.OUTPUTS, other)).sha256 == hashlib.sha256(b"new" * 10).hexdigest()
    record = objects.record_subject(Buckets.OUTPUTS, other)
    info = await js.stream_info(f"OBJ_{Buckets.OUTPUTS}", subjects_filter=record)
    assert (info.state.subjects or {}).get(record) == 1, "the record rolled the older one up"


async def test_writers_committing_one_name_at_once_leave_one_object(js):
    body = os.urandom(MIB + 3)
    name = Buckets.dataset_object(hashlib.sha256(body).hexdigest())
    writers = [await written(js, body, Buckets.DATASETS) for _ in range(4)]
    stored = await asyncio.gather(*(w.commit(name) for w in writers))
    assert len(set(stored)) == 1
    kept = [w for w in writers if await chunk_count(js, Buckets.DATASETS, w.nuid)]
    assert len(kept) == 1, "every other writer's chunks are purged"
    assert (await objects.last_record(js, Buckets.DATASETS, name))[0].nuid == kept[0].nuid  # pyright: ignore[reportOptionalMemberAccess]


async def _has(js, bucket: str, nuid: str, count: int) -> bool:
    return await chunk_count(js, bucket, nuid) == count


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


async def test_memory_stays_flat_whatever_the_size(js):
    piece = os.urandom(PIECE)
    total = 300 * MIB
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak RSS starts again from here
    before = peak_rss()
    started = time.perf_counter()
    writer = ObjectWriter(js, Buckets.OUTPUTS)
    for _ in range(total // PIECE):
        await writer.write(piece)
    stored = await writer.commit(Buckets.job_object(unique("job"), "big.bin"))
    grown = peak_rss() - before
    assert stored.size == (total // PIECE) * PIECE
    assert grown < 48 * MIB, f"peak RSS grew by {grown / MIB:.0f} MiB writing {total / MIB:.0f} MiB"
    print(f"{total / MIB / (time.perf_counter() - started):.0f} MiB/s, peak RSS +{grown / MIB:.1f} MiB")
    await (await js.object_store(Buckets.OUTPUTS)).delete(stored.name)
    assert await chunk_count(js, Buckets.OUTPUTS, writer.nuid) == 0


async def test_what_a_dead_writer_left_is_swept_and_never_named(js):
    kept = await written(js, os.urandom(MIB + 1))
    await kept.commit(Buckets.job_object(unique("job"), "kept.bin"))
    dead = await written(js, os.urandom(2 * MIB + 1))  # its process died before commit or abort
    await dead.finish()
    live = await written(js, os.urandom(MIB + 1))
    await live.finish()

    await asyncio.sleep(1.5)
    fresh = await written(js, os.urandom(MIB + 1))  # still writing: its last chunk is newer than the cut-off
    await fresh.finish()
    assert await sweep_orphans(js, Buckets.OUTPUTS, older_than_s=1.0) >= 2
    assert await chunk_count(js, Buckets.OUTPUTS, dead.nuid) == 0
    assert await chunk_count(js, Buckets.OUTPUTS, kept.nuid) == 2, "a named object's chunks stay"
    assert await chunk_count(js, Buckets.OUTPUTS, fresh.nuid) == 2, "a writer at work keeps its chunks"

    # A writer whose chunks were swept (it waited too long) names nothing: no object without its bytes.
    name = Buckets.job_object(unique("job"), "late.bin")
    with pytest.raises(objects.ObjectCorrupt, match="went missing"):
        await live.commit(name)
    with pytest.raises(objects.ObjectMissing):
        await objects.describe(js, Buckets.OUTPUTS, name)
    await fresh.abort()
