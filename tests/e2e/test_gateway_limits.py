"""The gateway under abuse (issue 14, item 7): slow headers and slow bodies are cut off, one client or one
upstream cannot take every place, one user cannot hold open sockets without end. A gateway of this module's own,
with small limits, in front of the stack's services."""

import asyncio
import contextlib
import json
import time

import httpx
import pytest
import websockets

from llmct.embedded import free_port
from llmct.launcher import start_services, stop_services

from .helpers import login, parse_answer, raw_request, unique

pytestmark = pytest.mark.e2e

TIMEOUT_S = 1.5
LIMITS = {
    "LLMCT_GATEWAY_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "LLMCT_GATEWAY_BODY_IDLE_S": str(TIMEOUT_S),
    "LLMCT_GATEWAY_UPSTREAM_CONCURRENCY": "2",
    "LLMCT_GATEWAY_CLIENT_CONCURRENCY": "4",
    "LLMCT_GATEWAY_WEBSOCKETS_PER_USER": "2",
}


@pytest.fixture(scope="module")
def tight(stack, tmp_path_factory):
    """The base URL of a second gateway with small limits."""
    env = {**stack.env, **LIMITS, "LLMCT_GATEWAY_PORT": str(free_port())}
    [gateway] = start_services(env, tmp_path_factory.mktemp("tight-gateway"), names=("gateway",))
    yield f"http://127.0.0.1:{gateway.port}"
    stop_services([gateway])


async def open_raw(base_url: str):
    host, port = base_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


@contextlib.asynccontextmanager
async def slow_upload(base_url: str, path: str, extra: str = ""):
    """A POST whose body comes one byte every half second (inside the idle limit): it holds its places."""
    reader, writer = await open_raw(base_url)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n{extra}"
    writer.write(f"{head}\r\n".encode())

    async def drip():
        while True:
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.5)

    task = asyncio.ensure_future(drip())
    await asyncio.sleep(0.5)  # forwarded by now
    try:
        yield
    finally:
        task.cancel()
        writer.close()


async def test_headers_sent_one_byte_at_a_time_are_cut_off(tight):
    reader, writer = await open_raw(tight)
    started = time.monotonic()

    async def drip():
        writer.write(b"GET /api/auth/me HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            await asyncio.sleep(0.25)
            writer.write(b"X")  # a header that never ends
            await writer.drain()

    task = asyncio.ensure_future(drip())
    try:
        async with asyncio.timeout(TIMEOUT_S + 6):
            answer = await reader.read()
    finally:
        task.cancel()
        writer.close()
    assert time.monotonic() - started < TIMEOUT_S + 3
    status, _, body = parse_answer(answer)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


async def test_a_connection_that_sends_nothing_is_closed(tight):
    reader, writer = await open_raw(tight)
    try:
        async with asyncio.timeout(TIMEOUT_S + 6):
            answer = await reader.read()
    finally:
        writer.close()
    assert parse_answer(answer)[0] == 408


async def test_headers_over_64_kib_are_refused(tight):
    status, _, body = await raw_request(tight, "GET /api/auth/me HTTP/1.1\r\nX-Big: " + "a" * 200_000)
    assert status == 431, body
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    status, _, body = await raw_request(tight, "GET /api/auth/me HTTP/1.1\r\nX-Big: " + "a" * 30_000)
    assert status == 401, body  # a large cookie or token still passes


async def test_a_paused_body_is_cut_off_and_its_upstream_place_freed(tight):
    # More slow bodies, one after the other, than the upstream has places: each gives its place back.
    for _ in range(3):
        started = time.monotonic()
        status, _, body = await raw_request(
            tight,
            "POST /api/auth/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000",
            b'{"username": "x',
            timeout=TIMEOUT_S + 8,
        )
        assert status == 408, body
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert time.monotonic() - started < TIMEOUT_S + 4
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        r = await gw.post("/api/auth/login", json={"username": "nobody-here", "password": "wrong-password-1"})
    assert r.status_code == 401, r.text


async def test_a_paused_chunked_body_is_cut_off_too(tight):
    status, _, body = await raw_request(
        tight,
        "POST /api/datasets/upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked",
        b"5\r\nhello\r\n",
        timeout=TIMEOUT_S + 8,
    )
    assert status == 408, body


async def test_a_paused_body_on_the_openai_surface_is_cut_off_too(tight, stack):
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        headers = await login(gw, stack.invite_code, unique("slow-chat"))
    status, _, body = await raw_request(
        tight,
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
        f"Authorization: {headers['Authorization']}",
        b'{"model": "x", "messages": [',
        timeout=TIMEOUT_S + 8,
    )
    assert status == 408, body
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_one_upstream_has_a_bounded_number_of_places(tight):
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        async with slow_upload(tight, "/api/auth/login"), slow_upload(tight, "/api/auth/register"):
            r = await gw.get("/api/auth/me")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "service_busy" and r.headers["retry-after"] == "1"
            r = await gw.get("/api/jobs")  # another service still answers
            assert r.status_code == 401, r.text
        r = await eventually_status(gw, "/api/auth/me", 401)


async def test_one_client_has_a_bounded_number_of_requests_in_flight(tight):
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        async with (
            slow_upload(tight, "/api/auth/login"),
            slow_upload(tight, "/api/jobs"),
            slow_upload(tight, "/api/datasets/register"),
            slow_upload(tight, "/api/models"),
        ):
            r = await gw.get("/api/auth/me")
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "too_many_requests" and r.headers["retry-after"] == "1"
        await eventually_status(gw, "/api/auth/me", 401)


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_apart(tight):
    # 127.0.0.1 is a trusted proxy by default (LLMCT_TRUSTED_PROXIES): its X-Forwarded-For names the client.
    busy = "X-Forwarded-For: 203.0.113.5\r\n"
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        async with (
            slow_upload(tight, "/api/auth/login", busy),
            slow_upload(tight, "/api/jobs", busy),
            slow_upload(tight, "/api/datasets/register", busy),
            slow_upload(tight, "/api/models", busy),
        ):
            r = await gw.get("/api/auth/me", headers={"X-Forwarded-For": "203.0.113.5"})
            assert r.status_code == 429, r.text
            r = await gw.get("/api/jobs", headers={"X-Forwarded-For": "198.51.100.7"})
            assert r.status_code == 401, r.text


async def eventually_status(gw: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    """The answer once the held places are given back (the gateway sees the closed connections shortly)."""
    deadline = time.monotonic() + 10
    while True:
        r = await gw.get(path)
        if r.status_code == status or time.monotonic() > deadline:
            assert r.status_code == status, r.text
            return r
        await asyncio.sleep(0.2)


async def test_one_user_has_a_bounded_number_of_open_websockets(tight, stack):
    async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
        headers = await login(gw, stack.invite_code, unique("ws-cap"))
    url = tight.replace("http://", "ws://") + "/api/ws/echo"
    async with contextlib.AsyncExitStack() as held:
        for _ in range(2):
            ws = await held.enter_async_context(websockets.connect(url, additional_headers=headers))
            await ws.send("hi")
            assert json.loads(await ws.recv())["echo"] == "hi"
        async with websockets.connect(url, additional_headers=headers) as extra:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    await extra.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        async with httpx.AsyncClient(base_url=tight, timeout=10) as gw:
            other = await login(gw, stack.invite_code, unique("ws-other"))
        async with websockets.connect(url, additional_headers=other) as ws:  # another user is not counted
            await ws.send("hi")
            assert json.loads(await ws.recv())["echo"] == "hi"
    async with websockets.connect(url, additional_headers=headers) as ws:  # closed ones are given back
        await ws.send("again")
        assert json.loads(await ws.recv())["echo"] == "again"
