"""Small helpers for talking to the running platform in tests, and for driving the web client in a browser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import websockets
from playwright.sync_api import Browser, Page, expect

from services.common import contracts
from tests.helpers import eventually, unique

# A LoRA SFT of the tiny model on the CPU, a few seconds long.
TRAIN = {
    "kind": "train",
    "base_model": "tiny-llama",
    "datasets": ["tiny_sft"],
    "stage": "sft",
    "finetuning_type": "lora",
    "gpu_count": 0,
    "max_steps": 12,
    "logging_steps": 1,
    "save_steps": 6,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "cutoff_len": 128,
    "lora_rank": 4,
}


async def login(gw: httpx.AsyncClient, invite_code: str, username: str, password: str = "train-pass-2026") -> dict:
    """Register `username` (a new one: unique("...") per test) and log in; returns headers carrying the token."""
    creds = {"username": username, "password": password}
    r = await gw.post("/api/auth/register", json={**creds, "invite_code": invite_code})
    assert r.status_code == 201, f"{username} must be the calling test's own user: {r.text}"
    r = await gw.post("/api/auth/login", json=creds)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def wait_for_state(gw: httpx.AsyncClient, headers: dict, job_id: str, states: set[str], timeout: float = 240):
    """Poll the job until it reaches one of `states`; returns its detail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (await gw.get(f"/api/jobs/{job_id}", headers=headers)).json()
        if job["state"] in states:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['state']}: {job.get('message')}")
        await asyncio.sleep(0.5)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read_logs(ws_url: str, token: str, until, after: int | str = 0, timeout: float = 240) -> list[dict]:
    """Lines from the logs WebSocket until `until(lines)` is true, each with its frame's `attempt` (authenticated
    with the header, as a program may; browsers use a ticket)."""
    lines: list[dict] = []
    async with asyncio.timeout(timeout):
        async with websockets.connect(f"{ws_url}?after={after}", additional_headers=bearer(token)) as ws:
            while not until(lines):
                frame = json.loads(await ws.recv())
                lines.extend({**line, "attempt": frame["attempt"]} for line in frame["lines"])
    return lines


async def admin_token(gw: httpx.AsyncClient, stack) -> str:
    r = await gw.post("/api/auth/login", json={"username": stack.admin_username, "password": stack.admin_password})
    return r.json()["access_token"]


async def registered(gw, headers, job_id: str, timeout: float = 30, source: str = "train") -> dict:
    """The model a job produced, once the registry has it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = (await gw.get("/api/models", headers=headers, params={"source": source, "q": job_id[-8:]})).json()
        found = [m for m in page["items"] if m["job_id"] == job_id]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id}'s output never appeared: {page}"
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def gpu_agent(gw: httpx.AsyncClient, stack, prefix: str = "gpu-box", memory_mb: int = 24_576):
    """A stand-in agent of the calling test's own, with one GPU and a fresh id: registered by one heartbeat and
    drained at once, so GPU jobs are accepted (some registered agent could hold them) and wait, never placed on an
    engine that does not exist. Its registration is removed at the end (as the scheduler does after
    LLMCT_AGENT_REMOVE_S), so no other test sees its GPU: not the fleet page's "No GPU online", not a GPU job
    refused for no_capacity. Yields its id."""
    agent_id = unique(prefix)
    db = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        nc = await nats.connect(stack.env["NATS_URL"])
        beat = contracts.AgentHeartbeat(
            agent_id=agent_id,
            hostname=agent_id,
            sent_at=datetime.now(UTC),
            gpus=(contracts.GpuStatus(index=0, name="NVIDIA A10", memory_total_mb=memory_mb),),
        )
        await nc.publish(contracts.Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
        await nc.flush()
        await nc.close()

        async def written():  # in the scheduler's next heartbeat batch
            return await db.fetchval("SELECT count(*) FROM agents WHERE id = $1", agent_id)

        await eventually(written, timeout=10)
        admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
        r = await gw.post(f"/api/agents/{agent_id}/drain", headers=admin)
        assert r.status_code == 200 and r.json()["draining"], r.text
        yield agent_id
    finally:
        await db.execute("DELETE FROM agents WHERE id = $1", agent_id)
        await db.close()


# --- the web client in a browser (tests/e2e/test_web_*.py; the `browser` fixture is in conftest.py) ---------------

ROOT = Path(__file__).resolve().parents[2]
WEB_INDEX = ROOT / "web" / "dist" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def keep_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Screenshot to the test's tmp folder, and also to $LLMCT_E2E_ARTIFACTS when set (for CI uploads)."""
    path = tmp_path / name
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar would otherwise sit mid-picture
    page.screenshot(path=str(path), full_page=True)
    if artifacts := os.environ.get("LLMCT_E2E_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    print(f"screenshot: {path}")
    return path


def heading(page: Page, name: str):
    return page.get_by_role("heading", level=1, name=name)


def log_in_as_admin(page: Page, stack, then: str, title: str) -> None:
    """Through the login form, landing on `then` (whose heading is `title`)."""
    page.goto(f"/login?next={then}")
    page.get_by_label("Username").fill(stack.admin_username)
    page.get_by_label("Password").fill(stack.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(heading(page, title)).to_be_visible()


PASSWORD = "bright-meadow-4821"
TABLET = {"width": 820, "height": 1180}


def signed_in_page(browser: Browser, stack, username: str) -> tuple[Page, list[str]]:
    """A fresh browser context with `username` registered (through the API) and logged in (through the form)."""
    context = browser.new_context(
        base_url=stack.gateway_url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    answer = page.request.post(
        "/api/auth/register", data={"username": username, "password": PASSWORD, "invite_code": stack.invite_code}
    )
    assert answer.status == 201, answer.text()
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()
    return page, errors


# --- raw HTTP, for what an HTTP client library would tidy up or refuse to send (tests/e2e/test_gateway_*.py) -------


async def raw_request(base_url: str, head: str, body: bytes = b"", timeout: float = 20) -> tuple[int, dict, bytes]:
    """Send `head` (request line and headers, no trailing blank line) and `body` as given over a plain socket, read
    the whole answer (the connection is closed after it); returns (status, lowercased headers, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"{head}\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1") + body)
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
    return parse_answer(answer)


def parse_answer(answer: bytes) -> tuple[int, dict, bytes]:
    """(status, lowercased headers, body) of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    headers = {k.lower(): v for k, v in headers.items()}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(lines[0].split()[1]), headers, body


def dechunked(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out
