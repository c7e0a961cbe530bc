"""`llmct deploy` and `llmct chat`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import click

from . import bodies
from .errors import CliError, Exit
from .http import Gateway, segment
from .output import clean, print_json, say

FINAL = ("failed", "stopped")


def deployment_body(model: str, options: dict, settings: tuple[str, ...]) -> dict:
    """The POST /api/deployments body; `engine` only when asked for (a gateway without a choice refuses the field)."""
    names = {"engine": "engine", "gpus": "gpu_count", "template": "template", "idle_timeout": "idle_timeout_s"}
    body: dict = {"model": model}
    body.update({names[k]: v for k, v in options.items() if v is not None})
    for text in settings:
        bodies.set_path(body, *bodies.parse_setting(text))
    return body


def wait_ready(gateway: Gateway, deployment: dict, timeout_s: float) -> dict:
    """Poll the deployment until it is ready; exit 4 when it fails, stops or is not ready in time."""
    deadline = time.monotonic() + timeout_s
    while deployment["state"] != "ready":
        if deployment["state"] in FINAL:
            why = " ".join(clean(part) for part in (deployment.get("reason"), deployment.get("message")) if part)
            raise CliError(
                f"deployment {deployment['id']} {deployment['state']}: {why or 'no reason given'}", Exit.ENDED_BADLY
            )
        if time.monotonic() > deadline:
            raise CliError(
                f"deployment {deployment['id']} is still {deployment['state']} after {timeout_s:.0f} s (it goes on: "
                f"`llmct deploy` again is refused while it lives; stop it in the web client)",
                Exit.ENDED_BADLY,
            )
        time.sleep(1.0)
        deployment = gateway.get(f"/api/deployments/{segment(deployment['id'])}")
    return deployment


@click.command()
@click.argument("model")
@click.option("--engine", help="the serving engine (llamafactory, vllm), where the platform offers a choice")
@click.option("--gpus", type=int, help="gpu_count (0: on a CPU)")
@click.option("--template", help="the chat template (default: the model's)")
@click.option("--idle-timeout", type=int, help="seconds without a request before it stops")
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE", help="any other field (a.b=v: nested)")
@click.option("--no-wait", is_flag=True, help="return once it is queued")
@click.option("--timeout", type=float, default=900, show_default=True, help="seconds to wait for it to be ready")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def deploy(model: str, settings: tuple[str, ...], no_wait: bool, timeout: float, as_json: bool, **options) -> None:
    """Serve MODEL and wait until it answers (exit 4 if it fails); prints the deployment's id."""
    with Gateway.from_config() as gateway:
        deployment = gateway.post("/api/deployments", json=deployment_body(model, options, settings))
        if not no_wait:
            say(f"{deployment['id']} {deployment['state']}: waiting until it is ready (Ctrl-C stops waiting, not it)")
            deployment = wait_ready(gateway, deployment, timeout)
    if as_json:
        print_json(deployment)
        return
    if not no_wait:
        say(f"{deployment['id']} is ready: `llmct chat {deployment['id']}`")
    click.echo(deployment["id"])


def sse_data(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of a server-sent event stream, until `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def answer_of(gateway: Gateway, body: dict) -> str:
    """Stream one completion to stdout as it comes; the whole answer."""
    parts: list[str] = []
    with gateway.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, timeout=None) as answer:
        for chunk in sse_data(answer.iter_lines()):
            if "error" in chunk:
                error = chunk["error"] or {}
                raise CliError(f"the model server failed: {error.get('message', error)}", Exit.REFUSED)
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                parts.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


def prompts() -> Iterator[str]:
    """What the user types, a message a line, until Ctrl-D or an empty `/exit`."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    while True:
        try:
            text = input("> ")
        except EOFError:
            click.echo()
            return
        if text.strip() in ("/exit", "/quit"):
            return
        if text.strip():
            yield text


@click.command()
@click.argument("model")
@click.option("--message", "-m", help="send one message, print the answer, exit (default: stdin when piped)")
@click.option("--system", help="a system prompt")
@click.option("--max-tokens", type=click.IntRange(1, 32_768))
@click.option("--temperature", type=click.FloatRange(0, 2))
def chat(
    model: str, message: str | None, system: str | None, max_tokens: int | None, temperature: float | None
) -> None:
    """Chat with a deployment (its id, or the name of a model you deployed), the answer streamed.

    Interactive on a terminal (Ctrl-D ends); one message with -m or from stdin when piped."""
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    options = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    if message is None and not sys.stdin.isatty():
        message = sys.stdin.read()
    with Gateway.from_config() as gateway:
        for text in [message] if message is not None else prompts():
            history.append({"role": "user", "content": text})
            reply = answer_of(gateway, {"model": model, "messages": history, **options})
            history.append({"role": "assistant", "content": reply})
