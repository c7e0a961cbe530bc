"""`llmct up`: the whole platform on one machine, every service its own process."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.common.bus import urls_without_credentials
from services.common.nats_auth import agent_user, check_agent_id, default_agent_id
from services.common.private import open_private, private_folder, write_private
from services.common.settings import DEFAULT_PORTS, StoragePaths, from_env, storage_from_env
from services.common.store import migrate

from .bootstrap import ENGINE_PYTHON, TINY_MODEL, ensure_tiny_preset
from .embedded import NatsCluster, NatsServer, PostgresServer, postgres_bindir, wait_until
from .supervise import Child, RestartSettings, Supervisor, how_it_ended
from .usersync import SyncThread, UsersSync

# Start order: the gateway last, so it only opens its port once everything behind it answers.
START_ORDER = ("auth", "scheduler", "datasets", "registry", "agent", "gateway")
REPLICATED = ("scheduler", "gateway")  # what `llmct up` can run more than one of (LLMCT_<NAME>_REPLICAS)


@dataclass
class ServiceProcess:
    """One service running as a child process."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"  # the address it listens on (the gateway's: LLMCT_PUBLIC_HOST)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # what it was started with, to start it again

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.port}/health"

    def start(self, env: dict[str, str]) -> ServiceProcess:
        self.env = env
        private_folder(self.log_path.parent)
        with open_private(self.log_path) as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llmct.cli", "service", self.name],
                env=process_env(self.name, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def healthy(self) -> bool:
        if self.process and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        return self.answers()

    def answers(self) -> bool:
        """Whether the process itself is up: /health 200, or 503 from a gateway whose own checks pass while a
        service behind it is down (that one is its own process's matter)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return response.status == 200
        except urllib.error.HTTPError as error:
            return error.code == 503 and _only_upstreams_down(error)
        except OSError:
            return False

    def launch(self) -> None:
        """Start it again with the environment it had (`llmct up` restarting it)."""
        self.start(self.env)

    def ended(self) -> str | None:
        """None while it runs, else how it ended."""
        if self.process is None or self.process.poll() is None:
            return None
        return how_it_ended(self.process.returncode)

    @property
    def where(self) -> str:
        return str(self.log_path)

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM (the service drains NATS and closes its pool), then kill after the grace period."""
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _only_upstreams_down(error: urllib.error.HTTPError) -> bool:
    try:
        report = json.loads(error.read())
    except (OSError, ValueError):
        return False
    own = report.get("checks") or {}
    return report.get("status") == "degraded" and bool(own) and all(v == "ok" for v in own.values())


# What an agent never needs: it owns nothing in Postgres and checks no caller.
AGENT_NEVER_SEES = ("DATABASE_URL", "LLMCT_SECRET_KEY", "LLMCT_SECRETS_KEY", "LLMCT_ADMIN_PASSWORD", "INVITE_CODE")


def process_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """One service's environment. With LLMCT_AGENT_NATS_PASSWORD set, the agent gets its own NATS user
    (LLMCT_AGENT_NATS_USER) instead of the services' one, and none of the platform's secrets."""
    if name != "agent" or not env.get("LLMCT_AGENT_NATS_PASSWORD"):
        return env
    own = {
        k: v for k, v in env.items() if k not in AGENT_NEVER_SEES and not k.startswith(("NATS_", "LLMCT_AGENT_NATS_"))
    }
    try:
        own["NATS_URL"] = ",".join(urls_without_credentials(env["NATS_URL"]))
    except ValueError as exc:
        raise RuntimeError("NATS_URL has no host name") from exc
    own["NATS_USER"] = env["LLMCT_AGENT_NATS_USER"]
    own["NATS_PASSWORD"] = env["LLMCT_AGENT_NATS_PASSWORD"]
    return own


def start_services(env: dict[str, str], log_dir: Path, names=START_ORDER, timeout: float = 60) -> list[ServiceProcess]:
    """Start services in order, each healthy before the next; returns them for stopping."""
    started: list[ServiceProcess] = []
    try:
        for name in names:
            port = int(env.get(f"LLMCT_{name.upper()}_PORT", DEFAULT_PORTS[name]))
            service = ServiceProcess(name=name, port=port, log_path=log_dir / f"{name}.log").start(env)
            started.append(service)
            wait_until(service.healthy, timeout=timeout, what=f"service {name}", interval=0.1)
    except BaseException:
        stop_services(started)
        raise
    return started


def stop_services(services: list[ServiceProcess]) -> None:
    for service in reversed(services):
        service.stop()


def _password() -> str:
    return secrets.token_urlsafe(18)


def _kept_secret(path: Path, make) -> str:
    """A value kept in the secrets folder so a second `make up` finds the same one (0600 in a 0700 folder)."""
    if path.exists():
        path.chmod(0o600)  # one an older version wrote
        return path.read_text().strip()
    private_folder(path.parent)
    value = make()
    write_private(path, (value + "\n").encode())
    return value


def secrets_folder(storage: StoragePaths) -> Path:
    """Where `llmct up` keeps the platform's secrets: the database, NATS and admin passwords, the signing key and
    the invite code, each a file readable by this user only."""
    return storage.state / "secrets"


def adopt_old_state(storage: StoragePaths) -> None:
    """Move what an older version kept in `<HOST_BASE_PATH>/state` (inside the storage jobs see) to the state folder,
    and its secrets into `secrets/`. Nothing runs yet: Postgres and NATS find their data where they are told."""
    old = storage.base / "state"
    if old.is_dir() and not storage.state.exists() and old.resolve() != storage.state.resolve():
        storage.state.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(old), str(storage.state))
        print(f"moved {old} to {storage.state} (state no longer lives in the shared storage)", flush=True)
    for name in SECRET_FILES:
        loose = storage.state / name
        if loose.is_file() and not (secrets_folder(storage) / name).exists():
            private_folder(secrets_folder(storage))
            loose.replace(secrets_folder(storage) / name)


SECRET_FILES = (
    "secret_key",
    "invite_code",
    "admin_password",
    "postgres_password",
    "nats_service_password",
    "nats_agent_password",
)


@dataclass
class LocalStack:
    """Servers and services `llmct up` started, stopped in reverse by PID."""

    storage: StoragePaths
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    nats: NatsServer | NatsCluster | None = None
    postgres: PostgresServer | None = None
    services: list[ServiceProcess] = field(default_factory=list)
    tiny_model: str | None = None
    users_sync: SyncThread | None = None

    def prepare_env(self) -> None:
        adopt_old_state(self.storage)
        self.private_state()
        kept = secrets_folder(self.storage)
        env = self.env
        env.setdefault("LLMCT_SECRET_KEY", _kept_secret(kept / "secret_key", lambda: secrets.token_hex(32)))
        # Encrypts users' secrets (the scheduler's /api/secrets): lost, they are lost; kept like the signing key.
        env.setdefault("LLMCT_SECRETS_KEY", _kept_secret(kept / "secrets_key", lambda: secrets.token_hex(32)))
        env.setdefault("INVITE_CODE", _kept_secret(kept / "invite_code", lambda: secrets.token_urlsafe(9)))
        env.setdefault("LLMCT_ADMIN_USERNAME", "admin")
        env.setdefault("LLMCT_ADMIN_PASSWORD", _kept_secret(kept / "admin_password", lambda: secrets.token_urlsafe(12)))
        env["HOST_BASE_PATH"] = str(self.storage.base)
        env["LLMCT_STATE_PATH"] = str(self.storage.state)

    def private_state(self) -> None:
        """The state folder (0700) and its secrets folder (0700), outside the storage jobs see. As root, Postgres
        runs as the postgres user, which is let through the state folder (by group) to its own data, not further."""
        private_folder(self.storage.state)
        private_folder(secrets_folder(self.storage))

    def start_servers(self) -> None:
        state, logs = self.storage.state, private_folder(self.storage.logs / "platform")
        if not self.env.get("NATS_URL"):
            port = int(self.env.get("LLMCT_NATS_PORT", "4222"))
            nodes = int(self.env.get("LLMCT_NATS_NODES") or 1)
            password = _kept_secret(secrets_folder(self.storage) / "nats_service_password", _password)
            if nodes > 1:  # a local cluster: every stream, consumer and bucket replicated (at most 3 copies)
                cluster = NatsCluster.local(nodes, state / "nats-cluster", first_port=port, service_password=password)
                self.nats = cluster
                self.provision_local_agent(cluster)
                cluster.start(log_folder=logs)
                self.env.setdefault("LLMCT_NATS_REPLICAS", str(min(nodes, 3)))
            else:
                nats = NatsServer(
                    port=port, monitor_port=port + 4000, store_dir=state / "nats", service_password=password
                )
                self.nats = nats
                self.provision_local_agent(nats)
                nats.start(log_file=logs / "nats.log")
            self.env["NATS_URL"] = self.nats.url
        if not self.env.get("DATABASE_URL"):
            self.env["DATABASE_URL"] = self._start_postgres(state / "postgres")

    def provision_local_agent(self, nats: NatsServer | NatsCluster) -> None:
        """The local agent's own NATS user (LLMCT_AGENT_ID, else the host name), its password kept in state/."""
        agent = check_agent_id(self.env.get("LLMCT_AGENT_ID") or default_agent_id())
        nats.add_agent(agent, _kept_secret(secrets_folder(self.storage) / "nats_agent_password", _password))
        self.env.update(
            {
                "LLMCT_AGENT_ID": agent,
                "LLMCT_AGENT_NATS_USER": agent_user(agent),
                "LLMCT_AGENT_NATS_PASSWORD": nats.agents[agent],
            }
        )

    def _start_postgres(self, data_dir: Path) -> str:
        port = int(self.env.get("LLMCT_PG_PORT", "5433"))
        password = _kept_secret(secrets_folder(self.storage) / "postgres_password", lambda: secrets.token_urlsafe(24))
        if postgres_bindir() is not None:
            self.postgres = PostgresServer(data_dir=data_dir, port=port, password=password).start()
            return self.postgres.url
        try:
            # A pip-installed embedded Postgres for machines without one; optional, so often not installed.
            import pgserver  # pyright: ignore[reportMissingImports]
        except ImportError as exc:
            raise RuntimeError(
                "no Postgres found: install postgresql, `pip install pgserver`, or set DATABASE_URL"
            ) from exc
        # pgserver listens on a Unix socket in a folder of its own only (no TCP port), with its own authentication.
        return pgserver.get_server(str(data_dir), cleanup_mode=None).get_uri()

    def start(self) -> None:
        self.storage.ensure()
        self.prepare_env()
        self.start_servers()
        migrate(self.env["DATABASE_URL"])
        self.follow_joined_agents()
        if ENGINE_PYTHON.exists():  # a fresh stack can train right away on the CPU
            ensure_tiny_preset(self.storage, self.env["DATABASE_URL"], TINY_MODEL)
            self.tiny_model = TINY_MODEL
        replicas = self.replica_ports()
        if len(replicas["scheduler"]) > 1:  # every gateway forwards to every scheduler, the first included
            self.env["LLMCT_SCHEDULER_URLS"] = ",".join(f"http://127.0.0.1:{port}" for port in replicas["scheduler"])
        self.services = start_services(self.env, self.storage.logs / "platform")
        self.services += self.start_replicas(replicas)

    def replica_ports(self) -> dict[str, list[int]]:
        """The ports of each scheduler and gateway replica (LLMCT_SCHEDULER_REPLICAS, LLMCT_GATEWAY_REPLICAS): the
        service's own port, then +100 for each further one."""
        found = {}
        for name in REPLICATED:
            count = int(self.env.get(f"LLMCT_{name.upper()}_REPLICAS") or 1)
            if not 1 <= count <= 9:
                raise RuntimeError(f"LLMCT_{name.upper()}_REPLICAS must be from 1 to 9, not {count}")
            port = int(self.env.get(f"LLMCT_{name.upper()}_PORT") or DEFAULT_PORTS[name])
            found[name] = [port + 100 * i for i in range(count)]
        return found

    def start_replicas(self, replicas: dict[str, list[int]]) -> list[ServiceProcess]:
        """The second and further replicas of the scheduler and the gateway, each healthy before the next."""
        started: list[ServiceProcess] = []
        for name, ports in replicas.items():
            for index, port in enumerate(ports[1:], 2):
                log_path = self.storage.logs / "platform" / f"{name}-{index}.log"
                env = {**self.env, f"LLMCT_{name.upper()}_PORT": str(port)}
                host = self.env.get("LLMCT_PUBLIC_HOST", "127.0.0.1") if name == "gateway" else "127.0.0.1"
                service = ServiceProcess(name=name, port=port, log_path=log_path, host=host).start(env)
                started.append(service)
                try:
                    wait_until(service.healthy, timeout=60, what=f"{name} replica {index}", interval=0.1)
                except BaseException:
                    stop_services(started)
                    raise
        return started

    def follow_joined_agents(self) -> None:
        """Keep the embedded nats-server's users in step with the agents that joined with a token (the scheduler
        nudges on every join and revocation): the launcher owns that server, so it writes its config."""
        if self.nats:
            sync = UsersSync(self.env["NATS_URL"], self.env["DATABASE_URL"], self.nats.set_joined)
            self.users_sync = SyncThread(sync).start()

    def supervised(self) -> list[Child]:
        """What `llmct up` restarts when it dies: the servers it started itself (a Postgres from pgserver is not
        one), then every service."""
        nats = self.nats.nodes if isinstance(self.nats, NatsCluster) else [self.nats] if self.nats else []
        servers: list[Child] = [*nats, *([self.postgres] if self.postgres else [])]
        return [*servers, *self.services]

    def stop(self) -> None:
        stop_services(self.services)
        if self.users_sync:
            self.users_sync.stop()
        if self.postgres:
            self.postgres.stop()
        if self.nats:
            self.nats.stop()


def where_kept(stack: LocalStack, name: str, variable: str) -> str:
    """Where to read a secret, never the secret: the banner lands in terminals' scrollback, CI logs and journals."""
    path = secrets_folder(stack.storage) / name
    if path.is_file() and path.read_text().strip() == stack.env.get(variable):
        return f"in {path} (`cat` it; readable by you only)"
    return f"as set in {variable}"


def banner(stack: LocalStack) -> str:
    env = stack.env
    url = (
        f"http://{env.get('LLMCT_PUBLIC_HOST', '127.0.0.1')}:{env.get('LLMCT_GATEWAY_PORT', DEFAULT_PORTS['gateway'])}"
    )
    admin_password = where_kept(stack, "admin_password", "LLMCT_ADMIN_PASSWORD")
    more = stack.replica_ports()["gateway"][1:]
    return "\n".join(
        [
            "",
            f"LLM-Cloud-Trainer is up: {url}",
            *([f"  gateways:     {url} and replicas on ports {', '.join(map(str, more))}"] if more else []),
            f"  API docs:     {url}/api/docs",
            f"  admin login:  {env['LLMCT_ADMIN_USERNAME']}, its password {admin_password}",
            f"  invite code:  {where_kept(stack, 'invite_code', 'INVITE_CODE')}   (new users register with it)",
            f"  logs:         {stack.storage.logs / 'platform'}",
            *(
                [
                    f"  tiny model:   preset {stack.tiny_model!r} with datasets tiny_sft / tiny_pt "
                    "(train on CPU: gpu_count 0)"
                ]
                if stack.tiny_model
                else []
            ),
            "Ctrl-C stops everything this command started.",
            "",
        ]
    )


SUPERVISE_EVERY_S = 0.25


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_up() -> int:
    """Bring the platform up and keep it up until Ctrl-C or SIGTERM."""
    stack = LocalStack(storage=storage_from_env())
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        print(banner(stack), flush=True)
        supervisor = Supervisor(stack.supervised(), from_env(RestartSettings, stack.env))
        while True:
            supervisor.tick()
            time.sleep(SUPERVISE_EVERY_S)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"llmct up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
