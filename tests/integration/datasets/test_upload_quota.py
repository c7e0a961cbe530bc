"""A user's datasets have a quota, named with the use when an upload does not fit; unfinished uploads are swept
while the service runs, not only when it starts."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import pytest
from litestar.testing import AsyncTestClient

from services.common.errors import ApiError
from services.common.security import Principal
from services.datasets import ingest
from services.datasets.app import create_app
from services.datasets.layout import DataLayout
from services.datasets.service import Context
from services.datasets.settings import DatasetSettings
from tests.integration.datasets.conftest import MAX_BYTES
from tests.integration.datasets.helpers import as_jsonl, as_tar, assert_error, leftovers, unique

pytestmark = pytest.mark.integration

QUOTA = 4000
SWEEP_S = 0.2
MAX_AGE_S = 3600
# About 2,500 bytes: one fits in the quota, two do not.
ROWS = as_jsonl([{"instruction": f"question {i:03d} " + "x" * 60, "output": "y"} for i in range(22)])


@pytest.fixture(scope="module")
async def client(settings):
    dataset_settings = DatasetSettings(
        max_bytes=MAX_BYTES, quota_bytes=QUOTA, upload_sweep_s=SWEEP_S, upload_max_age_s=MAX_AGE_S
    )
    async with AsyncTestClient(app=create_app(settings, dataset_settings)) as client:
        yield client


def _listed(response) -> list[str]:
    return [item["name"] for item in response.json()["items"]]


async def test_an_upload_beyond_the_quota_is_413_naming_quota_and_use(alice, data_dir):
    assert QUOTA // 2 < len(ROWS) < QUOTA
    kept = await alice.created(unique(), "alpaca", "a.jsonl", ROWS)
    refused = unique()
    error = assert_error(
        await alice.upload(refused, "alpaca", [("b.jsonl", ROWS)]), 413, "dataset_quota_exceeded", "file"
    )
    assert f"your datasets use {len(ROWS):,} of your {QUOTA:,} bytes" in error["message"], error
    assert "LLMCT_DATASET_QUOTA_BYTES" in error["message"]
    assert leftovers(data_dir) == [] and _listed(await alice.get(q=refused)) == []
    mine = (await alice.get("/quotas/me")).json()
    assert mine == {
        "user_id": alice.user_id,
        "max_bytes": QUOTA,
        "custom": {"max_bytes": None},
        "used_bytes": len(ROWS),
    }
    # An archive counts by what it unpacks to.
    packed = as_tar({"part.jsonl": ROWS})
    assert len(packed) < QUOTA - kept["size_bytes"]
    error = assert_error(
        await alice.upload(unique(), "alpaca", [("b.tar.gz", packed)]), 413, "dataset_quota_exceeded", "file"
    )
    assert "unpacked content" in error["message"]
    # Room comes back with a delete.
    assert (await alice.delete(kept["id"])).status_code == 204
    await alice.created(unique(), "alpaca", "b.jsonl", ROWS)


async def test_admins_set_a_users_quota(admin, alice, bob):
    await alice.created(unique(), "alpaca", "a.jsonl", ROWS)
    assert_error(await alice.upload(unique(), "alpaca", [("b.jsonl", ROWS)]), 413, "dataset_quota_exceeded")
    raised = await admin.client.put(
        f"/api/datasets/quotas/{alice.user_id}", json={"max_bytes": 3 * len(ROWS)}, headers=admin.headers
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["max_bytes"] == 3 * len(ROWS) and raised.json()["custom"] == {"max_bytes": 3 * len(ROWS)}
    await alice.created(unique(), "alpaca", "b.jsonl", ROWS)
    assert (await admin.get(f"/quotas/{alice.user_id}")).json()["used_bytes"] == 2 * len(ROWS)
    # Nobody else's quota moved; users cannot set their own; unknown users are 404.
    assert (await bob.get("/quotas/me")).json()["max_bytes"] == QUOTA
    own = await alice.client.put(
        f"/api/datasets/quotas/{alice.user_id}", json={"max_bytes": 10**12}, headers=alice.headers
    )
    assert_error(own, 403)
    assert_error(await admin.client.put("/api/datasets/quotas/usr_nobody", json={}, headers=admin.headers), 404)
    bad = await admin.client.put(f"/api/datasets/quotas/{bob.user_id}", json={"max_bytes": -1}, headers=admin.headers)
    assert_error(bad, 422, "invalid_field")
    # Null is the default again.
    reset = await admin.client.put(
        f"/api/datasets/quotas/{alice.user_id}", json={"max_bytes": None}, headers=admin.headers
    )
    assert reset.json()["max_bytes"] == QUOTA
    assert_error(await alice.upload(unique(), "alpaca", [("c.jsonl", b"")]), 413, "dataset_quota_exceeded")


def _multipart(name: str, content: bytes) -> bytes:
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in (("name", name), ("format", "alpaca"))
    ]
    file_head = '--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
    return "".join([*parts, file_head]).encode() + content + b"\r\n--b--\r\n"


async def test_two_uploads_at_once_cannot_both_take_the_last_room(bob, pool, data_dir):
    """Both are admitted while the room is free, and the store decides. The test client runs one request at a
    time, so this calls the service's upload twice at once, each body held halfway until both are admitted."""
    ctx = Context(
        pool=pool, layout=DataLayout(data_dir), settings=DatasetSettings(max_bytes=MAX_BYTES, quota_bytes=QUOTA)
    )
    caller = Principal(user_id=bob.user_id, username="bob", role="user", via="token")
    both_admitted = asyncio.Barrier(2)

    async def body(name: str):
        whole = _multipart(name, ROWS)
        yield whole[:200]
        await both_admitted.wait()
        yield whole[200:]
        yield b""  # the end of the body, as the server signals it

    results = await asyncio.gather(
        *(ingest.upload(ctx, caller, body(unique()), "multipart/form-data; boundary=b", None) for _ in range(2)),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ApiError", "Dataset"], results
    refused = next(r for r in results if isinstance(r, ApiError))
    assert (refused.status, refused.code) == (413, "dataset_quota_exceeded")
    assert (await bob.get("/quotas/me")).json()["used_bytes"] == len(ROWS)
    assert leftovers(data_dir) == []


def _partial_upload(data_dir, age_s: float):
    """An upload folder as a crashed or vanished upload leaves it, last written `age_s` ago."""
    folder = data_dir / ".incoming" / secrets.token_hex(12)
    folder.mkdir(parents=True)
    (folder / "received-00000").write_bytes(b'{"instruction": "cut off')
    then = time.time() - age_s
    for path in (folder / "received-00000", folder):
        os.utime(path, (then, then))
    return folder


async def test_an_old_partial_upload_is_swept_while_the_service_runs(client, data_dir):
    """Made after start-up, so only the periodic sweep can find it."""
    old = _partial_upload(data_dir, MAX_AGE_S + 60)
    live = _partial_upload(data_dir, 0)  # an upload still being received: written to just now
    lagging = _partial_upload(data_dir, MAX_AGE_S + 60)
    (lagging / "received-00001").write_bytes(b"still arriving")  # its folder is old, its newest file is not
    try:
        deadline = time.monotonic() + 10
        while old.exists() and time.monotonic() < deadline:
            await asyncio.sleep(SWEEP_S)
        assert not old.exists(), "the partial upload was not swept"
        await asyncio.sleep(3 * SWEEP_S)
        assert live.exists() and lagging.exists()
    finally:
        for folder in (live, lagging):
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
    assert leftovers(data_dir) == []


async def test_an_upload_swept_while_it_stalled_is_told_so(alice, pool, data_dir):
    """A client that stalls past the max age loses its upload to the sweep: when it sends again, a 408, not a 500."""
    ctx = Context(pool=pool, layout=DataLayout(data_dir), settings=DatasetSettings(max_bytes=MAX_BYTES))
    caller = Principal(user_id=alice.user_id, username="alice", role="user", via="token")

    async def stalling_body():
        whole = _multipart(unique(), ROWS)
        yield whole[:400]  # the text parts and the start of the file
        assert ctx.layout.sweep_incoming(older_than_s=-1) == 1  # the sweep, as if it stalled past the max age
        yield whole[400:]
        yield b""

    with pytest.raises(ApiError) as refused:
        await ingest.upload(ctx, caller, stalling_body(), "multipart/form-data; boundary=b", None)
    assert (refused.value.status, refused.value.code, refused.value.field) == (408, "upload_expired", "file")
    assert leftovers(data_dir) == []
