"""Downloads through the gateway resume (services/common/ranges.py): a log, a dataset's file, one file of a job's
outputs and the zip of them all, cut after some bytes, are finished with a Range request and the joined bytes are
the file; a range past the end is 416, a stale If-Range gets the whole file, another user gets 404 and a path out of
the job's folder is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import httpx
import pytest

from services.common.security import new_id
from services.common.store import create_pool
from services.scheduler.jobs import store
from tests.helpers import unique

from .helpers import login

pytestmark = pytest.mark.e2e

SIZE = 3 * 1024 * 1024 + 17


async def cut_then_resumed(gw: httpx.AsyncClient, url: str, headers: dict, cut_at: int) -> tuple[bytes, httpx.Response]:
    """The body of `url`, read until `cut_at` bytes and dropped (a broken download), then the rest with a Range
    conditioned on the ETag: the joined bytes, and the resumed answer."""
    got = b""
    async with gw.stream("GET", url, headers=headers) as first:
        assert first.status_code == 200, await first.aread()
        assert first.headers["accept-ranges"] == "bytes"
        etag, total = first.headers["etag"], int(first.headers["content-length"])
        async for chunk in first.aiter_raw():
            got += chunk
            if len(got) >= cut_at:
                break  # the connection goes, as a broken download's does
    got = got[:cut_at]
    rest = await gw.get(url, headers={**headers, "Range": f"bytes={cut_at}-", "If-Range": etag})
    assert rest.status_code == 206, rest.text
    assert rest.headers["content-range"] == f"bytes {cut_at}-{total - 1}/{total}"
    assert int(rest.headers["content-length"]) == total - cut_at and rest.headers["etag"] == etag
    return got + rest.content, rest


async def user_id(gw, headers) -> str:
    return (await gw.get("/api/auth/me", headers=headers)).json()["id"]


async def finished_job(settings, owner_id: str, output_dir) -> str:
    """A succeeded job of `owner_id` writing into `output_dir`, as the scheduler would have left it."""
    job_id = new_id("job")
    pool = await create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await store.insert_job(
                conn,
                job_id=job_id,
                owner_id=owner_id,
                kind="train",
                priority=0,
                gpu_count=0,
                request={"base_model": "none"},
                config={},
                config_yaml="stage: sft\n",
                stages=[{"name": "train", "command": ["true"], "config_yaml": "stage: sft\n"}],
                output_dir=str(output_dir),
                estimate={"per_gpu_mb": 0},
            )
            await conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1", job_id)
    finally:
        await pool.close()
    return job_id


def jsonl_rows(count: int, prompt: str) -> bytes:
    rows = ({"instruction": f"{prompt} {i} " + "x" * 200, "output": f"{i}"} for i in range(count))
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_log_and_an_output_file_resume_after_a_cut(gw, stack, settings, tmp_path):
    owner = await login(gw, stack.invite_code, unique("resumer"))
    other = await login(gw, stack.invite_code, unique("stranger"))
    job_id = await finished_job(settings, await user_id(gw, owner), tmp_path / "out")
    weights = os.urandom(SIZE)
    (tmp_path / "out" / "checkpoint-6").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint-6" / "adapter_model.safetensors").write_bytes(weights)
    (tmp_path / "out" / "passwd").symlink_to("/etc/passwd")
    log_text = b"".join(b"step %d loss 0.%d\n" % (i, i) for i in range(200_000))
    (settings.storage.logs / f"{job_id}.log").write_bytes(log_text)

    log_url, file_url = (
        f"/api/jobs/{job_id}/log",
        f"/api/jobs/{job_id}/artifacts/checkpoint-6/adapter_model.safetensors",
    )
    joined, _ = await cut_then_resumed(gw, log_url, owner, cut_at=1_000_003)
    assert sha(joined) == sha(log_text)
    joined, resumed = await cut_then_resumed(gw, file_url, owner, cut_at=SIZE // 2 + 1)
    assert sha(joined) == sha(weights)
    assert resumed.headers["content-type"] == "application/octet-stream"
    assert 'filename="adapter_model.safetensors"' in resumed.headers["content-disposition"]

    zip_url = f"/api/jobs/{job_id}/artifacts"
    whole_zip = (await gw.get(zip_url, headers=owner)).content
    joined, _ = await cut_then_resumed(gw, zip_url, owner, cut_at=len(whole_zip) // 2 + 3)
    assert sha(joined) == sha(whole_zip)
    archive = zipfile.ZipFile(io.BytesIO(joined))
    assert archive.read(f"{job_id}/checkpoint-6/adapter_model.safetensors") == weights and archive.testzip() is None

    tail = await gw.get(file_url, headers={**owner, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == weights[-100:]
    past = await gw.get(file_url, headers={**owner, "Range": f"bytes={SIZE}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{SIZE}"
    assert past.json()["error"]["code"] == "range_not_satisfiable"

    etag = (await gw.get(file_url, headers={**owner, "Range": "bytes=0-0"})).headers["etag"]
    (tmp_path / "out" / "checkpoint-6" / "adapter_model.safetensors").write_bytes(weights[::-1])  # changed since
    stale = await gw.get(file_url, headers={**owner, "Range": "bytes=100-", "If-Range": etag})
    assert stale.status_code == 200 and stale.content == weights[::-1] and stale.headers["etag"] != etag

    for url in (log_url, file_url, zip_url):
        assert (await gw.get(url, headers=other)).status_code == 404
        assert (await gw.get(url, headers={**other, "Range": "bytes=0-"})).status_code == 404
    (tmp_path / "out" / "模型.bin").write_bytes(b"named in Chinese")
    named = await gw.get(f"/api/jobs/{job_id}/artifacts/%E6%A8%A1%E5%9E%8B.bin", headers=owner)
    assert named.status_code == 200 and named.content == b"named in Chinese"
    assert named.headers["content-disposition"] == "attachment; filename*=utf-8''%E6%A8%A1%E5%9E%8B.bin"
    link = await gw.get(f"/api/jobs/{job_id}/artifacts/passwd", headers=owner)
    assert link.status_code == 404 and b"root:" not in link.content
    for escape in ("..%2F..%2Fetc%2Fpasswd", "checkpoint-6%2F..%2F..%2Fpasswd", "%2E%2E/%2E%2E/etc/passwd"):
        refused = await gw.get(f"/api/jobs/{job_id}/artifacts/{escape}", headers=owner)
        assert refused.status_code in (400, 404) and b"root:" not in refused.content, escape


async def test_a_dataset_file_resumes_after_a_cut(gw, stack):
    owner = await login(gw, stack.invite_code, unique("dataset-resumer"))
    other = await login(gw, stack.invite_code, unique("dataset-stranger"))
    content = jsonl_rows(5000, "say")
    r = await gw.post(
        "/api/datasets/upload",
        headers=owner,
        data={"name": unique("resumable"), "format": "alpaca"},
        files={"file": ("rows.jsonl", content, "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    url = f"/api/datasets/{r.json()['id']}/download"

    joined, _ = await cut_then_resumed(gw, url, owner, cut_at=len(content) // 3)
    assert sha(joined) == sha(content)
    past = await gw.get(url, headers={**owner, "Range": f"bytes={len(content) + 5}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(content)}"
    several = await gw.get(url, headers={**owner, "Range": "bytes=0-9,20-29"})
    assert several.status_code == 200 and several.content == content  # several ranges: the whole file
    assert (await gw.get(url, headers={**other, "Range": "bytes=0-"})).status_code == 404


async def test_a_dataset_of_several_files_comes_as_a_zip_that_resumes(gw, stack):
    owner = await login(gw, stack.invite_code, unique("shards-resumer"))
    shards = {f"part{i}.jsonl": jsonl_rows(2000, f"shard {i}") for i in range(3)}
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in shards.items():
            archive.writestr(name, content)
    r = await gw.post(
        "/api/datasets/upload",
        headers=owner,
        data={"name": unique("sharded"), "format": "alpaca"},
        files={"file": ("shards.zip", packed.getvalue(), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    url = f"/api/datasets/{r.json()['id']}/download"
    whole = await gw.get(url, headers=owner)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/zip"
    joined, _ = await cut_then_resumed(gw, url, owner, cut_at=len(whole.content) // 2)
    assert sha(joined) == sha(whole.content)
    got = zipfile.ZipFile(io.BytesIO(joined))
    assert got.testzip() is None
    assert sorted(got.read(n) for n in got.namelist()) == sorted(shards.values())
