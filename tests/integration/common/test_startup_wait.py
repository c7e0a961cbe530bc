"""A service started while Postgres and NATS are down waits for them instead of exiting (issue 16, item 3): its
/health answers 503 `starting` naming what it waits for, a log line says so, its routes answer 503 with Retry-After,
and it is healthy once they come up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from llmct.embedded import NatsServer, PostgresServer, free_port
from services.common.store import migrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def get(url: str, headers: dict | None = None) -> tuple[int, dict, Message | dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers
    except OSError:
        return 0, {}, {}


def wait_for(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture
def absent_servers(tmp_path):
    """A NATS and a Postgres whose addresses are known but which are not started yet."""
    folder = Path(tempfile.mkdtemp(prefix="llmct-late-pg-"))  # Postgres's own user must enter it
    os.chmod(folder, 0o755)
    nats = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=tmp_path / "nats")
    postgres = PostgresServer(data_dir=folder / "data", port=free_port(), database="late").start()
    migrate(postgres.url)
    postgres.stop("fast")  # made and migrated, then down: as after a reboot, before Postgres is back
    yield nats, postgres
    nats.stop()
    if (folder / "data" / "postmaster.pid").exists():
        postgres.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


def test_a_service_waits_for_postgres_and_nats_and_says_so(stack_env, absent_servers, tmp_path):
    nats, postgres = absent_servers
    port = free_port()
    env = {
        **os.environ,
        **stack_env,
        "NATS_URL": nats.url,
        "DATABASE_URL": postgres.url,
        "LLMCT_REGISTRY_PORT": str(port),
    }
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "llmct.cli", "service", "registry"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    health = f"http://127.0.0.1:{port}/health"
    try:
        status, report, _ = wait_for(lambda: (found := get(health))[0] and found, "/health answering", timeout=60)
        assert status == 503 and report["status"] == "starting", report
        assert report["waiting_for"] == ["postgres", "nats"], report
        assert report["checks"] == {"postgres": "ConnectionRefusedError", "nats": "ConnectionRefusedError"}, report
        assert str(nats.port) not in json.dumps(report), "the kind of failure only; addresses stay in the log"
        assert "waiting for postgres, nats" in log.read_text()
        status, body, headers = get(f"http://127.0.0.1:{port}/api/models", {"Authorization": "Bearer llmct_not-yet"})
        assert status == 503 and body["error"]["code"] == "service_starting", body
        assert headers.get("Retry-After") and "postgres" in body["error"]["message"]

        nats.start()
        wait_for(lambda: get(health)[1].get("waiting_for") == ["postgres"], "only postgres awaited")
        postgres.start()
        status, report, _ = wait_for(lambda: (found := get(health))[0] == 200 and found, "healthy", timeout=60)
        assert report["checks"] == {"nats": "ok", "postgres": "ok"}, report
        assert service.poll() is None
        assert "registry ready" in log.read_text()
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) in (0, -signal.SIGTERM), log.read_text()[-3000:]  # uvicorn re-raises the signal
