"""OpenAI's Files and Uploads APIs through the gateway with the official `openai` package, unchanged: a chat file and
a preference file are uploaded, listed, read back and trained on by the real engine (SFT and DPO on the tiny
model); a file sent in parts completes; a bad line, another user's file and an unknown upload raise the SDK's
matching exceptions."""

from __future__ import annotations

import hashlib
import json

import openai
import pytest

from .helpers import TRAIN, login, unique, wait_for_state

pytestmark = pytest.mark.e2e

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": f"Say {i}"}]},
            {"role": "assistant", "content": f"{i}", "weight": 1},
        ]
    }
    for i in range(8)
]
# A tool call and its answers: a function_call turn and an observation for the engine's template.
TOOL_CALL = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
}
PREFERENCE = [
    {
        "input": {"messages": [{"role": "user", "content": f"Is {i} even?"}]},
        "preferred_output": [{"role": "assistant", "content": "yes" if i % 2 == 0 else "no"}],
        "non_preferred_output": [{"role": "assistant", "content": "no" if i % 2 == 0 else "yes"}],
    }
    for i in range(8)
]
# Two steps on the CPU: enough to show the engine reads the file's dataset_info entry and trains on it.
SHORT = {"max_steps": 2, "save_steps": 2, "gradient_accumulation_steps": 1}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def client_for(stack, headers: dict) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{stack.gateway_url}/v1", api_key=headers["Authorization"].split()[1], max_retries=0
    )


async def trains(gw, headers, file_id: str, stage: str) -> None:
    """A job on the file's dataset (named by the file id) succeeds with the real engine."""
    body = {**TRAIN, **SHORT, "datasets": [file_id], "stage": stage}
    r = await gw.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, headers, r.json()["id"], {"succeeded", "failed"})
    assert job["state"] == "succeeded", job


async def test_files_through_the_gateway_with_the_openai_package(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, unique("files-owner"))
    client = client_for(stack, owner)
    content = jsonl([*CHAT, TOOL_CALL])
    chat = await client.files.create(file=("train.jsonl", content, "application/jsonl"), purpose="fine-tune")
    assert chat.id.startswith("file-") and chat.bytes == len(content) and chat.status == "processed"
    prefs = await client.files.create(file=("prefs.jsonl", jsonl(PREFERENCE)), purpose="fine-tune")
    assert (await client.files.retrieve(chat.id)).filename == "train.jsonl"
    assert (await client.files.content(chat.id)).content == content
    page = await client.files.list(limit=1)
    assert [f.id for f in page.data] == [prefs.id] and page.has_more
    assert [f.id async for f in client.files.list(limit=1)] == [prefs.id, chat.id]  # the SDK follows `after`

    await trains(gw, owner, chat.id, "sft")
    await trains(gw, owner, prefs.id, "dpo")

    with pytest.raises(openai.BadRequestError) as bad:
        await client.files.create(file=("bad.jsonl", content + b'{"messages": []}\n'), purpose="fine-tune")
    assert "line 10" in bad.value.message and bad.value.param == "file"
    with pytest.raises(openai.BadRequestError):
        await client.files.create(file=("train.jsonl", content), purpose="assistants")

    other = client_for(stack, await login(gw, stack.invite_code, unique("files-other")))
    with pytest.raises(openai.NotFoundError):
        await other.files.retrieve(chat.id)
    with pytest.raises(openai.NotFoundError):
        await other.files.delete(chat.id)

    deleted = await client.files.delete(chat.id)
    assert deleted.deleted and deleted.id == chat.id
    with pytest.raises(openai.NotFoundError):
        await client.files.content(chat.id)


async def test_an_upload_in_parts_with_the_openai_package(gw, stack):
    owner = await login(gw, stack.invite_code, unique("uploads-owner"))
    client = client_for(stack, owner)
    content = jsonl(CHAT * 4)
    upload = await client.uploads.create(
        bytes=len(content), filename="parts.jsonl", mime_type="application/jsonl", purpose="fine-tune"
    )
    assert upload.status == "pending"
    half = len(content) // 2 + 3
    parts = [await client.uploads.parts.create(upload.id, data=piece) for piece in (content[:half], content[half:])]
    done = await client.uploads.complete(
        upload.id, part_ids=[p.id for p in parts], md5=hashlib.md5(content).hexdigest()
    )
    assert done.status == "completed" and done.file is not None and done.file.bytes == len(content)
    assert (await client.files.content(done.file.id)).content == content

    with pytest.raises(openai.BadRequestError):
        await client.uploads.cancel(upload.id)  # completed already
    other = client_for(stack, await login(gw, stack.invite_code, unique("uploads-other")))
    with pytest.raises(openai.NotFoundError):
        await other.uploads.parts.create(upload.id, data=b"x")


async def test_the_gateway_answers_for_an_owner_away_in_openais_shape(gw, stack):
    client = client_for(stack, await login(gw, stack.invite_code, unique("files-away")))
    stack.kill("datasets")
    try:
        with pytest.raises(openai.InternalServerError) as away:
            await client.files.list()
        assert away.value.status_code == 503 and isinstance(away.value.body, dict)
        assert away.value.body["type"] == "server_error" and away.value.body["code"] == "service_unavailable"
    finally:
        stack.start("datasets")
    assert (await client.files.list()).data == []
