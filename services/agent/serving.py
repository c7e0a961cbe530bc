"""A deployment's model server on this agent: readiness, chat relayed from NATS, limits, adapters, idle stop, usage.

The server is vLLM's OpenAI server (services/agent/vllm.py) or `llamafactory-cli api`, on a loopback port only this
agent knows, behind a random API key. Chat arrives as core NATS requests on
`deploy.<agent_id>.<deployment_id>.chat` (the gateway's; only this agent's NATS user may read its
`deploy.<agent_id>.>` subjects), with who asks (`Llmct-User`) and, on vLLM, the adapter of the base to answer
with (`Llmct-Adapter`, loaded on first use: adapters.py). At most `max_in_flight` requests go to the engine at
once, `max_queue` more wait (admission.py); the answer goes back to the request's reply subject as frames
(frames.py). The agent needs no inbound port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import msgspec
from nats.aio.client import Client

from services.common import contracts
from services.common.contracts import ChatFrames, Subjects
from services.common.net import free_port

from . import frames
from .adapters import AdapterLoadFailed, AdapterPool, Files, SharedFiles
from .admission import Admission, QueueFull
from .usage import UsageBook
from .vllm import ADAPTER_LOAD_TIMEOUT_S, ServedNames, VllmControl, vllm_environment

log = logging.getLogger(__name__)

END_HEADER = ChatFrames.END
PROBE_EVERY_S = 0.5
IDLE_CHECK_S = 1.0  # also how often usage is reported
LOAD_EVERY_S = 5.0  # the engine's load is reported this often while nothing is asked
_adapter_refs = msgspec.json.Decoder(contracts.AdapterRef)


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
        engine: contracts.ServingEngine = "llamafactory",
        names: ServedNames | None = None,
        adapter_files: Files | None = None,
        default_max_tokens: int | None = None,
    ):
        self.nc = nc
        self.deployment_id = deployment_id
        self.agent_id = agent_id
        self.options = options
        self.attempt = attempt  # of the dispatch: every event this server reports carries it
        self.engine = engine
        self.names = names or ServedNames(model="", base=deployment_id)  # vLLM: what it serves under which name
        self.default_max_tokens = default_max_tokens  # vLLM: for a request that names no limit (a default, not a cap)
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.publish = publish  # the runner's JOB_EVENTS publisher
        self.note = note  # a system line in the deployment's log
        self.ready = asyncio.Event()
        self.idle_stopped = False
        self.start_timed_out = False
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self.usage = UsageBook()
        # LLaMA-Factory's server runs one request at a time (its MAX_CONCURRENT): more would only wait there.
        self.admission = Admission(options.max_in_flight if engine == "vllm" else 1, options.max_queue)
        self._last_report = 0.0
        self._http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0),
            headers={"Authorization": f"Bearer {self.api_key}"},
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )
        self.vllm = VllmControl(self._http, note, options.adapter_slots) if engine == "vllm" else None
        self.adapters = (
            AdapterPool(self.vllm, adapter_files or SharedFiles(), options.adapter_slots) if self.vllm else None
        )
        self._sub = None
        self._tasks: set[asyncio.Task] = set()

    def environment(self, hub: str | None = None) -> dict[str, str]:
        """What the engine reads: where to listen (vLLM: its arguments), the key, the model's name in answers."""
        if self.engine == "vllm":
            return vllm_environment(self.api_key, hub)
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
        self.note(
            f"ready: the model server ({self.engine}) answers (idle stop after {self.options.idle_timeout_s:.0f} s)"
        )
        await self.publish(
            contracts.DeploymentReady(
                job_id=self.deployment_id,
                agent_id=self.agent_id,
                attempt=self.attempt,
                at=datetime.now(UTC),
                engine=self.engine,
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
        await self._report_usage(final=True)
        if self.adapters is not None:
            await self.adapters.close()
        await self._http.aclose()

    async def _wait_until_answering(self) -> None:
        """TCP first, then a real one-token chat completion."""
        probe = {"model": self.names.default, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
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

    # --- chat ------------------------------------------------------------------------------------------------

    async def _on_chat(self, msg) -> None:
        task = asyncio.create_task(self._relay(msg))  # each request on its own: many streams at once
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, msg) -> None:
        self.in_flight += 1
        self.last_activity = time.monotonic()
        try:
            await self._serve(msg)
        except QueueFull as full:
            message = (
                f"deployment {self.deployment_id} has {self.options.max_in_flight} requests running and "
                f"{self.options.max_queue} waiting: retry after {full.retry_after_s} s"
            )
            await frames.refuse(
                self.nc, msg.reply, 429, message, "rate_limit_exceeded", kind="rate_limit_error",
                **{ChatFrames.RETRY_AFTER: str(full.retry_after_s)},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            message = f"the model server failed: {type(exc).__name__} {exc}".strip()
            await frames.refuse(self.nc, msg.reply, 502, message, "upstream_error", kind="server_error")
        finally:
            await self.nc.publish(msg.reply, b"", headers={END_HEADER: "1"})
            self.in_flight -= 1
            self.last_activity = time.monotonic()

    async def _serve(self, msg) -> None:
        """Check the request, wait for a place, bring its adapter, ask the engine, count what it used."""
        headers = msg.headers or {}
        try:
            body = json.loads(msg.data)
            if not isinstance(body, dict):
                raise ValueError(body)
            ref = _adapter_ref(headers.get(ChatFrames.ADAPTER))
        except (ValueError, msgspec.DecodeError):
            return await frames.refuse(self.nc, msg.reply, 400, "the chat request is not a JSON object", "invalid_json")
        if ref is not None and self.adapters is None:
            message = (
                f"deployment {self.deployment_id} runs LLaMA-Factory's server, which serves no adapters on its "
                "model: deploy the base with engine vllm (or auto on an agent with vLLM), or deploy the adapter itself"
            )
            return await frames.refuse(self.nc, msg.reply, 400, message, "adapters_not_supported")
        async with self.admission.place():
            model = self.names.default
            if ref is not None and self.adapters is not None:
                try:
                    model = await asyncio.wait_for(self.adapters.acquire(ref), ADAPTER_LOAD_TIMEOUT_S)
                except (AdapterLoadFailed, TimeoutError) as exc:
                    message = f"adapter {ref.name!r} could not be loaded: {str(exc) or 'the load timed out'}"
                    return await frames.refuse(self.nc, msg.reply, 422, message, "adapter_load_failed")
            tokens = frames.Tokens()
            try:
                tokens = await self._exchange(msg.reply, body, model)
            finally:
                adapter = ref.name if ref is not None else None
                self.usage.count(headers.get(ChatFrames.USER, ""), adapter, tokens.prompt, tokens.completion)
                if ref is not None and self.adapters is not None:
                    await self.adapters.release(ref.name)

    async def _exchange(self, reply: str, body: dict, model: str) -> frames.Tokens:
        """Send the request to the engine as `model` and relay its answer; the tokens it used."""
        body["model"] = model
        if self.default_max_tokens and body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = self.default_max_tokens
        stream = bool(body.get("stream"))
        options = body.pop("stream_options", None)
        include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        if stream and self.engine == "vllm":  # usage always, for the deployment's own count
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        response = await self._send(body)
        try:
            if not stream or response.status_code != 200:
                return await frames.relay_whole(self.nc, reply, response)
            if self.engine == "vllm":
                return await frames.relay_vllm_events(self.nc, reply, response, include_usage)
            return await frames.relay_llamafactory_events(self.nc, reply, response, include_usage, model)
        finally:
            await response.aclose()

    async def _send(self, body: dict) -> httpx.Response:
        """POST a chat request, streamed; once more when a kept-alive connection fails before any answer: the
        server closes its connection after a 500, and the pool may hand it out again before it sees the close."""
        request = self._http.build_request("POST", "/v1/chat/completions", json=body)
        try:
            return await self._http.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return await self._http.send(request, stream=True)

    # --- reports ---------------------------------------------------------------------------------------------

    async def _report_usage(self, final: bool = False) -> None:
        """What was served since the last report, with the engine's load; the load alone every LOAD_EVERY_S."""
        due = time.monotonic() - self._last_report >= LOAD_EVERY_S
        if not self.usage.requests and (final or not due or not self.ready.is_set()):
            return
        requests, tokens, rows = self.usage.take()
        self._last_report = time.monotonic()
        event = contracts.DeploymentUsage(
            job_id=self.deployment_id,
            requests=requests,
            tokens=tokens,
            last_request_at=self.usage.last_request_at or datetime.now(UTC),
            attempt=self.attempt,
            usage=rows,
            load=None if final else await self._load(),
        )
        await self.publish(event)

    async def _load(self) -> contracts.EngineLoad:
        """The engine's requests running and waiting (ours waiting too), its KV-cache use, its adapters."""
        seen = await self.vllm.load() if self.vllm is not None else None
        running, waiting, kv_cache_pct = seen or (self.admission.running, 0, None)
        return contracts.EngineLoad(
            running=running,
            waiting=waiting + self.admission.waiting,
            kv_cache_pct=kv_cache_pct,
            adapters=self.adapters.state() if self.adapters is not None else (),
        )


def _adapter_ref(header: str | None) -> contracts.AdapterRef | None:
    return None if not header else _adapter_refs.decode(header)
