"""Chat content that would make the model server fetch something is refused at the gateway (issue 14, item 7):
an `image_url`, `audio_url`, `video_url` or any other non-text part naming a URL or a path is a 422 unless it is a
`data:` URI (or allow-listed, tests/unit/test_chat_content.py), on the playground and the OpenAI surface alike,
before any deployment is looked up."""

import httpx
import pytest

from .helpers import login, unique

pytestmark = pytest.mark.e2e

UNKNOWN = "dep_0123456789abcdef"
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+A8AAQUBAScY42YAAAAASUVORK5CYII="
)

FETCHING_PARTS = [
    {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}},
    {"type": "image_url", "image_url": "https://attacker.example/x.png"},
    {"type": "image_url", "image_url": {"url": "/etc/passwd"}},
    {"type": "image_url", "image_url": {"url": " file:///etc/shadow"}},
    {"type": "video_url", "video_url": {"url": "http://127.0.0.1:8102/api/jobs"}},
    {"type": "audio_url", "audio_url": {"url": "gopher://127.0.0.1:4222/"}},
    {"type": "input_audio", "input_audio": {"data": "https://attacker.example/a.wav", "format": "wav"}},
    {"type": "file", "file": {"file_path": "/var/lib/llmct/secret"}},
]


@pytest.fixture(scope="module")
async def headers(stack):
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as gw:
        return await login(gw, stack.invite_code, unique("chat-urls"))


def conversation(part: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]


@pytest.mark.parametrize("part", FETCHING_PARTS)
async def test_the_playground_refuses_content_the_server_would_fetch(gw, headers, part):
    r = await gw.post(f"/api/deployments/{UNKNOWN}/chat", json={"messages": conversation(part)}, headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "url_not_allowed" and error["field"].startswith("messages.0.content.1.")
    assert "data:" in error["message"]


@pytest.mark.parametrize("part", FETCHING_PARTS)
async def test_the_openai_surface_refuses_content_the_server_would_fetch(gw, headers, part):
    body = {"model": UNKNOWN, "messages": conversation(part)}
    r = await gw.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "url_not_allowed"


async def test_inline_data_and_links_in_text_pass_on_to_the_deployment_lookup(gw, headers):
    messages = conversation({"type": "image_url", "image_url": {"url": PNG}})
    messages.append({"role": "user", "content": "see http://example.com/page and /etc/hosts"})
    r = await gw.post(f"/api/deployments/{UNKNOWN}/chat", json={"messages": messages}, headers=headers)
    assert r.status_code == 404, r.text  # past the check: no such deployment
    r = await gw.post("/v1/chat/completions", json={"model": UNKNOWN, "messages": messages}, headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 1000), ("n", 0), ("n", "2"), ("max_tokens", -1), ("temperature", 9), ("top_p", True), ("tools", "x")],
)
async def test_the_openai_surface_refuses_sampling_the_server_would_crash_on(gw, headers, field, value):
    """Values the model server answers with a 500 (or, for `n`, a request that takes every slot) are a 400 naming
    the field, before any deployment is looked up."""
    body = {"model": UNKNOWN, "messages": [{"role": "user", "content": "hi"}], field: value}
    r = await gw.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_value" and r.json()["error"]["param"] == field
    ok = {**body, field: {"n": 2, "max_tokens": 8, "temperature": 0.7, "top_p": 1, "tools": []}[field]}
    assert (await gw.post("/v1/chat/completions", json=ok, headers=headers)).status_code == 404  # no such deployment
