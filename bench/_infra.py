"""What every benchmark starts for itself: real NATS, real Postgres (migrated), storage, a user, results.

Nothing here is a fake: the servers are the same embedded ones `llmct up` and the tests use.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from llmct.embedded import NatsCluster, NatsServer, PostgresServer, free_port, wait_until
from llmct.launcher import ServiceProcess, start_services, stop_services
from services.common.settings import Settings, settings_from_env
from services.common.store import migrate

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


@dataclass
class Infra:
    """NATS + Postgres + a storage folder + the environment services read, all throwaway.

    `nats_nodes` > 1 starts a local NATS cluster of that many nodes instead of one server, and has every stream
    replicated on all of them (LLMCT_NATS_REPLICAS), as `make up` with LLMCT_NATS_NODES does."""

    name: str
    keep: bool = False
    nats_nodes: int = 1
    base: Path = field(init=False)
    nats: NatsServer | None = None
    cluster: NatsCluster | None = None
    postgres: PostgresServer | None = None
    env: dict[str, str] = field(default_factory=dict)
    services: list[ServiceProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"llmct-bench-{self.name}-"))
        os.chmod(self.base, 0o755)  # Postgres runs as its own user and must reach its folder

    def start(self) -> Infra:
        if self.nats_nodes > 1:
            self.cluster = NatsCluster.local(self.nats_nodes, self.base / "nats").start(log_folder=self.base)
            nats_url = self.cluster.url
        else:
            self.nats = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=self.base / "nats")
            self.nats.start(log_file=self.base / "nats.log")
            nats_url = self.nats.url
        (self.base / "pg").mkdir()
        os.chmod(self.base / "pg", 0o755)
        self.postgres = PostgresServer(data_dir=self.base / "pg" / "data", port=free_port(), database="llmct_bench")
        self.postgres.start()
        migrate(self.postgres.url)
        storage = self.base / "cloud-llm"
        self.env = {
            "NATS_URL": nats_url,
            "LLMCT_NATS_REPLICAS": str(self.nats_nodes),
            "DATABASE_URL": self.postgres.url,
            "LLMCT_SECRET_KEY": secrets.token_hex(32),
            "INVITE_CODE": "bench-invite",
            "LLMCT_ADMIN_USERNAME": "bench-admin",
            "LLMCT_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "HOST_BASE_PATH": str(storage),
            "HF_HUB_OFFLINE": "1",
        }
        os.environ.update(self.env)
        self.settings.storage.ensure()
        return self

    @property
    def settings(self) -> Settings:
        return settings_from_env()

    def start_services(
        self, names: Sequence[str], profile: str | None = None, **extra_env: str
    ) -> dict[str, ServiceProcess]:
        """Services as child processes (`llmct service <name>`), each healthy before the next.

        `profile` names one of them to run under cProfile instead (stats written when it stops)."""
        env = {**os.environ, **self.env, **extra_env}
        for name in ("gateway", "auth", "scheduler", "datasets", "registry", "agent"):
            key = f"LLMCT_{name.upper()}_PORT"
            if key not in self.env:
                self.env[key] = env[key] = str(free_port())
            env[key] = self.env[key]
        os.environ.update({k: v for k, v in self.env.items() if k.endswith("_PORT")})
        log_dir = self.base / "service-logs"
        started: list[ServiceProcess] = []
        for name in names:
            if name == profile:
                RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                service = ProfiledService(
                    name=name,
                    port=int(env[f"LLMCT_{name.upper()}_PORT"]),
                    log_path=log_dir / f"{name}.log",
                    stats_path=RESULTS_DIR / f"{self.name}-{name}.prof",
                ).start(env)
                self.services.append(service)
                wait_until(service.healthy, timeout=90, what=f"service {name}", interval=0.1)
                started.append(service)
            else:
                more = start_services(env, log_dir, names=(name,), timeout=90)
                self.services.extend(more)
                started.extend(more)
        return {s.name: s for s in started}

    def start_replicas(self, name: str, count: int, **extra_env: str) -> list[ServiceProcess]:
        """`count` processes of one service side by side, each on its own port; their base URLs are what the
        gateway takes in LLMCT_<NAME>_URLS (`replica_urls`)."""
        env = {**os.environ, **self.env, **extra_env}
        started: list[ServiceProcess] = []
        for i in range(count):
            port = free_port()
            more = start_services(
                {**env, f"LLMCT_{name.upper()}_PORT": str(port)},
                self.base / "service-logs" / f"{name}-{i + 1}",
                names=(name,),
                timeout=90,
            )
            self.services.extend(more)
            started.extend(more)
        return started

    @staticmethod
    def replica_urls(services: Sequence[ServiceProcess]) -> str:
        return ",".join(f"http://127.0.0.1:{service.port}" for service in services)

    def stop_some(self, services: Sequence[ServiceProcess]) -> None:
        """Stop these services (and forget them), leaving the others running."""
        stop_services(list(services))
        gone = {id(service) for service in services}
        self.services = [service for service in self.services if id(service) not in gone]

    @property
    def nats_urls(self) -> list[str]:
        """NATS_URL as the list nats-py takes (a cluster's is comma-separated)."""
        return [part.strip() for part in self.env["NATS_URL"].split(",") if part.strip()]

    def stop(self) -> None:
        stop_services(self.services)
        self.services = []
        if self.postgres:
            self.postgres.stop("immediate")
        if self.nats:
            self.nats.stop()
        if self.cluster:
            self.cluster.stop()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Infra:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class ProfiledService(ServiceProcess):
    """A service under cProfile, timed by the CPU it uses (bench/_cpuprofile.py). Stopped with SIGINT: uvicorn
    re-raises SIGTERM after its shutdown, which would kill the interpreter before cProfile writes its stats; SIGINT
    ends in KeyboardInterrupt instead."""

    stats_path: Path | None = None

    def start(self, env: dict[str, str]) -> ProfiledService:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench._cpuprofile", str(self.stats_path), "service", self.name],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self, grace_s: float = 30) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.print_top()

    def print_top(self, n: int = 15) -> None:
        import io
        import pstats

        if not self.stats_path or not self.stats_path.exists():
            print(f"no profile written for {self.name}")
            return
        out = io.StringIO()
        stats = pstats.Stats(str(self.stats_path), stream=out)
        stats.sort_stats("tottime").print_stats(n)
        stats.sort_stats("cumulative").print_stats(n * 3)
        text = out.getvalue()
        self.stats_path.with_suffix(".txt").write_text(text)
        print(
            f"\n{self.name} under cProfile (top {n} by own time; the profiler slows it down, so compare shares, "
            f"not times): {self.stats_path.relative_to(REPO_ROOT)}"
        )
        print(text[text.find("ncalls") - 3 :] if "ncalls" in text else text)


async def make_user(pool, username: str, role: str = "user") -> str:
    """A user row (no password hashing: the benchmarks log in with tokens they sign themselves)."""
    from services.auth.store import insert_user
    from services.common.security import new_id

    row = await insert_user(pool, user_id=new_id("usr"), username=username, password_hash="!bench", role=role)
    return row["id"]


async def public_tiny_datasets(conn, data_dir: Path) -> None:
    """The tiny datasets (tiny_sft, tiny_pt), public, listed the way `llmct make-tiny` and the tests list them."""
    from llmct.tiny.data import write_tiny_datasets

    write_tiny_datasets(data_dir)
    try:
        from llmct.bootstrap import mark_tiny_public
        from services.datasets.catalog import sync_public_datasets
    except ImportError:  # a tree from before the datasets service: dataset_info.json is the catalog
        return
    mark_tiny_public(data_dir)
    await sync_public_datasets(conn, data_dir)


def token_for(settings: Settings, user_id: str, username: str, role: str = "user") -> str:
    """A signed access token, as auth would issue it at login (skips the argon2 login on purpose)."""
    from services.common.security import issue_token

    token, _, _ = issue_token(settings.secret_key, user_id=user_id, username=username, role=role, ttl_s=6 * 3600)
    return token


# --- numbers ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/max/mean in milliseconds of latencies given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else math.nan,
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else math.nan,
    }


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 2) if baseline else math.nan


# --- output -------------------------------------------------------------------------------------


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan,) * 3
    return {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "services")),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print("  " + "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("-", "").replace("x", "").isdigit()


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"benchmark": name, "finished_at": datetime.now(UTC).isoformat(), **results}
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (RESULTS_DIR / f"{name}-latest.json").write_text(path.read_text())
    print(f"\nresults written to {path.relative_to(REPO_ROOT)}")
    return path


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


class CpuMeter:
    """CPU seconds used by the processes a benchmark started (and by itself), to see who is busy."""

    def __init__(self, infra: Infra) -> None:
        self.infra = infra

    def _pids(self) -> dict[str, list[int]]:
        import psutil

        pids: dict[str, list[int]] = {"bench (this process)": [os.getpid()]}
        if self.infra.nats and self.infra.nats.process:
            pids["nats-server"] = [self.infra.nats.process.pid]
        if self.infra.cluster:
            for i, node in enumerate(self.infra.cluster.nodes):
                if node.process:
                    pids[f"nats-server n{i + 1}"] = [node.process.pid]
        if self.infra.postgres:
            try:
                master = int((self.infra.postgres.data_dir / "postmaster.pid").read_text().split()[0])
                pids["postgres (all backends)"] = [master] + [c.pid for c in psutil.Process(master).children(True)]
            except (OSError, ValueError, psutil.Error):
                pass
        for service in self.infra.services:
            if service.process and service.process.poll() is None:
                name, k = f"service {service.name}", 1
                while name in pids:  # replicas of one service: each its own line
                    k += 1
                    name = f"service {service.name} #{k}"
                pids[name] = [service.process.pid]
        return pids

    def snapshot(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for name, pids in self._pids().items():
            total = 0.0
            for pid in pids:
                try:
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
                except psutil.Error:
                    pass
            out[name] = total
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}
