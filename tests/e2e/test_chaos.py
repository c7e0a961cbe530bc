"""The chaos test (issue 16): a 3-node NATS cluster, two schedulers, two gateways, two agents and a stream of short
tiny jobs with log viewers; kill -9 in turn a scheduler, a gateway, an agent, the NATS node leading the job queue's
stream, and Postgres, each started again a few seconds later. Then every accepted job ended once and correctly,
nothing ran that its client was told was refused, a client retrying with its idempotency key got the one job,
every log replays complete and in order (whole, over the socket, and after a seam), clients saw only 2xx and
503s with Retry-After, and every service was healthy again within a bound. The figures are printed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets

from llmct.bootstrap import ensure_tiny_preset
from llmct.embedded import NatsCluster, PostgresServer, free_port
from llmct.launcher import TINY_MODEL, ServiceProcess
from services.common.logtext import line_text
from services.common.settings import StoragePaths
from services.common.store import migrate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# `python -m bench chaos` runs the same with more jobs and rounds of faults (a soak); the suite's run is bounded.
JOBS = int(os.environ.get("LLMCT_CHAOS_JOBS") or 30)
ROUNDS = int(os.environ.get("LLMCT_CHAOS_ROUNDS") or 1)
CLIENT_TIMEOUT_S = 30.0  # a client's own patience for one answer: longer is a hang
HEALTHY_WITHIN_S = 60.0  # the bound on every service's /health being green again after a fault
TERMINAL = {"succeeded", "failed", "cancelled"}

TRAIN = {
    "kind": "train",
    "base_model": TINY_MODEL,
    "datasets": ["tiny_sft"],
    "stage": "sft",
    "finetuning_type": "lora",
    "gpu_count": 0,
    "max_steps": 3,
    "logging_steps": 1,
    "save_steps": 3,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "cutoff_len": 64,
    "lora_rank": 4,
}


@dataclass
class Process:
    """One platform process of the test's own (a service replica or an agent), with its own environment."""

    key: str
    service: ServiceProcess
    env: dict[str, str]

    def start(self) -> None:
        self.service.start(self.env)

    def kill(self) -> None:
        if self.service.process and self.service.process.poll() is None:
            self.service.process.send_signal(signal.SIGKILL)
            self.service.process.wait()

    def healthy(self) -> bool:
        try:
            return self.service.healthy()
        except RuntimeError:
            return False


@dataclass
class Platform:
    base: Path
    cluster: NatsCluster
    postgres: PostgresServer
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def add(self, key: str, service: str, **extra: str) -> Process:
        variable = f"LLMCT_{service.upper()}_PORT"
        port = int(extra.get(variable) or self.env.get(variable) or free_port())
        env = {**self.env, **extra, f"LLMCT_{service.upper()}_PORT": str(port)}
        process = Process(key, ServiceProcess(name=service, port=port, log_path=self.base / "logs" / f"{key}.log"), env)
        self.processes[key] = process
        process.start()
        return process

    def wait_healthy(self, timeout: float = HEALTHY_WITHIN_S) -> float:
        """Seconds until every process answers /health 200 (AssertionError past `timeout`)."""
        start = time.monotonic()
        while not all(p.healthy() for p in self.processes.values()):
            if time.monotonic() - start > timeout:
                down = [k for k, p in self.processes.items() if not p.healthy()]
                tails = {k: self.processes[k].service.log_path.read_text(errors="replace")[-1500:] for k in down}
                raise AssertionError(f"not healthy within {timeout:.0f} s: {down}\n{tails}")
            time.sleep(0.2)
        return time.monotonic() - start

    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p.service.port}" for k, p in self.processes.items() if k.startswith("gateway")]

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.service.stop(grace_s=5)
        for process in self.processes.values():  # kept for a failing run's report
            shutil.copy(process.service.log_path, Path(tempfile.gettempdir()) / f"chaos-{process.key}.log")
        self.postgres.stop("immediate")
        self.cluster.stop()


@pytest.fixture
def platform():
    base = Path(tempfile.mkdtemp(prefix="llmct-chaos-"))
    base.chmod(0o755)  # Postgres runs as its own user
    storage = StoragePaths(base=base / "cloud-llm", logs=base / "cloud-llm" / "logs", hf_cache=base / "hf-cache")
    storage.ensure()
    (base / "logs").mkdir()
    cluster = NatsCluster.local(3, base / "nats").start(log_folder=base / "logs")
    postgres = PostgresServer(data_dir=base / "pg", port=free_port(), database="chaos").start()
    migrate(postgres.url)
    ensure_tiny_preset(storage, postgres.url, TINY_MODEL)
    scheduler_ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "NATS_URL": cluster.url,
        "LLMCT_NATS_REPLICAS": "3",
        "DATABASE_URL": postgres.url,
        "LLMCT_SECRET_KEY": secrets.token_hex(32),
        "INVITE_CODE": "chaos-invite",
        "LLMCT_ADMIN_USERNAME": "chaos-admin",
        "LLMCT_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "HOST_BASE_PATH": str(storage.base),
        "HF_HUB_OFFLINE": "1",
        "LLMCT_HEARTBEAT_S": "1",
        "LLMCT_RUNTIME": "process",
        "LLMCT_CPU_SLOTS": "1",
        "LLMCT_LOST_GRACE_S": "5",
        "LLMCT_REGISTER_MAX": "1000",
        "LLMCT_SCHEDULER_URLS": ",".join(f"http://127.0.0.1:{port}" for port in scheduler_ports),
        **{f"LLMCT_{name.upper()}_PORT": str(free_port()) for name in ("auth", "datasets", "registry")},
    }
    env.pop("LLMCT_STORAGE_MODE", None)
    found = Platform(base=base, cluster=cluster, postgres=postgres, env=env)
    try:
        found.add("auth", "auth")
        found.add("datasets", "datasets")
        found.add("registry", "registry")
        for i, port in enumerate(scheduler_ports, 1):
            found.add(f"scheduler-{i}", "scheduler", LLMCT_SCHEDULER_PORT=str(port))
        found.wait_healthy()
        for i in (1, 2):
            found.add(f"gateway-{i}", "gateway")
        for name in ("a", "b"):
            agent = cluster.add_agent(f"chaos-{name}")
            found.add(
                f"agent-{name}",
                "agent",
                LLMCT_AGENT_ID=f"chaos-{name}",
                LLMCT_AGENT_NATS_USER=agent["NATS_USER"],
                LLMCT_AGENT_NATS_PASSWORD=agent["NATS_PASSWORD"],
            )
        found.wait_healthy()
        yield found
    finally:
        found.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Client:
    """A client that submits with an idempotency key and retries what it is told to retry, on either gateway."""

    gateways: list[str]
    headers: dict[str, str]
    answers: Counter = field(default_factory=Counter)  # (status, error code) -> count
    bad: list[str] = field(default_factory=list)  # answers a client must never see
    retries_without_after: int = 0

    async def call(self, method: str, path: str, turn: int, **kwargs) -> httpx.Response | None:
        """One request, retried on 503 (after Retry-After) and on a gateway that is gone (the other one then),
        until an answer that is not a retry; None when it never came within the client's patience."""
        headers = self.headers | kwargs.pop("headers", {})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            url = self.gateways[turn % len(self.gateways)]
            try:
                async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S) as http:
                    r = await http.request(method, path, headers=headers, **kwargs)
            except httpx.TimeoutException:
                self.bad.append(f"{method} {path}: no answer within {CLIENT_TIMEOUT_S} s")
                turn += 1
                continue
            except httpx.TransportError:  # this gateway is down: the other one
                self.answers[("unreachable", None)] += 1
                turn += 1
                await asyncio.sleep(0.2)
                continue
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            self.answers[(r.status_code, code)] += 1
            if r.status_code == 503:
                if "retry-after" not in r.headers:
                    self.retries_without_after += 1
                await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 2.0))
                continue
            if r.status_code >= 500:
                self.bad.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
                await asyncio.sleep(0.5)
                continue
            return r
        return None


async def answered(client: Client, method: str, path: str) -> httpx.Response:
    """A request that must get an answer (not a retry) within the client's patience."""
    r = await client.call(method, path, 0)
    assert r is not None, f"{method} {path}: no answer but retries within the client's patience"
    return r


async def submit_all(client: Client, jobs: dict[str, str], count: int, every_s: float) -> None:
    """`count` jobs, one every `every_s`, each with its own key, each retried until accepted (or refused)."""

    async def one(n: int) -> None:
        key = f"chaos-{n}-{uuid.uuid4().hex}"
        r = await client.call("POST", "/api/jobs", n, json=TRAIN, headers={"Idempotency-Key": key})
        assert r is not None and r.status_code == 201, f"job {n} never accepted: {r and r.text}"
        jobs[key] = r.json()["id"]
        again = await client.call("POST", "/api/jobs", n + 1, json=TRAIN, headers={"Idempotency-Key": key})
        assert again is not None and again.json()["id"] == jobs[key], "a retry with the same key is the same job"

    tasks = []
    for n in range(count):
        tasks.append(asyncio.create_task(one(n)))
        await asyncio.sleep(every_s)
    await asyncio.gather(*tasks)


async def view_log(gateway: str, token: str, job_id: str, seen: dict[str, list[tuple[int, int, str]]]) -> None:
    """A viewer on the job's log socket, reconnecting after the last line it has (a seam) when it is cut."""
    after = "0"
    ws_url = gateway.replace("http://", "ws://") + f"/api/jobs/{job_id}/logs"
    lines = seen.setdefault(job_id, [])
    for _ in range(50):
        try:
            async with websockets.connect(
                f"{ws_url}?after={after}", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
            ) as ws:
                async for raw in ws:
                    frame = json.loads(raw)
                    for line in frame.get("lines", []):
                        lines.append((frame["attempt"], line["seq"], line_text(line["stream"], line["text"])))
                    if lines:
                        after = f"{lines[-1][0]}.{lines[-1][1]}"
        except (OSError, websockets.ConnectionClosed, TimeoutError):
            pass
        await asyncio.sleep(1)


def stream_leader_node(platform: Platform, stream: str):
    node = next(n for n in platform.cluster.nodes if n.process and n.process.poll() is None)
    with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true", timeout=2) as response:
        details = json.load(response).get("account_details") or []
    leader = next(s["cluster"]["leader"] for a in details for s in a.get("stream_detail") or [] if s["name"] == stream)
    return platform.cluster.node_named(leader)


FAULTS = ("scheduler", "gateway", "agent", "nats", "postgres")


async def faults(platform: Platform, recovery: list[tuple[str, float]]) -> None:
    """kill -9 each in turn (ROUNDS times; the other replica of a kind every other round), started again 3 s later;
    the seconds until every /health is green again."""
    await asyncio.sleep(8)

    async def again(what: str, kill, start) -> None:
        await asyncio.to_thread(kill)
        await asyncio.sleep(3)
        await asyncio.to_thread(start)
        recovery.append((what, await asyncio.to_thread(platform.wait_healthy)))
        await asyncio.sleep(6)

    for n in range(ROUNDS):
        for key in (f"scheduler-{n % 2 + 1}", f"gateway-{n % 2 + 1}", f"agent-{'ab'[n % 2]}"):
            process = platform.processes[key]
            await again(key, process.kill, process.start)
        node = await asyncio.to_thread(stream_leader_node, platform, "JOBS")
        await again(
            f"nats {node.server_name} (JOBS' leader)",
            node.kill,
            lambda node=node: (node.start(), platform.cluster.wait_ready()),
        )
        await again("postgres", lambda: platform.postgres.stop("immediate"), platform.postgres.start)


async def test_faults_lose_nothing(platform):
    gateways = platform.gateway_urls()
    async with httpx.AsyncClient(base_url=gateways[0], timeout=30) as http:
        creds = {"username": "chaos-user", "password": "chaos-pass-2026"}
        assert (await http.post("/api/auth/register", json={**creds, "invite_code": "chaos-invite"})).status_code == 201
        token = (await http.post("/api/auth/login", json=creds)).json()["access_token"]
    client = Client(gateways, {"Authorization": f"Bearer {token}"})
    jobs: dict[str, str] = {}  # idempotency key -> job id
    seen: dict[str, list[tuple[int, int, str]]] = {}  # job id -> (attempt, line, its text as the log file has it)
    recovery: list[tuple[str, float]] = []
    started = time.monotonic()

    submitting = asyncio.create_task(submit_all(client, jobs, JOBS, every_s=1.5))
    chaos = asyncio.create_task(faults(platform, recovery))
    viewers: list[asyncio.Task] = []
    while not submitting.done():
        for job_id in set(jobs.values()) - set(seen):
            seen[job_id] = []
            viewers.append(asyncio.create_task(view_log(gateways[len(viewers) % 2], token, job_id, seen)))
        await asyncio.sleep(0.5)
    await submitting
    await chaos

    ended: dict[str, dict] = {}
    deadline = time.monotonic() + 600
    while len(ended) < len(jobs):
        if time.monotonic() > deadline:
            stuck = [(await answered(client, "GET", f"/api/jobs/{j}")).json() for j in set(jobs.values()) - set(ended)]
            keep = ("id", "state", "reason", "message", "agent_id", "requeues", "history", "cancel_requested")
            raise AssertionError(f"jobs never ended: {[{k: job.get(k) for k in keep} for job in stuck]}")
        for job_id in set(jobs.values()) - set(ended):
            r = await client.call("GET", f"/api/jobs/{job_id}", 0)
            if r is not None and r.json()["state"] in TERMINAL:
                ended[job_id] = r.json()
        await asyncio.sleep(1)
    wholes: dict[str, str] = {}
    for job_id in jobs.values():
        wholes[job_id] = (await answered(client, "GET", f"/api/jobs/{job_id}/log")).text

    def socket_text(job_id: str) -> str:
        return "".join(text for _, _, text in seen.get(job_id, []))

    settle = time.monotonic() + 30  # the viewers' last frames
    while time.monotonic() < settle and any(
        socket_text(job_id) != whole and not ended[job_id]["requeues"] for job_id, whole in wholes.items()
    ):
        await asyncio.sleep(0.5)
    for viewer in viewers:
        viewer.cancel()

    # Every accepted job, once, ended correctly; nothing else ran; each key is one job.
    listed, cursor = [], ""
    while True:
        page = (await answered(client, "GET", f"/api/jobs?limit=200{cursor}")).json()
        listed += page["items"]
        if not page["next_cursor"]:
            break
        cursor = "&cursor=" + urllib.parse.quote(page["next_cursor"])
    assert {j["id"] for j in listed} == set(jobs.values()), "jobs nobody was told were accepted, or lost ones"
    assert len(set(jobs.values())) == len(jobs) == JOBS
    states = Counter(job["state"] for job in ended.values())
    assert states == Counter({"succeeded": JOBS}), {k: (v["state"], v.get("message")) for k, v in ended.items()}
    requeued = [job for job in ended.values() if job["requeues"]]
    for job in requeued:
        assert any(event["state"] == "pending" and event["reason"] for event in job["history"][1:]), job["history"]

    # Every log: complete and in order, whole and over the socket (viewers cut by a dead gateway resumed after
    # their last line: the seam), the same text as GET /log.
    lines_total = 0
    for job_id, whole in wholes.items():
        positions = [(attempt, seq) for attempt, seq, _ in seen.get(job_id, [])]
        assert positions == sorted(set(positions)), f"{job_id}: the socket's lines repeat or come out of order"
        by_attempt: dict[int, list[int]] = {}
        for attempt, seq in positions:
            by_attempt.setdefault(attempt, []).append(seq)
        for attempt, seqs in by_attempt.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"{job_id} attempt {attempt}: lines missing on the socket"
        if ended[job_id]["requeues"]:  # a lost agent's last lines may never have left its host (they are in the file)
            in_file = iter(f"{line}\n" for line in whole.split("\n"))  # each socket line in the file, in order
            missing = [text for _, _, text in seen.get(job_id, []) if not any(line == text for line in in_file)]
            assert not missing, f"{job_id}: socket lines not in GET /log, or out of its order: {missing[:3]}"
        else:
            assert socket_text(job_id) == whole, f"{job_id}: the socket's text is not GET /log's"
        lines_total += len(positions)

    elapsed = time.monotonic() - started
    print(
        f"\nchaos: {len(jobs)} jobs accepted, states {dict(states)}, {len(requeued)} re-queued after a fault, "
        f"{lines_total} log lines checked, {elapsed:.0f} s in all"
    )
    print(f"client answers: {dict(client.answers)}")
    print("healthy again after: " + ", ".join(f"{what} {s:.1f} s" for what, s in recovery))
    assert not client.bad, client.bad
    assert client.retries_without_after == 0, "a 503 without Retry-After"
    assert len(recovery) == len(FAULTS) * ROUNDS and {what.split("-")[0].split()[0] for what, _ in recovery} == set(
        FAULTS
    ), recovery
