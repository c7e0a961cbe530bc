"""A deployment's model server on this agent: readiness, chat relayed from NATS, idle stop, usage reports.

The server is `llamafactory-cli api` on a loopback port only this agent knows, behind a random API key.
Chat arrives as core NATS requests on `deploy.<agent_id>.<deployment_id>.chat` (the gateway's; only this
agent's NATS user may read its `deploy.<agent_id>.>` subjects); the answer goes
back to the request's reply subject as frames: the first carries `Llmct-Status` (the server's HTTP status),
each holds a piece of the body (one server-sent event when streaming), and an empty frame with
`Llmct-End: 1` closes it. The agent needs no inbound port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from nats.aio.client import Client

from services.common import contracts
from services.common.contracts import Subjects
from services.common.net import free_port

from .chat_errors import openai_error

log = logging.getLogger(__name__)

STATUS_HEADER = contracts.ChatFrames.STATUS
END_HEADER = contracts.ChatFrames.END
_CONTENT = re.compile(r'"content":\s*"[^"]')  # a chunk that carries generated text
PROBE_EVERY_S = 0.5
IDLE_CHECK_S = 1.0  # also how often usage is reported


class ModelServer:
    """One deployment's server and the loops around it."""

    def __init__(
        self,
        *,
        nc: Client,
        deployment_id: str,
        agent_id: str,
        options: contracts.ServeOptions,
        publish: Callable[..., Awaitable[None]],
        note: Callable[[str], None],
        attempt: int = 0,
    ):
        self.nc = nc
        self.deployment_id = deployment_id
        self.agent_id = agent_id
        self.options = options
        self.attempt = attempt  # of the dispatch: every event this server reports carries it
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.publish = publish  # the runner's JOB_EVENTS publisher
        self.note = note  # a system line in the deployment's log
        self.ready = asyncio.Event()
        self.idle_stopped = False
        self.start_timed_out = False
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self._requests = 0
        self._tokens = 0
        self._last_request_at: datetime | None = None
        self._http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0),
            headers={"Authorization": f"Bearer {self.api_key}"},
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._sub = None
        self._tasks: set[asyncio.Task] = set()

    def environment(self) -> dict[str, str]:
        """What `llamafactory-cli api` reads: where to listen, the key, the model's name in answers."""
        return {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "API_KEY": self.api_key,
            "API_MODEL_NAME": self.deployment_id,
        }

    async def run(self, stop_engine: Callable[[float], Awaitable[None]]) -> None:
        """While the engine runs: wait for it to answer, then serve chat and watch the idle timer."""
        try:
            await asyncio.wait_for(self._wait_until_answering(), self.options.startup_timeout_s)
        except TimeoutError:
            self.start_timed_out = True
            self.note(f"the model server did not answer within {self.options.startup_timeout_s:.0f} s: stopping it")
            await stop_engine(5)
            return
        self._sub = await self.nc.subscribe(Subjects.deploy_chat(self.agent_id, self.deployment_id), cb=self._on_chat)
        self.ready.set()
        self.last_activity = time.monotonic()
        self.note(f"ready: the model server answers (idle stop after {self.options.idle_timeout_s:.0f} s)")
        await self.publish(
            contracts.DeploymentReady(
                job_id=self.deployment_id, agent_id=self.agent_id, attempt=self.attempt, at=datetime.now(UTC)
            ),
            must_arrive=True,
        )
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            await self._report_usage()
            idle = time.monotonic() - self.last_activity
            if self.in_flight == 0 and idle >= self.options.idle_timeout_s:
                self.idle_stopped = True
                self.note(f"no request for {idle:.0f} s: stopping (idle)")
                await stop_engine(10)
                return

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._report_usage()
        await self._http.aclose()

    async def _wait_until_answering(self) -> None:
        """TCP first, then a real one-token chat completion."""
        probe = {"model": self.deployment_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                response = await self._http.post("/v1/chat/completions", json=probe, timeout=60)
                if response.status_code == 200:
                    return
            except (OSError, httpx.HTTPError):
                pass
            await asyncio.sleep(PROBE_EVERY_S)

    async def _on_chat(self, msg) -> None:
        task = asyncio.create_task(self._relay(msg))  # each request on its own: many streams at once
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, msg) -> None:
        self.in_flight += 1
        self.last_activity = time.monotonic()
        tokens = 0
        try:
            body = json.loads(msg.data)
            body["model"] = self.deployment_id
            include_usage = bool((body.pop("stream_options", None) or {}).get("include_usage"))
            response = await self._send(body)
            try:
                tokens = await self._answer(msg.reply, response, bool(body.get("stream")), include_usage)
            finally:
                await response.aclose()
        except (ValueError, AttributeError):
            await self._fail(msg.reply, 400, "the chat request is not a JSON object")
        except httpx.HTTPError as exc:
            await self._fail(msg.reply, 502, f"the model server failed: {type(exc).__name__} {exc}".strip())
        finally:
            await self.nc.publish(msg.reply, b"", headers={END_HEADER: "1"})
            self.in_flight -= 1
            self.last_activity = time.monotonic()
            self._requests += 1
            self._tokens += tokens
            self._last_request_at = datetime.now(UTC)

    async def _answer(self, reply: str, response: httpx.Response, stream: bool, include_usage: bool) -> int:
        """Relay the model server's answer, its errors in OpenAI's shape (chat_errors); the tokens generated."""
        headers = {
            STATUS_HEADER: str(response.status_code),
            "Content-Type": response.headers.get("content-type", "application/json"),
        }
        if stream and response.status_code == 200:
            return await self._relay_events(reply, response, headers, include_usage)
        data = await response.aread()
        replaced = openai_error(response.status_code, data)
        if replaced is not None:
            status, data = replaced
            headers = {STATUS_HEADER: str(status), "Content-Type": "application/json"}
        await self.nc.publish(reply, data, headers=headers)
        return _completion_tokens(data)

    async def _send(self, body: dict) -> httpx.Response:
        """POST a chat request, streamed; once more when a kept-alive connection fails before any answer: the
        server closes its connection after a 500, and the pool may hand it out again before it sees the close."""
        request = self._http.build_request("POST", "/v1/chat/completions", json=body)
        try:
            return await self._http.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return await self._http.send(request, stream=True)

    async def _relay_events(self, reply: str, response: httpx.Response, headers: dict, include_usage: bool) -> int:
        """Server-sent events, one NATS frame each; counts generated pieces and adds a usage event if asked.

        Per token, so kept to string work: the engine's chunks lack OpenAI's constant `object` and `created`
        fields, which are spliced in front rather than parsed and re-encoded."""
        tokens, first = 0, True
        prefix = f'data: {{"object":"chat.completion.chunk","created":{int(time.time())},'
        async for line in response.aiter_lines():
            if not line:
                continue
            if line.startswith("data: {"):
                if _CONTENT.search(line):
                    tokens += 1
                if '"object"' not in line:
                    line = prefix + line[7:]
            elif line.startswith("data: [DONE]") and include_usage:
                usage = {
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": self.deployment_id,
                    "choices": [],
                    "usage": {"prompt_tokens": None, "completion_tokens": tokens, "total_tokens": None},
                }
                await self.nc.publish(reply, f"data: {json.dumps(usage)}\n\n".encode())
            await self.nc.publish(reply, f"{line}\n\n".encode(), headers=headers if first else None)
            first = False
        return tokens

    async def _fail(self, reply: str, status: int, message: str) -> None:
        body = json.dumps(
            {"error": {"message": message, "type": "server_error", "param": None, "code": "upstream_error"}}
        ).encode()
        await self.nc.publish(reply, body, headers={STATUS_HEADER: str(status), "Content-Type": "application/json"})

    async def _report_usage(self) -> None:
        if not self._requests:
            return
        event = contracts.DeploymentUsage(
            job_id=self.deployment_id,
            requests=self._requests,
            tokens=self._tokens,
            last_request_at=self._last_request_at or datetime.now(UTC),
            attempt=self.attempt,
        )
        self._requests = self._tokens = 0
        await self.publish(event)


def _completion_tokens(data: bytes) -> int:
    try:
        return int(json.loads(data)["usage"]["completion_tokens"])
    except (ValueError, KeyError, TypeError):
        return 0
