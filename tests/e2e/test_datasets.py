"""Datasets through the gateway: public tiny sets, a streamed multipart upload a real job trains on, the cap."""

import asyncio
import json
from pathlib import Path

import pytest

from llmct.tiny.data import sft_examples

from .helpers import TRAIN, login, read_logs, unique, wait_for_state

pytestmark = pytest.mark.e2e


def data_dir(stack) -> Path:
    return Path(stack.env["HOST_BASE_PATH"]) / "data"


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


async def upload(gw, headers, name: str, filename: str, content: bytes, **fields):
    # Text parts first, so a bad name is refused before the file is sent.
    return await gw.post(
        "/api/datasets/upload",
        headers=headers,
        data={"name": name, "format": "alpaca", **fields},
        files={"file": (filename, content, "application/octet-stream")},
    )


async def test_tiny_datasets_are_public(gw, tiny_model):
    page = (await gw.get("/api/datasets", params={"visibility": "public", "q": "tiny_"})).json()
    by_name = {d["name"]: d for d in page["items"]}
    assert by_name["tiny_sft"]["format"] == "alpaca" and by_name["tiny_pt"]["format"] == "text"
    assert by_name["tiny_sft"]["rows"] == 64 and by_name["tiny_sft"]["key"] == "tiny_sft"
    preview = (await gw.get(f"/api/datasets/{by_name['tiny_sft']['id']}/preview")).json()
    assert preview["rows"][0]["rendered"]["prompt"][0]["role"] == "user"


async def test_upload_train_and_delete_through_the_gateway(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, unique("data-owner"))
    stranger = await login(gw, stack.invite_code, unique("data-stranger"))
    content = jsonl(sft_examples(150_000))  # 14 MB: past Litestar's default 10 MB body cap, streamed
    assert (await upload(gw, {}, "mine", "train.jsonl", content)).status_code == 401
    r = await upload(gw, owner, "my-sft", "train.jsonl", content, remark="e2e")
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert dataset["rows"] == 150_000 and dataset["size_bytes"] == len(content)
    info = json.loads((data_dir(stack) / "dataset_info.json").read_text())
    assert info[dataset["key"]]["file_name"] == dataset["file_name"] and "tiny_sft" in info
    download = await gw.get(f"/api/datasets/{dataset['id']}/download", headers=owner)
    assert download.status_code == 200 and download.content == content

    r = await gw.post("/api/jobs", json={**TRAIN, "datasets": ["my-sft"]}, headers=stranger)
    assert r.status_code == 422 and r.json()["error"]["field"] == "datasets[0]", r.text
    r = await gw.post("/api/jobs", json={**TRAIN, "datasets": ["my-sft"], "max_steps": 5000}, headers=owner)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["config"]["dataset"] == dataset["key"] and job["request"]["datasets"] == ["my-sft"]
    token = owner["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    # The engine found the dataset under its key and trains on it.
    await read_logs(ws_url, token, until=lambda ls: any("'loss'" in line["text"] for line in ls))

    r = await gw.delete(f"/api/datasets/{dataset['id']}", headers=owner)
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_in_use" and job["id"] in r.text
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=owner)
    await wait_for_state(gw, owner, job["id"], {"cancelled", "failed", "succeeded"}, timeout=60)
    assert (await gw.delete(f"/api/datasets/{dataset['id']}", headers=owner)).status_code == 204
    assert dataset["key"] not in json.loads((data_dir(stack) / "dataset_info.json").read_text())
    assert not (data_dir(stack) / dataset["file_name"]).exists()


async def test_cap_through_the_gateway(gw, stack, tiny_model):
    """The gateway streams bodies chunked: the service counts what arrives and answers 413 early."""
    owner = await login(gw, stack.invite_code, unique("data-capped"))
    stack.env["LLMCT_DATASET_MAX_BYTES"] = "200000"
    try:
        await asyncio.to_thread(stack.restart, "datasets")
        r = await upload(gw, owner, "too-big", "big.jsonl", jsonl(sft_examples(20_000)))
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large" and r.json()["error"]["field"] == "file"
        r = await upload(gw, owner, "../etc", "a.jsonl", jsonl(sft_examples(5)))
        assert r.status_code == 422 and r.json()["error"]["field"] == "name"
        assert list((data_dir(stack) / ".incoming").iterdir()) == []
    finally:
        del stack.env["LLMCT_DATASET_MAX_BYTES"]
        await asyncio.to_thread(stack.restart, "datasets")
