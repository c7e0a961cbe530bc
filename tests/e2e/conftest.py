"""The whole platform as processes: every service on its own port, through the gateway; a browser for the web
client's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from llmct.bootstrap import ENGINE_PYTHON, ensure_tiny_preset
from llmct.embedded import free_port
from llmct.launcher import TINY_MODEL, ServiceProcess, start_services, stop_services
from llmct.usersync import SyncThread, UsersSync

from .helpers import CHROMIUM, CHROMIUM_ARGS, ROOT, WEB_INDEX


@dataclass
class Stack:
    env: dict[str, str]
    services: dict[str, ServiceProcess]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.services['gateway'].port}"

    @property
    def invite_code(self) -> str:
        return self.env["INVITE_CODE"]

    @property
    def admin_username(self) -> str:
        return self.env["LLMCT_ADMIN_USERNAME"]

    @property
    def admin_password(self) -> str:
        return self.env["LLMCT_ADMIN_PASSWORD"]

    def restart(self, name: str) -> None:
        """Stop one service (SIGTERM) and start it again, healthy."""
        self.services[name].stop()
        self.start(name)

    def kill(self, name: str) -> None:
        """Kill one service with SIGKILL, as a crash would: nothing of it runs after this returns."""
        process = self.services[name].process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def start(self, name: str) -> None:
        """Start a stopped or killed service again, healthy."""
        self.services[name] = start_services(self.env, self.services[name].log_path.parent, names=(name,))[0]


E2E_AGENT = "e2e-agent"


# Package scope: the stack's scheduler and agent share the session's NATS and Postgres, so they stop when the e2e
# tests end, before tests that need to be the only scheduler (durable consumers) or agent (placement) run.
@pytest.fixture(scope="package")
def stack(stack_env, nats_server, tmp_path_factory):
    env = {**os.environ, **stack_env, "LLMCT_HEARTBEAT_S": "1", "LLMCT_CPU_SLOTS": "2", "LLMCT_RUNTIME": "process"}
    # Jobs report to the test's MLflow server on loopback, and W&B never leaves the machine (docs/tracking.md).
    env.update({"LLMCT_TRACKING_ALLOW": "127.0.0.1", "LLMCT_WANDB_MODE": "offline"})
    # The agent runs as its own NATS user, limited to its own subjects, as in production (docs/fleet.md).
    agent = nats_server.add_agent(E2E_AGENT)
    env.update(
        {
            "LLMCT_AGENT_ID": E2E_AGENT,
            "LLMCT_AGENT_NATS_USER": agent["NATS_USER"],
            "LLMCT_AGENT_NATS_PASSWORD": agent["NATS_PASSWORD"],
        }
    )
    for name in ("gateway", "auth", "scheduler", "datasets", "registry", "agent"):
        env[f"LLMCT_{name.upper()}_PORT"] = str(free_port())
    log_dir = tmp_path_factory.mktemp("service-logs")
    # As `llmct up`'s launcher does: agents that join with a token get their NATS user in the server.
    users_sync = SyncThread(UsersSync(nats_server.url, env["DATABASE_URL"], nats_server.set_joined)).start()
    services = start_services(env, log_dir)
    stack = Stack(env=env, services={s.name: s for s in services})
    yield stack
    stop_services(list(stack.services.values()))
    users_sync.stop()


@pytest.fixture(scope="package")
def tiny_model(stack, settings, postgres_server):
    """The tiny Llama built with the engine's interpreter and registered as a preset, plus tiny datasets."""
    if not ENGINE_PYTHON.exists():
        pytest.fail(f"{ENGINE_PYTHON} is missing: run engine/install.sh (make test does)")
    ensure_tiny_preset(settings.storage, postgres_server.url, TINY_MODEL)
    return TINY_MODEL


@pytest.fixture
async def gw(stack):
    """An HTTP client on the gateway."""
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def web_prerequisites() -> None:
    """A browser and a built client, checked before `stack` so a machine without them starts nothing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} does not exist: install it with `apt-get install -y chromium`")
    if not WEB_INDEX.exists():
        pytest.fail(
            f"{WEB_INDEX.relative_to(ROOT)} does not exist: build the web client first "
            "(`cd web && npm ci && npm run build`)"
        )


@pytest.fixture(scope="module")
def browser(web_prerequisites) -> Iterator[Browser]:
    # Module scope: the sync API's event loop lives only while these tests run, never beside
    # the async tests' loop.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
