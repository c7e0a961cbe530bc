"""`llmct up` keeps the platform up (issue 16, item 3): a service or an agent killed with -9 is restarted and a line
says so, the rest stays up; the gateway's /health names a service behind it that does not answer; SIGTERM stops
everything it started, the embedded Postgres and NATS included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from llmct.embedded import free_port
from services.common.settings import REPO_ROOT, SERVICE_NAMES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Up:
    """A running `llmct up` and what it started."""

    process: subprocess.Popen
    ports: dict[str, int]
    output: Path
    state: Path

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def service(self, name: str) -> psutil.Process:
        """The launcher's child running `llmct service <name>`."""
        for child in psutil.Process(self.process.pid).children():
            if child.cmdline()[-2:] == ["service", name]:
                return child
        raise AssertionError(f"no {name} process under llmct up:\n{self.said()[-3000:]}")

    def health(self, name: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/health", timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except OSError:
            return 0, {}


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def up():
    # Postgres runs as its own user, which cannot enter pytest's private tmp folders.
    folder = Path(tempfile.mkdtemp(prefix="llmct-supervise-"))
    os.chmod(folder, 0o755)
    ports = {name: free_port() for name in (*SERVICE_NAMES, "nats", "pg")}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(folder)),
        "PYTHONPATH": str(REPO_ROOT),
        "HOST_BASE_PATH": str(folder / "cloud-llm"),
        "HF_HUB_OFFLINE": "1",
        "LLMCT_AGENT_ID": "supervised-agent",
        "LLMCT_RESTART_FIRST_S": "0.5",
        "LLMCT_RESTART_MAX_S": "4",
        "LLMCT_RESTART_BURST": "3",
        **{f"LLMCT_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    output = folder / "up.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmct.cli", "up"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    stack = Up(process=process, ports=ports, output=output, state=folder / "cloud-llm-state")
    try:
        wait_for(lambda: "is up:" in stack.said() or process.poll() is not None, "llmct up", timeout=240)
        assert process.poll() is None, stack.said()[-5000:]
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_agent_and_service_are_restarted_and_the_rest_stays_up(up):
    agent, scheduler, auth = up.service("agent"), up.service("scheduler"), up.service("auth")
    agent.send_signal(signal.SIGKILL)
    scheduler.send_signal(signal.SIGKILL)
    for name in ("agent", "scheduler"):
        wait_for(lambda name=name: f"{name} died (killed by SIGKILL)" in up.said(), f"a line on {name}'s death")
        wait_for(lambda name=name: f"{name} is back" in up.said(), f"a line on {name}'s return")
        assert up.service(name).pid not in (agent.pid, scheduler.pid)
        assert up.health(name)[0] == 200
    assert up.process.poll() is None, "the launcher is still up"
    assert up.service("auth").pid == auth.pid, "nothing else was restarted"
    died = next(line for line in up.said().splitlines() if "agent died" in line)
    assert "restarting it in" in died and " at " in died, died


def test_the_gateway_names_a_service_behind_it_that_does_not_answer(up):
    registry = up.service("registry")
    registry.send_signal(signal.SIGSTOP)  # alive, so not restarted, but it answers nothing
    try:
        status, report = wait_for(
            lambda: (found := up.health("gateway"))[0] == 503 and found,
            "the gateway's /health turning 503",
            timeout=30,
        )
        assert report["down"] == ["registry"], report
        assert report["upstreams"]["registry"] != "ok" and report["upstreams"]["auth"] == "ok", report
        assert report["checks"] == {"nats": "ok", "postgres": "ok"}, "the gateway itself is fine"
    finally:
        registry.send_signal(signal.SIGCONT)
    wait_for(lambda: up.health("gateway")[0] == 200, "the gateway's /health green again", timeout=30)


def test_a_killed_embedded_nats_is_restarted_and_services_reconnect(up):
    nats_server = next(c for c in psutil.Process(up.process.pid).children() if "nats-server" in c.name())
    nats_server.send_signal(signal.SIGKILL)
    wait_for(lambda: "nats died (killed by SIGKILL)" in up.said(), "a line on nats's death")
    wait_for(lambda: "nats is back" in up.said(), "a line on nats's return")
    wait_for(lambda: up.health("gateway")[0] == 200, "the gateway green again after NATS came back", timeout=60)
    assert up.process.poll() is None


def test_a_service_that_keeps_failing_is_said_to_and_retried_slowly_until_it_starts(up):
    registry = up.service("registry")
    with socket.socket() as squatter:
        registry.send_signal(signal.SIGKILL)
        registry.wait(10)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", up.ports["registry"]))  # its port taken: every start fails at once
        squatter.listen()
        started = time.monotonic()
        wait_for(lambda: "registry keeps failing: 3 exits in a row" in up.said(), "the keeps-failing line")
        deaths = up.said().count("registry died")
        # 0.5 + 1 + 2 s of waits, then 4 s each: no spin, however fast each start fails.
        assert deaths <= 3 + (time.monotonic() - started) / 4, up.said()[-3000:]
        assert "see " in up.said() and "registry.log" in up.said()
    wait_for(lambda: "registry is back" in up.said(), "registry back once its port is free", timeout=60)
    wait_for(lambda: up.health("gateway")[0] == 200, "the gateway green again", timeout=30)


def test_sigterm_stops_everything_it_started(up):
    children = psutil.Process(up.process.pid).children(recursive=True)
    postmaster = psutil.Process(int((up.state / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0]))
    started = time.monotonic()
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(60) == 0
    assert time.monotonic() - started < 30, "stopped promptly"
    gone, alive = psutil.wait_procs([*children, postmaster], timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert "restarted" not in up.said().split("stopping…", 1)[1], "nothing is restarted while stopping"
