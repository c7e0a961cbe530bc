"""An upstream that dies in the middle of its answer: the gateway (in-process, on a real port) reads a small answer
whole before relaying it, so the client gets a clean 503 to retry (a keyed submit) or a 502 saying the outcome is
unknown — never a response cut after its headers, which an HTTP client can only report as a broken connection.
The upstream is a real socket server that sends its status line and headers and closes (what a scheduler killed
mid-write leaves); the idempotency burst in tests/e2e/test_idempotency.py met it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import httpx
import pytest

from .helpers import serving

pytestmark = pytest.mark.integration

CUT = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 3208\r\n\r\n{"id": "job_'


@contextlib.asynccontextmanager
async def dying_upstream():
    """A server that answers every request with the start of a 3,208-byte JSON body, then closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(TimeoutError):  # the request's body, if it comes at once
            await asyncio.wait_for(reader.read(65536), 0.2)
        writer.write(CUT)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def gateway(settings):
    from services.gateway.app import create_app as gateway_app

    async with dying_upstream() as upstream:
        routes = {**settings.service_urls, "scheduler": (upstream,)}
        async with serving(gateway_app(dataclasses.replace(settings, service_urls=routes))) as (url,):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield client


async def test_a_keyed_submit_whose_answer_is_cut_is_a_clean_503_to_retry(gateway):
    body = {"kind": "train", "base_model": "m", "datasets": ["d"]}
    r = await gateway.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1", "Authorization": "Bearer x"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable", r.text
    assert r.headers["Retry-After"] == "2" and "Idempotency-Key" in r.json()["error"]["message"]


async def test_an_unkeyed_submit_whose_answer_is_cut_says_the_outcome_is_unknown(gateway):
    r = await gateway.post("/api/jobs", json={"kind": "train"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "outcome_unknown", r.text


async def test_openais_keyed_fine_tuning_submit_is_safe_to_repeat_too(gateway):
    r = await gateway.post(
        "/v1/fine_tuning/jobs", json={"model": "m"}, headers={"Idempotency-Key": "k-2", "Authorization": "Bearer x"}
    )
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error", r.text
