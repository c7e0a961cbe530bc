"""Uploads in `objects` storage mode stream into the datasets bucket as they arrive (issue 15, item 4): once the
upload answers, its file is stored by its sha256 and a job's first use copies nothing; a refused upload, one whose
client went away and one cancelled leave nothing in the store; the same file uploaded twice is stored once; an
archive's files are left to their first job, as before; chunks a dead service streamed are swept."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os

import nats
import pytest
from litestar.testing import AsyncTestClient

from llmct.embedded import NatsServer, free_port
from services.common import objects
from services.common.contracts import Buckets
from services.common.errors import ApiError
from services.common.inputs import InputStore, Wanted
from services.common.object_writer import ObjectWriter, chunk_count
from services.common.security import Principal, new_id
from services.datasets import ingest, service
from services.datasets.app import create_app
from services.datasets.checks import CheckPool
from services.datasets.layout import DataLayout
from services.datasets.service import Context
from services.datasets.settings import DatasetSettings
from services.scheduler.jobs.access import usable_datasets
from tests.helpers import eventually
from tests.integration.datasets.helpers import Api, as_tar, leftovers, make_user, unique

pytestmark = pytest.mark.integration

BOUNDARY = "objectsboundary"
ROW = json.dumps({"instruction": "Add the two numbers.", "input": "24 and 48", "output": "72"}).encode() + b"\n"
CONTENT = ROW * (6 * objects.CHUNK_BYTES // len(ROW))  # six chunks' worth, the last one short
STREAM = f"OBJ_{Buckets.DATASETS}"


@pytest.fixture
async def ctx(pool, settings, js):
    settings.storage.data.mkdir(parents=True, exist_ok=True)
    context = Context(
        pool=pool,
        layout=DataLayout(settings.storage.data),
        settings=DatasetSettings(max_bytes=1 << 30),
        checks=CheckPool(1),
        inputs=InputStore(js, settings.storage.base),
    )
    yield context
    context.checks.close()


@pytest.fixture
async def caller(pool, settings) -> Principal:
    user_id, _ = await make_user(pool, settings)
    return Principal(user_id=user_id, username="alice", role="user", via="token")


def body(
    content: bytes,
    name: str,
    filename: str = "rows.jsonl",
    chunk: int = 256 << 10,
    cut_at: int | None = None,
    stall_at: int | None = None,
):
    """A multipart body streamed in chunks; `cut_at`: the client goes away after that many bytes of it;
    `stall_at`: it sends nothing more after that many (until the upload is cancelled)."""
    fields = {"name": name, "format": "alpaca"}
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
    )
    head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'
    whole = head.encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()

    async def stream():
        for start in range(0, len(whole), chunk):
            if cut_at is not None and start >= cut_at:
                raise ConnectionResetError("the client went away")
            if stall_at is not None and start >= stall_at:
                await asyncio.Event().wait()
            yield whole[start : start + chunk]
            await asyncio.sleep(0)  # as a network read would
        yield b""

    return stream()


async def upload(ctx, caller, content: bytes, **options):
    stream = body(content, unique(), **options)
    return await ingest.upload(ctx, caller, stream, f"multipart/form-data; boundary={BOUNDARY}", len(content))


async def held(js) -> tuple[int, int]:
    """(messages the datasets bucket's stream holds, its last sequence)."""
    state = (await js.stream_info(STREAM)).state
    return state.messages, state.last_seq


async def test_an_upload_is_stored_when_it_answers(ctx, caller, js):
    content = CONTENT + unique().encode() + b'"\n'  # not valid JSON on its last line: refused below
    good = CONTENT + json.dumps({"instruction": unique(), "output": "x"}).encode() + b"\n"
    dataset = await upload(ctx, caller, good)
    sha256 = hashlib.sha256(good).hexdigest()
    assert dataset.checksum == sha256
    stored = await objects.describe(js, Buckets.DATASETS, Buckets.dataset_object(sha256))
    assert (stored.size, stored.sha256) == (len(good), sha256), "in the store before the upload answered"

    # Its first job finds it stored: the file is not hashed again (the upload told its hash: other bytes of the
    # same size and time are not seen), and nothing more goes into the stream.
    path = ctx.layout.root / dataset.file_name
    assert ctx.inputs is not None
    stat = path.stat()
    path.write_bytes(b"x" * len(good))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert await ctx.inputs.sha256(path) == sha256
    path.write_bytes(good)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = await held(js)
    (found,) = await ctx.inputs.inputs([Wanted(Buckets.DATASETS, path)], "dataset")
    assert (found.name, found.sha256, found.size) == (stored.name, sha256, len(good))
    assert await held(js) == before

    # A refused upload streamed its chunks and purged them: the stream holds what it held.
    with pytest.raises(ApiError) as refused:
        await upload(ctx, caller, content)
    assert refused.value.code == "invalid_dataset"
    messages, last_seq = await held(js)
    assert messages == before[0] and last_seq >= before[1] + 6, "streamed as it came, then purged"
    assert leftovers(ctx.layout.root) == []


async def test_a_client_that_goes_away_or_a_cancelled_upload_leaves_no_chunks(ctx, caller, js):
    before = await held(js)
    with pytest.raises(ConnectionResetError):
        await upload(ctx, caller, CONTENT, cut_at=4 * objects.CHUNK_BYTES)
    messages, last_seq = await held(js)
    assert messages == before[0] and last_seq > before[1] + 2

    task = asyncio.create_task(upload(ctx, caller, CONTENT, stall_at=4 * objects.CHUNK_BYTES))
    await eventually(lambda: _streamed_since(js, last_seq))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await held(js))[0] == before[0]
    assert leftovers(ctx.layout.root) == []


async def _streamed_since(js, last_seq: int) -> bool:
    return (await held(js))[1] > last_seq + 2


async def test_the_same_file_twice_is_stored_once(ctx, caller, js):
    content = CONTENT + json.dumps({"instruction": unique(), "output": "y"}).encode() + b"\n"
    await upload(ctx, caller, content)
    name = Buckets.dataset_object(hashlib.sha256(content).hexdigest())
    first, _ = await objects.last_record(js, Buckets.DATASETS, name)
    assert first is not None
    after_first = (await held(js))[0]
    await upload(ctx, caller, content)
    assert (await held(js))[0] == after_first, "the second copy's chunks are purged, its record never written"
    assert (await objects.describe(js, Buckets.DATASETS, name)).size == len(content)


async def test_an_archives_files_are_left_to_their_first_job(ctx, caller, js):
    inner = ROW * 1000 + json.dumps({"instruction": unique(), "output": "z"}).encode() + b"\n"
    before = await held(js)
    await upload(ctx, caller, as_tar({"a.jsonl": inner}), filename="rows.tar")
    assert await held(js) == before
    with pytest.raises(objects.ObjectMissing):
        await objects.describe(js, Buckets.DATASETS, Buckets.dataset_object(hashlib.sha256(inner).hexdigest()))


async def test_a_job_submitted_after_an_upload_gets_its_inputs_at_once(settings, pool, bus, js):
    """The service as it runs in objects mode: upload over HTTP, then ask it over NATS as the scheduler does."""
    objects_mode = dataclasses.replace(settings, storage_mode="objects")
    async with AsyncTestClient(app=create_app(objects_mode, DatasetSettings(max_bytes=1 << 30))) as client:
        user_id, headers = await make_user(pool, settings)
        content = CONTENT + json.dumps({"instruction": unique(), "output": "w"}).encode() + b"\n"
        name = unique("streamed")
        await Api(client, headers).created(name, "alpaca", "rows.jsonl", content)
        before = await held(js)
        principal = Principal(user_id=user_id, username="u", role="user", via="token")
        answer = await usable_datasets(bus, principal, [name], "sft")
    (found,) = answer.inputs
    assert found.sha256 == hashlib.sha256(content).hexdigest() and found.size == len(content)
    assert await held(js) == before, "no copy on the job's first use (and so no 503 while one runs)"


async def test_a_deleted_datasets_object_goes_unless_other_bytes_or_a_job_need_it(ctx, caller, pool, js):
    content = CONTENT + json.dumps({"instruction": unique(), "output": "d"}).encode() + b"\n"
    name = Buckets.dataset_object(hashlib.sha256(content).hexdigest())
    first, second = await upload(ctx, caller, content), await upload(ctx, caller, content)
    await service.delete_dataset(ctx, caller, first.id)
    assert await objects.describe(js, Buckets.DATASETS, name), "another dataset has the same bytes"

    job_id = new_id("job")
    await pool.execute(  # a job the scheduler sent with the object among its fetches, not finished
        "INSERT INTO jobs (id, owner_id, kind, state, request, config, config_yaml, fetches) "
        "VALUES ($1, $2, 'train', 'running', $3, $4, '', $5)",
        job_id,
        caller.user_id,
        {},
        {},
        {"inputs": [{"bucket": Buckets.DATASETS, "name": name, "path": "data/x.jsonl"}], "files": []},
    )
    third = await upload(ctx, caller, content)
    await service.delete_dataset(ctx, caller, second.id)
    await service.delete_dataset(ctx, caller, third.id)
    assert await objects.describe(js, Buckets.DATASETS, name), "a running job brings it"

    await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", job_id)
    fourth = await upload(ctx, caller, content)
    before = (await held(js))[0]
    await service.delete_dataset(ctx, caller, fourth.id)
    with pytest.raises(objects.ObjectMissing):
        await objects.describe(js, Buckets.DATASETS, name)
    assert (await held(js))[0] == before - 6, "its six chunks are purged (its record says deleted)"


async def test_an_upload_goes_on_when_the_store_fails(ctx, caller, tmp_path):
    """A NATS with no buckets (chunks have no stream to go to): the file is still received, checked and kept, its
    sha256 from the file itself; its first job copies it as for an archive's."""
    assert ctx.inputs is not None
    server = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=tmp_path / "nats")
    server.start()
    try:
        nc = await nats.connect(server.url)
        failing = dataclasses.replace(ctx, inputs=InputStore(nc.jetstream(), ctx.inputs.base))
        content = CONTENT + json.dumps({"instruction": unique(), "output": "v"}).encode() + b"\n"
        dataset = await upload(failing, caller, content)
        assert dataset.checksum == hashlib.sha256(content).hexdigest() and dataset.rows
        await nc.close()
    finally:
        server.stop()


async def test_chunks_a_dead_service_streamed_are_swept_when_the_next_one_starts(settings, js):
    dead = ObjectWriter(js, Buckets.DATASETS)  # an upload's, in a service that died before naming it
    await dead.write(CONTENT)
    await dead.finish()
    await asyncio.sleep(1.2)
    objects_mode = dataclasses.replace(settings, storage_mode="objects")
    dataset_settings = DatasetSettings(upload_max_age_s=1.0)
    async with AsyncTestClient(app=create_app(objects_mode, dataset_settings)):
        assert await chunk_count(js, Buckets.DATASETS, dead.nuid) == 0
