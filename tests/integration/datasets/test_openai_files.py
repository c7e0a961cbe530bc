"""OpenAI's Files and Uploads APIs on the real datasets service: a file is a private dataset named by its id, its
bytes come back as sent, a bad line is refused naming it, another user's file is a 404, uploads join their parts
in order, and every error is in OpenAI's shape."""

from __future__ import annotations

import hashlib
import json

import pytest
from litestar.testing import AsyncTestClient

from services.auth.store import insert_api_key
from services.common.security import new_api_key, new_id
from services.datasets.app import create_app
from services.datasets.layout import DataLayout
from services.datasets.openai_uploads import expire_uploads
from services.datasets.service import Context
from services.datasets.settings import DatasetSettings
from tests.integration.datasets.helpers import info_json, leftovers, unique

pytestmark = pytest.mark.integration

CHAT = [
    {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
    for i in range(1, 4)
]
PREFERENCE = [
    {
        "input": {"messages": [{"role": "user", "content": f"pick {i}"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    for i in range(1, 3)
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def openai_error(response, status: int, code: str | None = None, param: str | None = ...) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}} and nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["message"] and error["type"] == (
        "invalid_request_error" if status in (400, 404, 409) else error["type"]
    )
    if code is not None:
        assert error["code"] == code, error
    if param is not ...:
        assert error["param"] == param, error
    return error


async def upload(api, content: bytes, filename: str = "train.jsonl", purpose: str | None = "fine-tune"):
    data = {"purpose": purpose} if purpose is not None else {}
    return await api.client.post(
        "/v1/files", data=data, files={"file": (filename, content, "application/jsonl")}, headers=api.headers
    )


async def uploaded(api, content: bytes, filename: str = "train.jsonl") -> dict:
    response = await upload(api, content, filename)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_chat_file_is_a_private_dataset_named_by_its_id(alice, data_dir):
    content = jsonl(CHAT)
    file = await uploaded(alice, content)
    assert file["id"].startswith("file-") and len(file["id"]) == 5 + 24
    assert file["object"] == "file" and file["bytes"] == len(content) and file["filename"] == "train.jsonl"
    assert file["purpose"] == "fine-tune" and file["status"] == "processed" and file["status_details"] is None
    assert isinstance(file["created_at"], int)
    page = (await alice.get(q=file["id"])).json()
    [dataset] = page["items"]
    assert dataset["name"] == file["id"] and dataset["visibility"] == "private" and dataset["format"] == "sharegpt"
    assert dataset["rows"] == 3 and dataset["key"] == f"{alice.user_id}__{file['id']}"
    entry = info_json(data_dir)[dataset["key"]]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "tools": "tools"}
    assert entry["tags"]["role_tag"] == "role" and entry["tags"]["user_tag"] == "user"
    stored = [json.loads(line) for line in (data_dir / entry["file_name"]).read_text().splitlines()]
    assert stored[0]["messages"] == CHAT[0]["messages"]
    content_back = await alice.client.get(f"/v1/files/{file['id']}/content", headers=alice.headers)
    assert content_back.status_code == 200 and content_back.content == content
    assert (await alice.client.get(f"/v1/files/{file['id']}", headers=alice.headers)).json() == file
    assert_error_renaming = await alice.patch(dataset["id"], name=unique())
    assert assert_error_renaming.status_code == 409 and assert_error_renaming.json()["error"]["code"] == "openai_file"
    assert leftovers(data_dir) == []


async def test_a_preference_file_is_a_pairwise_dataset_for_dpo(alice, data_dir):
    file = await uploaded(alice, jsonl(PREFERENCE), "prefs.jsonl")
    [dataset] = (await alice.get(q=file["id"])).json()["items"]
    assert dataset["format"] == "pairwise" and dataset["dataset_info"]["ranking"] is True
    stored = (data_dir / dataset["file_name"]).read_text().splitlines()
    assert json.loads(stored[0]) == {
        "instruction": "pick 1",
        "chosen": "good",
        "rejected": "bad",
        "system": "",
        "history": [],
    }


async def test_bad_files_are_refused_naming_the_line_and_leave_nothing(alice, data_dir):
    before = (await alice.get()).json()["total"]
    bad = jsonl(CHAT[:2]) + b'{"messages": [{"role": "user", "content": "no answer"}]}\n' + jsonl(CHAT)
    error = openai_error(await upload(alice, bad, "bad.jsonl"), 400, "invalid_file", "file")
    assert (
        error["message"].startswith("bad.jsonl: line 3: ") and "must end with an assistant message" in error["message"]
    )
    error = openai_error(await upload(alice, jsonl(CHAT) + b"{oops\n"), 400, "invalid_file", "file")
    assert "line 4: not valid JSON" in error["message"]
    openai_error(await upload(alice, jsonl(CHAT), purpose="assistants"), 400, "invalid_purpose", "purpose")
    openai_error(await upload(alice, jsonl(CHAT), purpose=None), 400, "invalid_purpose", "purpose")
    weight = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]}\n'
    assert (
        "`weight: 0` is not supported yet" in openai_error(await upload(alice, weight), 400, "invalid_file")["message"]
    )
    assert (await alice.get()).json()["total"] == before and leftovers(data_dir) == []


async def test_another_users_file_is_not_found_and_listing_pages(alice, bob):
    files = [await uploaded(alice, jsonl(CHAT), f"f{i}.jsonl") for i in range(3)]
    theirs = files[0]["id"]
    for method, path in [
        ("GET", f"/v1/files/{theirs}"),
        ("GET", f"/v1/files/{theirs}/content"),
        ("DELETE", f"/v1/files/{theirs}"),
    ]:
        response = await bob.client.request(method, path, headers=bob.headers)
        assert openai_error(response, 404, "not_found", "file_id")["message"] == f"No such File object: {theirs}"
    assert (await bob.client.get("/v1/files", headers=bob.headers)).json()["data"] == []
    listed = (await alice.client.get("/v1/files", params={"limit": 2}, headers=alice.headers)).json()
    assert listed["object"] == "list" and listed["has_more"] is True
    assert [f["id"] for f in listed["data"]] == [files[2]["id"], files[1]["id"]]  # newest first
    assert listed["first_id"] == files[2]["id"] and listed["last_id"] == files[1]["id"]
    rest = await alice.client.get("/v1/files", params={"after": listed["last_id"]}, headers=alice.headers)
    assert files[0]["id"] in [f["id"] for f in rest.json()["data"]]
    oldest = await alice.client.get("/v1/files", params={"order": "asc", "limit": 10_000}, headers=alice.headers)
    ids = [f["id"] for f in oldest.json()["data"]]
    assert ids.index(files[0]["id"]) < ids.index(files[2]["id"])
    openai_error(await alice.client.get("/v1/files", params={"limit": 0}, headers=alice.headers), 400, param="limit")
    openai_error(await alice.client.get("/v1/files", params={"after": theirs}, headers=bob.headers), 400, param="after")
    openai_error(await alice.client.get("/v1/files"), 401)


async def test_delete_removes_the_dataset_and_is_refused_under_a_running_job(alice, pool, data_dir):
    file = await uploaded(alice, jsonl(CHAT))
    [dataset] = (await alice.get(q=file["id"])).json()["items"]
    job_id = new_id("job")
    await pool.execute(
        "INSERT INTO jobs (id, owner_id, kind, state, request, config, config_yaml, dataset_keys) "
        "VALUES ($1, $2, 'train', 'running', $3, $4, '', $5)",
        job_id,
        alice.user_id,
        {"datasets": ["x"]},
        {"dataset": dataset["key"]},
        [dataset["key"]],
    )
    path = f"/v1/files/{file['id']}"
    assert (
        job_id in openai_error(await alice.client.delete(path, headers=alice.headers), 409, "dataset_in_use")["message"]
    )
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
    deleted = await alice.client.delete(path, headers=alice.headers)
    assert deleted.status_code == 200 and deleted.json() == {"id": file["id"], "object": "file", "deleted": True}
    assert not (data_dir / dataset["file_name"]).exists() and not (data_dir / ".originals" / dataset["id"]).exists()
    assert dataset["key"] not in info_json(data_dir)
    openai_error(await alice.client.get(path, headers=alice.headers), 404, "not_found")


async def post(api, path: str, **kwargs):
    return await api.client.post(path, headers=api.headers, **kwargs)


async def test_an_upload_in_parts_completes_into_a_file(alice, bob, data_dir):
    content = jsonl(CHAT * 20)
    start = await post(
        alice,
        "/v1/uploads",
        json={"filename": "big.jsonl", "purpose": "fine-tune", "bytes": len(content), "mime_type": "application/jsonl"},
    )
    assert start.status_code == 200, start.text
    upload_ = start.json()
    assert upload_["id"].startswith("upload_") and upload_["status"] == "pending" and upload_["file"] is None
    assert upload_["expires_at"] - upload_["created_at"] == 3600
    cut = len(content) // 3 + 7  # mid-line: joined out of order, the lines break
    pieces = [content[:cut], content[cut : 2 * cut], content[2 * cut :]]
    parts = []
    for piece in pieces:
        answer = await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("blob", piece)})
        assert answer.status_code == 200, answer.text
        parts.append(answer.json())
    assert all(p["object"] == "upload.part" and p["id"].startswith("part_") for p in parts)
    openai_error(await post(bob, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x")}), 404, "not_found")
    ids = [p["id"] for p in parts]
    wrong_order = await post(
        alice, f"/v1/uploads/{upload_['id']}/complete", json={"part_ids": [ids[1], ids[0], ids[2]]}
    )
    assert "line 1" in openai_error(wrong_order, 400, "invalid_file")["message"]  # the parts joined as named
    bad_md5 = await post(alice, f"/v1/uploads/{upload_['id']}/complete", json={"part_ids": ids, "md5": "0" * 32})
    openai_error(bad_md5, 400, "md5_mismatch", "md5")
    openai_error(
        await post(alice, f"/v1/uploads/{upload_['id']}/complete", json={"part_ids": ids[:2]}), 400, "size_mismatch"
    )
    md5 = hashlib.md5(content).hexdigest()
    done = await post(alice, f"/v1/uploads/{upload_['id']}/complete", json={"part_ids": ids, "md5": md5})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (
        body["status"] == "completed"
        and body["file"]["bytes"] == len(content)
        and body["file"]["filename"] == "big.jsonl"
    )
    back = await alice.client.get(f"/v1/files/{body['file']['id']}/content", headers=alice.headers)
    assert back.content == content
    openai_error(await post(alice, f"/v1/uploads/{upload_['id']}/cancel"), 400, "upload_not_pending")
    assert leftovers(data_dir) == []


async def test_an_upload_refuses_what_does_not_fit_and_cancel_removes_its_parts(alice, data_dir):
    def start(**body):
        return post(
            alice,
            "/v1/uploads",
            json={"filename": "a.jsonl", "purpose": "fine-tune", "bytes": 10, "mime_type": "application/jsonl", **body},
        )

    openai_error(await start(purpose="vision"), 400, "invalid_purpose", "purpose")
    openai_error(await start(mime_type="image/png"), 400, "invalid_mime_type", "mime_type")
    openai_error(await start(bytes=0), 400, "invalid_field")
    openai_error(await start(filename="../x"), 400, "unsafe_file_name")
    assert (await start(bytes=10**15)).status_code == 413
    upload_ = (await start()).json()
    openai_error(
        await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x" * 11)}),
        413,
        "payload_too_large",
        "data",
    )
    assert (await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x" * 4)})).status_code == 200
    assert len(leftovers(data_dir)) == 1  # the upload's folder, holding its part
    cancelled = await post(alice, f"/v1/uploads/{upload_['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert leftovers(data_dir) == []
    openai_error(
        await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x")}), 400, "upload_not_pending"
    )


async def test_an_inference_key_uploads_no_training_data(alice, pool):
    key, prefix, key_hash = new_api_key()
    async with pool.acquire() as conn:
        await insert_api_key(
            conn,
            key_id=new_id("key"),
            user_id=alice.user_id,
            name=unique("chat-only"),
            prefix=prefix,
            key_hash=key_hash,
            scope="inference",
            expires_at=None,
        )
    headers = {"Authorization": f"Bearer {key}"}
    refused = await alice.client.post(
        "/v1/files", data={"purpose": "fine-tune"}, files={"file": ("a.jsonl", jsonl(CHAT))}, headers=headers
    )
    assert "inference only" in openai_error(refused, 403, "api_key_scope")["message"]
    openai_error(await alice.client.get("/v1/files", headers=headers), 403, "api_key_scope")
    openai_error(await alice.client.post("/v1/uploads", json={}, headers=headers), 403, "api_key_scope")


async def test_an_expired_upload_takes_no_parts_and_its_parts_go(alice, pool, data_dir):
    body = {"filename": "a.jsonl", "purpose": "fine-tune", "bytes": 10, "mime_type": "application/jsonl"}
    upload_ = (await post(alice, "/v1/uploads", json=body)).json()
    assert (await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x" * 4)})).status_code == 200
    await pool.execute(
        "UPDATE openai_uploads SET expires_at = now() - interval '1 second' WHERE id = $1", upload_["id"]
    )
    late = await post(alice, f"/v1/uploads/{upload_['id']}/parts", files={"data": ("b", b"x")})
    assert "expired" in openai_error(late, 400, "upload_not_pending")["message"]
    assert leftovers(data_dir) == []
    # One nobody comes back to: the service's sweeper marks it expired and removes its parts.
    forgotten = (await post(alice, "/v1/uploads", json=body)).json()
    assert (await post(alice, f"/v1/uploads/{forgotten['id']}/parts", files={"data": ("b", b"x")})).status_code == 200
    await pool.execute("UPDATE openai_uploads SET expires_at = now() WHERE id = $1", forgotten["id"])
    assert await expire_uploads(Context(pool=pool, layout=DataLayout(data_dir), settings=DatasetSettings())) >= 1
    assert await pool.fetchval("SELECT status FROM openai_uploads WHERE id = $1", forgotten["id"]) == "expired"
    assert leftovers(data_dir) == []


async def test_pending_uploads_hold_their_room_in_the_quota(alice, admin):
    assert (
        await admin.client.put(f"/api/datasets/quotas/{alice.user_id}", json={"max_bytes": 1000}, headers=admin.headers)
    ).status_code == 200
    body = {"filename": "a.jsonl", "purpose": "fine-tune", "mime_type": "application/jsonl"}
    try:
        first = await post(alice, "/v1/uploads", json={**body, "bytes": 700})
        assert first.status_code == 200, first.text
        error = openai_error(
            await post(alice, "/v1/uploads", json={**body, "bytes": 400}), 413, "dataset_quota_exceeded"
        )
        assert "pending uploads" in error["message"]
        await post(alice, f"/v1/uploads/{first.json()['id']}/cancel")
        second = await post(alice, "/v1/uploads", json={**body, "bytes": 400})
        assert second.status_code == 200
        await post(alice, f"/v1/uploads/{second.json()['id']}/cancel")
    finally:
        await admin.client.put(f"/api/datasets/quotas/{alice.user_id}", json={"max_bytes": None}, headers=admin.headers)


async def test_one_file_request_is_held_to_its_own_limit(settings, alice, data_dir):
    app = create_app(settings, DatasetSettings(openai_file_max_bytes=1000))
    async with AsyncTestClient(app=app) as small:
        response = await small.post(
            "/v1/files",
            data={"purpose": "fine-tune"},
            files={"file": ("big.jsonl", jsonl(CHAT * 10))},
            headers=alice.headers,
        )
    error = openai_error(response, 413, "payload_too_large", "file")
    assert "LLMCT_OPENAI_FILE_MAX_BYTES" in error["message"] and "/v1/uploads" in error["message"]
    assert leftovers(data_dir) == []
