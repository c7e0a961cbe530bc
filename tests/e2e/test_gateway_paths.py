"""The gateway forwards a path exactly as the client encoded it (issue 14, item 7): an encoded `?` or control
character stays inside its id, encoded dot-segments and slashes name nothing, and a malformed deployment id is a
404, never a 500 or a 503 that blames an outage."""

import json

import httpx
import pytest

from .helpers import login, raw_request, unique

pytestmark = pytest.mark.e2e

PREFIXES = ["jobs", "datasets", "models", "deployments", "auth/sessions"]


@pytest.fixture(scope="module")
async def headers(stack):
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as gw:
        return await login(gw, stack.invite_code, unique("gw-paths"))


def is_envelope(body: dict) -> bool:
    return set(body) == {"error"} and {"code", "message", "field"} <= set(body["error"])


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("segment", ["%01x", "x%00", "%7f", "%0d%0aX-Injected:%201", "x%09y"])
async def test_an_encoded_control_character_in_an_id_is_a_404(gw, stack, headers, prefix, segment):
    r = await gw.get(f"/api/{prefix}/{segment}", headers=headers)
    assert r.status_code == 404, r.text
    assert is_envelope(r.json()), r.text


@pytest.mark.parametrize("prefix", ["jobs", "datasets", "models", "deployments"])
async def test_an_encoded_question_mark_stays_in_the_id(gw, stack, headers, prefix):
    r = await gw.get(f"/api/{prefix}/%3Flimit=1", headers=headers)
    assert r.status_code == 404, f"reached the list route instead: {r.text}"
    assert is_envelope(r.json())
    r = await gw.get(f"/api/{prefix}/x%23y", headers=headers)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/%2e%2e/auth/me",
        "/api/jobs/%2E",
        "/api/jobs/x%2F..%2F..%2Fauth%2Fme",
        "/api/models/x%2fy",
        "/api/datasets/x%5C..%5Cy",
        "/api/jobs/../auth/me",
        "/api/datasets/./x/../y",
    ],
)
async def test_dot_segments_and_encoded_slashes_are_refused(gw, stack, headers, path):
    # A raw socket: an HTTP client library would resolve the literal dot-segments before sending.
    status, _, body = await raw_request(
        stack.gateway_url, f"GET {path} HTTP/1.1\r\nAuthorization: {headers['Authorization']}"
    )
    assert status == 404, body
    assert is_envelope(json.loads(body)), body


@pytest.mark.parametrize("deployment_id", ["%01", "dep_%0a", "dep_nothere", "dep_0123456789abcdef", "x%3Fy"])
async def test_a_bad_deployment_id_on_the_chat_route_is_a_404(gw, stack, headers, deployment_id):
    r = await gw.post(
        f"/api/deployments/{deployment_id}/chat",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("model", ["dep_\u0001", "dep_x\ny", "dep_../../jobs", "dep_?limit=1"])
async def test_a_malformed_deployment_id_on_the_openai_route_is_model_not_found(gw, stack, headers, model):
    r = await gw.post(
        "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, headers=headers
    )
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"
