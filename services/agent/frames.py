"""A model server's answer relayed to the gateway as NATS frames (services/agent/serving.py's module docstring), with
the tokens it counted: the first frame carries `Llmct-Status` (and `Llmct-Retry-After` on a 429), each frame a
piece of the body (one server-sent event when streaming); the caller ends it with an empty `Llmct-End` frame."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import httpx
from nats.aio.client import Client

from services.common import contracts

from .chat_errors import envelope, openai_error

STATUS_HEADER = contracts.ChatFrames.STATUS
_CONTENT = re.compile(r'"content":\s*"[^"]')  # a chunk that carries generated text


@dataclass
class Tokens:
    """What one request used (prompt tokens: 0 where the engine does not say, LLaMA-Factory's streaming)."""

    prompt: int = 0
    completion: int = 0


async def refuse(
    nc: Client, reply: str, status: int, message: str, code: str, *, kind: str = "invalid_request_error", **headers
) -> None:
    """An answer of the agent's own, in OpenAI's error shape."""
    first = {STATUS_HEADER: str(status), "Content-Type": "application/json", **headers}
    await nc.publish(reply, envelope(message, kind, code), headers=first)


async def relay_whole(nc: Client, reply: str, response: httpx.Response) -> Tokens:
    """A non-streamed answer (or an error), its errors in OpenAI's shape (chat_errors)."""
    headers = {
        STATUS_HEADER: str(response.status_code),
        "Content-Type": response.headers.get("content-type", "application/json"),
    }
    data = await response.aread()
    replaced = openai_error(response.status_code, data)
    if replaced is not None:
        status, data = replaced
        headers = {STATUS_HEADER: str(status), "Content-Type": "application/json"}
    await nc.publish(reply, data, headers=headers)
    return _usage(data)


async def relay_vllm_events(nc: Client, reply: str, response: httpx.Response, include_usage: bool) -> Tokens:
    """vLLM's server-sent events, relayed as they arrive: the events of one read from the engine go in one frame
    (one event per frame while it writes one at a time; under load vLLM writes several at once, and a frame per
    event cost the relay half of 50 streams' throughput on two cores). It was asked for a usage chunk always (for
    the deployment's usage); that chunk is read, and dropped when the client did not ask for it."""
    tokens, first, pending = Tokens(), True, ""
    async for text in response.aiter_text():
        pending += text
        *events, pending = pending.split("\n\n")
        kept = []
        for event in events:
            line = event.strip("\n")
            if not line:
                continue
            if line.startswith("data: {") and '"usage":{' in line and '"choices":[]' in line:
                tokens = _usage(line[6:].encode())
                if not include_usage:
                    continue
            kept.append(f"{line}\n\n")
        if kept:
            await nc.publish(reply, "".join(kept).encode(), headers=_first(response) if first else None)
            first = False
    if pending.strip():  # an engine that ended without the blank line after its last event
        await nc.publish(reply, f"{pending.strip()}\n\n".encode(), headers=_first(response) if first else None)
    return tokens


async def relay_llamafactory_events(
    nc: Client, reply: str, response: httpx.Response, include_usage: bool, model: str
) -> Tokens:
    """LLaMA-Factory's server-sent events, one frame each; counts generated pieces and adds a usage event if asked.

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
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": None, "completion_tokens": tokens, "total_tokens": None},
            }
            await nc.publish(reply, f"data: {json.dumps(usage)}\n\n".encode())
        await nc.publish(reply, f"{line}\n\n".encode(), headers=_first(response) if first else None)
        first = False
    return Tokens(completion=tokens)


def _first(response: httpx.Response) -> dict[str, str]:
    return {
        STATUS_HEADER: str(response.status_code),
        "Content-Type": response.headers.get("content-type", "text/event-stream"),
    }


def _usage(data: bytes) -> Tokens:
    try:
        usage = json.loads(data)["usage"]
        return Tokens(prompt=int(usage.get("prompt_tokens") or 0), completion=int(usage["completion_tokens"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return Tokens()
