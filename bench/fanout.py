"""fanout: one job's 50,000 log lines to 100 WebSocket viewers on the gateway, vs raw NATS pub→sub.

The lines are produced the way an agent ships them: services.agent.logs.LogShipper (500-line LogBatch
messages on `job.logs.<agent>.<job_id>`, flushed every 0.1 s), in a separate process (bench/_producer.py), for
a real job row owned by the viewers' user (so the gateway's ownership check passes) and placed on the
producer's agent id (so the scheduler's log relay copies the batches to `logs.<job_id>`). The gateway and the
scheduler (for its relay) run as processes (launcher.start_services); the 100 viewers are WebSocket clients on
/api/jobs/{id}/logs in this process (the `websockets` client, which like browsers negotiates
permessage-deflate). One extra plain NATS subscriber watches `logs.<job_id>`, to split the latency into "to
NATS subscribers" and "through the gateway".

Three paths, each run with the same producer:
  nats     baseline: the shipper's publish swapped for a plain core-NATS publish to `logs.<job_id>` (same
           lines, batches and timestamps), received by 100 nats-py subscribers that decode every batch
  direct   the gateway, with the shipper publishing to LOGS itself (JetStream, `logs.<job_id>`): the path before
           the relay, kept as this run's "before"
  gateway  the gateway, with the lines shipped to LOG_INGEST and copied to LOGS by the scheduler's relay: the
           path agents take now

Two producer paces, each run for both paths:
  burst   lines added as fast as possible: throughput (lines/s delivered over all viewers)
  paced   lines added at --rate lines/s (default 5,000/s): line latency under a steady stream

Line latency = receive time - the line's `at` stamp (set by LogShipper.add, same machine clock), for every
10th line (by seq) of every viewer; every line is counted. It includes the shipper's batching (up to 0.1 s)
on every path, the baseline too. The viewers decode only `seq` and `at`, to keep this process cheap: on
2 cores the clients' own CPU competes with the gateway's (both are reported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec
import nats
import websockets

from services.common import contracts
from services.common.security import new_id

from ._infra import REPO_ROOT, CpuMeter, Infra, machine, make_user, print_table, ratio, token_for, write_results


class LatencyHistogram:
    """Log-spaced buckets (0.5 % wide) from 1 µs: percentiles of millions of latencies without keeping them."""

    STEP = math.log(1.005)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max = 0.0
        self.total = 0.0

    def add_many(self, now: float, stamps: list[float]) -> None:
        counts, log, step = self.counts, math.log, self.STEP
        for stamp in stamps:
            lat = now - stamp
            if lat > self.max:
                self.max = lat
            self.total += lat
            key = int(log(max(lat, 1e-6) * 1e6) / step)
            counts[key] = counts.get(key, 0) + 1
        self.n += len(stamps)

    def merge(self, other: LatencyHistogram) -> None:
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.n += other.n
        self.max = max(self.max, other.max)
        self.total += other.total

    def percentile(self, p: float) -> float:
        if not self.n:
            return math.nan
        rank = math.ceil(self.n * p / 100)
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return math.exp((key + 1) * self.STEP) / 1e6  # the bucket's upper edge, in seconds
        return self.max

    def summary_ms(self) -> dict:
        return {
            "n": self.n,
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p90_ms": round(self.percentile(90) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "max_ms": round(self.max * 1000, 2),
            "mean_ms": round(self.total / self.n * 1000, 2) if self.n else math.nan,
        }


@dataclass
class Watcher:
    """One viewer (WebSocket or NATS): lines, completion time, latencies."""

    total: int
    lines: int = 0
    last_seq: int = 0
    done_at: float | None = None
    first_stamp: float | None = None
    closed: str | None = None
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def got(self, seqs_last: int, count: int, stamps: list[float], now: float) -> None:
        self.lines += count
        self.last_seq = seqs_last
        self.hist.add_many(now, stamps)
        if seqs_last >= self.total:
            self.done_at = now
            self.done.set()


# Viewers decode only what they measure (seq and `at`, kept as text): the client must stay cheap, or the
# benchmark measures its own CPU. Every line is counted; the latency of every SAMPLE-th line (by seq) is
# recorded, an unbiased sample spread over every frame and every viewer.
SAMPLE = 10


class WsLine(msgspec.Struct):
    seq: int
    at: str


class WsFrame(msgspec.Struct):
    lines: list[WsLine]


class BusLine(msgspec.Struct, array_like=True):
    seq: int
    stream: str
    at: str


class BusBatch(msgspec.Struct):
    lines: list[BusLine]


_ws_frame = msgspec.json.Decoder(WsFrame)
_batch = msgspec.json.Decoder(BusBatch)
_iso = datetime.fromisoformat


def sampled_stamps(lines) -> list[float]:
    return [_iso(ln.at).timestamp() for ln in lines if ln.seq % SAMPLE == 0]


async def ws_viewer(url: str, token: str, watcher: Watcher, connected: asyncio.Event, deadline: float) -> None:
    try:
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            ping_interval=None,
            open_timeout=30,
        ) as ws:
            connected.set()
            while not watcher.done.is_set():
                data = await asyncio.wait_for(ws.recv(decode=False), max(0.1, deadline - time.time()))
                now = time.time()
                frame = _ws_frame.decode(data)
                if frame.lines:
                    if watcher.first_stamp is None:
                        watcher.first_stamp = _iso(frame.lines[0].at).timestamp()
                    watcher.got(frame.lines[-1].seq, len(frame.lines), sampled_stamps(frame.lines), now)
    except websockets.ConnectionClosed as exc:
        watcher.closed = f"closed {exc.rcvd.code if exc.rcvd else '?'}"
    except TimeoutError:
        watcher.closed = "timed out"
    finally:
        connected.set()


async def nats_viewer(url: str, subject: str, watcher: Watcher) -> nats.NATS:
    nc = await nats.connect(_servers(url), pending_size=256 * 1024 * 1024)

    async def on_batch(msg) -> None:
        now = time.time()
        batch = _batch.decode(msg.data)
        if batch.lines:
            if watcher.first_stamp is None:
                watcher.first_stamp = _iso(batch.lines[0].at).timestamp()
            watcher.got(batch.lines[-1].seq, len(batch.lines), sampled_stamps(batch.lines), now)

    await nc.subscribe(subject, cb=on_batch, pending_msgs_limit=1_000_000, pending_bytes_limit=-1)
    await nc.flush()
    return nc


BENCH_AGENT = "bench-agent"
PRODUCER_FLAGS = {"nats": ["--raw"], "direct": ["--direct"], "gateway": []}


def _servers(url: str) -> list[str]:
    """NATS_URL as nats-py takes it: a cluster's is comma-separated, one URL per node."""
    return [part.strip() for part in url.split(",") if part.strip()]


def start_producer(infra: Infra, job_id: str, lines: int, rate: float, path: str) -> subprocess.Popen:
    log = infra.settings.storage.logs / f"{job_id}.log"
    command = [
        sys.executable,
        "-m",
        "bench._producer",
        "--nats",
        infra.env["NATS_URL"],
        "--job",
        job_id,
        "--lines",
        str(lines),
        "--rate",
        str(rate),
        "--log",
        str(log),
        "--agent",
        BENCH_AGENT,
        "--attempt",
        "1",
        *PRODUCER_FLAGS[path],
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)


async def insert_job(conn, owner_id: str) -> str:
    """A real job row (as the scheduler stores one) so the gateway lets the owner watch its logs, running on the
    producer's agent as attempt 1, so the relay lets its lines through."""
    from services.scheduler.jobs.store import insert_job as store_insert

    job_id = new_id("job")
    await store_insert(
        conn,
        job_id=job_id,
        owner_id=owner_id,
        kind="train",
        priority=0,
        gpu_count=0,
        request={"bench": "fanout"},
        config={"output_dir": "/dev/null"},
        config_yaml="bench: fanout\n",
        stages=[],
        output_dir="/dev/null",
        estimate={},
    )
    await conn.execute(
        "UPDATE jobs SET state = 'running', agent_id = $2, attempt = 1 WHERE id = $1", job_id, BENCH_AGENT
    )
    return job_id


async def one_run(
    infra: Infra, meter: CpuMeter, path: str, pace: str, args: argparse.Namespace, conn, owner_id: str, token: str
) -> dict:
    """One producer run (`pace`) watched through `path` ("gateway", "direct" or "nats")."""
    total = args.lines
    rate = args.rate if pace == "paced" else 0.0
    timeout = args.timeout
    job_id = await insert_job(conn, owner_id)
    watchers = [Watcher(total) for _ in range(args.viewers)]
    probe = Watcher(total)  # a plain NATS subscriber on the same subject, in both paths
    conns = [await nats_viewer(infra.env["NATS_URL"], contracts.Subjects.logs(job_id), probe)]
    tasks = []
    deadline = time.time() + timeout
    if path != "nats":
        # The gateway refuses a credential in a socket's URL: the bearer token goes in the Authorization header.
        url = f"ws://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}/api/jobs/{job_id}/logs"
        connected = [asyncio.Event() for _ in watchers]
        tasks = [
            asyncio.create_task(ws_viewer(url, token, w, c, deadline)) for w, c in zip(watchers, connected, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), 60)
        await asyncio.sleep(1.0)  # each socket attaches to the gateway's hub just after its handshake
    else:
        conns += await asyncio.gather(
            *(nats_viewer(infra.env["NATS_URL"], contracts.Subjects.logs(job_id), w) for w in watchers)
        )
    cpu0, bench_cpu0 = meter.snapshot(), time.process_time()
    t_start = time.time()
    producer = start_producer(infra, job_id, total, rate, path)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(w.done.wait() for w in watchers), probe.done.wait()), max(1.0, deadline - time.time())
        )
    except TimeoutError:
        pass
    out, _ = await asyncio.to_thread(producer.communicate, timeout=120)
    cpu = CpuMeter.delta(cpu0, meter.snapshot())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for nc in conns:
        with contextlib.suppress(Exception):
            await nc.close()
    produced = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    hist = LatencyHistogram()
    for w in watchers:
        hist.merge(w.hist)
    finished = [w for w in watchers if w.done_at]
    # From the first line's `at` stamp (the producer process needs a moment to start and connect).
    first_at = min((w.first_stamp for w in [probe, *watchers] if w.first_stamp), default=t_start)
    last = max((w.done_at for w in finished), default=math.nan)
    delivered = sum(w.lines for w in watchers)
    per_viewer = [total / (w.done_at - first_at) for w in finished]
    result = {
        "path": path,
        "pace": pace,
        "job_id": job_id,
        "viewers": len(watchers),
        "lines": total,
        "rate_target": rate or None,
        "viewers_complete": len(finished),
        "viewers_closed": sorted({w.closed for w in watchers if w.closed}),
        "lines_delivered": delivered,
        "expected": total * len(watchers),
        "elapsed_s": round(last - first_at, 3) if finished else None,
        "lines_per_s_all_viewers": round(delivered / (last - first_at)) if finished else 0,
        "lines_per_s_per_viewer_p50": round(sorted(per_viewer)[len(per_viewer) // 2]) if per_viewer else 0,
        "latency": hist.summary_ms(),
        "nats_probe_latency": probe.hist.summary_ms(),
        "producer": produced,
        "cpu_s": {**cpu, "bench viewers (this process)": round(time.process_time() - bench_cpu0, 2)},
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    if path != "nats" and delivered:
        # Load-independent: the gateway's CPU per line per viewer, and the delivery rate one core allows.
        result["gateway_cpu_us_per_line_delivery"] = round(cpu.get("service gateway", 0.0) * 1e6 / delivered, 2)
        result["gateway_one_core_ceiling_lines_per_s"] = (
            round(1e6 / result["gateway_cpu_us_per_line_delivery"])
            if result["gateway_cpu_us_per_line_delivery"]
            else None
        )
    return result


def frame_cost(viewers: int = 100, n: int = 30) -> dict:
    """CPU of what the gateway does per batch today, for each viewer (services.gateway.logs.lines_after, the
    JSON encode of the frame, permessage-deflate of it as uvicorn's websockets implementation does by
    default), against encoding one frame per batch for everyone: a what-if for the report."""
    import zlib
    from datetime import UTC

    from services.gateway.logs import lines_after

    from ._producer import TEXT

    now = datetime.now(UTC)
    batch = contracts.LogBatch(
        job_id="job_0123456789abcdef",
        lines=tuple(contracts.LogLine(seq=i, stream="stdout", at=now, text=TEXT.format(i=i)) for i in range(1, 501)),
    )
    encode = msgspec.json.Encoder().encode

    def timed(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    frame = encode({"job_id": batch.job_id, "lines": lines_after(batch, (0, 0))})
    deflate = zlib.compressobj(wbits=-15)
    per_line = len(batch.lines)
    build = timed(lambda: lines_after(batch, (0, 0)))
    built = lines_after(batch, (0, 0))
    encoded = timed(lambda: encode({"job_id": batch.job_id, "lines": built}))
    compress = timed(lambda: deflate.compress(frame) + deflate.flush(zlib.Z_SYNC_FLUSH))
    return {
        "frame_bytes": len(frame),
        "lines_per_batch": per_line,
        "us_per_line_per_viewer": {
            "lines_after (dicts + isoformat)": round(build * 1e6 / per_line, 3),
            "json encode": round(encoded * 1e6 / per_line, 3),
            "permessage-deflate": round(compress * 1e6 / per_line, 3),
        },
        "what_if_encode_once_us_per_line_per_viewer": round((build + encoded) * 1e6 / per_line / viewers, 4),
    }


async def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy(), "frame_cost": frame_cost(args.viewers)}
    conn = await asyncpg.connect(infra.settings.database_url)
    try:
        from services.common.store import _init_connection

        await _init_connection(conn)  # the jsonb codec the services use
        username = f"bench-fanout-{secrets.token_hex(4)}"  # a second run on the same database
        owner = await make_user(conn, username)
        token = token_for(infra.settings, owner, username)
        meter = CpuMeter(infra)
        runs = []
        beating = asyncio.create_task(beat_forever(infra.env["NATS_URL"]))
        try:
            for pace in args.paces:
                for path in args.paths:
                    print(f"[{pace}] {path}: {args.lines:,} lines to {args.viewers} viewers ...", flush=True)
                    runs.append(await one_run(infra, meter, path, pace, args, conn, owner, token))
        finally:
            beating.cancel()
        results["runs"] = runs
    finally:
        await conn.close()
    return results


async def beat_forever(url: str) -> None:
    """The producer's agent is alive (no GPUs, no CPU slots: nothing is placed on it), so the scheduler does not
    re-queue its running jobs as a lost agent's."""
    nc = await nats.connect(_servers(url))
    try:
        while True:
            beat = contracts.AgentHeartbeat(agent_id=BENCH_AGENT, hostname="bench", sent_at=datetime.now(UTC))
            await nc.publish(contracts.Subjects.agent_heartbeat(BENCH_AGENT), contracts.encode(beat))
            await asyncio.sleep(2)
    finally:
        await nc.close()


PATH_NAMES = {
    "nats": "raw NATS pub→sub",
    "direct": "gateway WebSocket, agent → LOGS (before)",
    "gateway": "gateway WebSocket, via the relay",
}


def report(results: dict) -> None:
    runs = {(r["pace"], r["path"]): r for r in results["runs"]}
    rows = []
    for (pace, path), r in runs.items():
        base = runs.get((pace, "nats"))
        lat = r["latency"]
        before = runs.get((pace, "direct"))
        rows.append(
            [
                pace,
                PATH_NAMES[path],
                f"{r['viewers_complete']}/{r['viewers']}",
                f"{r['lines_delivered']:,}",
                r["elapsed_s"],
                f"{r['lines_per_s_all_viewers']:,}",
                lat["p50_ms"],
                lat["p99_ms"],
                lat["max_ms"],
                f"{ratio(base['lines_per_s_all_viewers'], r['lines_per_s_all_viewers'])}x" if base else "-",
                f"{ratio(lat['p99_ms'], base['latency']['p99_ms'])}x" if base else "-",
                f"{ratio(lat['p50_ms'], before['latency']['p50_ms'])}x / "
                f"{ratio(lat['p99_ms'], before['latency']['p99_ms'])}x"
                if before and path == "gateway"
                else "-",
            ]
        )
    any_run = next(iter(runs.values()))
    print_table(
        f"fanout: {any_run['lines']:,} lines x {any_run['viewers']} viewers "
        "(latency = receive - line `at`, includes the shipper's batching)",
        [
            "pace",
            "path",
            "complete",
            "lines delivered",
            "s",
            "lines/s (all viewers)",
            "p50 ms",
            "p99 ms",
            "max ms",
            "NATS rate / rate",
            "p99 / NATS p99",
            "p50, p99 / direct",
        ],
        rows,
    )
    print_table(
        "latency split: a plain NATS subscriber on the same subject during each run (p50 / p99 ms)",
        ["pace", "path", "NATS sub p50", "NATS sub p99", "viewer p50", "viewer p99"],
        [
            [
                p,
                path,
                r["nats_probe_latency"]["p50_ms"],
                r["nats_probe_latency"]["p99_ms"],
                r["latency"]["p50_ms"],
                r["latency"]["p99_ms"],
            ]
            for (p, path), r in runs.items()
        ],
    )
    names = ["service gateway", "service scheduler", "nats-server", "bench viewers (this process)"]
    print_table(
        "CPU seconds during each run",
        ["pace", "path", "gateway", "scheduler (relay)", "nats-server", "viewers (bench)", "producer"],
        [
            [p, path, *[r["cpu_s"].get(n, "-") for n in names], r["producer"].get("cpu_s", "-")]
            for (p, path), r in runs.items()
        ],
    )
    print_table(
        "gateway CPU per delivered line (per viewer): load-independent",
        ["pace", "path", "µs / line / viewer", "lines/s one gateway core allows (all viewers)"],
        [
            [
                p,
                path,
                r.get("gateway_cpu_us_per_line_delivery"),
                f"{r.get('gateway_one_core_ceiling_lines_per_s') or 0:,}",
            ]
            for (p, path), r in runs.items()
            if path != "nats"
        ],
    )
    print_table(
        "the relay's CPU (the scheduler process; idle otherwise), per line it copied",
        ["pace", "path", "scheduler CPU s", "µs / line"],
        [
            [
                p,
                path,
                r["cpu_s"].get("service scheduler"),
                round(r["cpu_s"].get("service scheduler", 0.0) * 1e6 / r["lines"], 2),
            ]
            for (p, path), r in runs.items()
        ],
    )
    fc = results["frame_cost"]
    print_table(
        f"gateway work per 500-line batch, per viewer, measured here outside the gateway "
        f"(frame {fc['frame_bytes']:,} bytes)",
        ["step", "µs / line / viewer"],
        [
            *fc["us_per_line_per_viewer"].items(),
            [
                f"what-if: build + encode once per batch for {results['params']['viewers']} viewers",
                fc["what_if_encode_once_us_per_line_per_viewer"],
            ],
        ],
    )
    print_table(
        "producer (bench/_producer.py: LogShipper)",
        ["pace", "path", "lines", "add s", "shipped s", "cpu s"],
        [
            [
                p,
                path,
                r["producer"].get("lines"),
                r["producer"].get("add_s"),
                r["producer"].get("shipped_s"),
                r["producer"].get("cpu_s"),
            ]
            for (p, path), r in runs.items()
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=50_000, help="lines the job prints")
    parser.add_argument("--viewers", type=int, default=100, help="WebSocket viewers (and NATS subscribers)")
    parser.add_argument("--rate", type=float, default=5_000, help="lines/s of the paced producer")
    parser.add_argument("--paces", nargs="+", default=["burst", "paced"], choices=["burst", "paced"])
    parser.add_argument("--timeout", type=float, default=90, help="seconds one run may take")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the gateway under cProfile; stats in bench/results/fanout-gateway.prof",
    )
    parser.add_argument(
        "--paths", nargs="+", default=["nats", "direct", "gateway"], choices=["nats", "direct", "gateway"]
    )
    parser.add_argument("--nats-nodes", type=int, nargs="+", default=[1], help="NATS nodes, e.g. `1 3` (R<n>)")
    parser.add_argument(
        "--schedulers", type=int, nargs="+", default=[1], help="scheduler replicas (log relays), e.g. `1 2`"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")


def main(args: argparse.Namespace) -> dict:
    """One run per NATS size (--nats-nodes, each on a fresh infra) and count of scheduler replicas (--schedulers,
    alternating in order from one infra to the next); with the defaults, one run as before."""
    topologies = []
    for i, nodes in enumerate(args.nats_nodes):
        counts = list(args.schedulers) if i % 2 == 0 else list(reversed(args.schedulers))
        with Infra(f"fanout-nats{nodes}", keep=args.keep, nats_nodes=nodes) as infra:
            for count in counts:
                print(f"[nats={nodes} schedulers={count}] starting the scheduler(s) (log relay) and the gateway ...")
                schedulers = infra.start_replicas("scheduler", count)
                gateway = infra.start_services(
                    ("gateway",),
                    profile="gateway" if args.profile else None,
                    LLMCT_SCHEDULER_URLS=Infra.replica_urls(schedulers),
                    # every viewer is the one bench user: let them all in (the default cap is 16 sockets a user)
                    LLMCT_GATEWAY_WEBSOCKETS_PER_USER=str(args.viewers + 16),
                )
                try:
                    results = asyncio.run(run(args, infra))
                finally:
                    infra.stop_some([*gateway.values(), *schedulers])
                topologies.append({"nats_nodes": nodes, "schedulers": count, **results})
    if len(topologies) == 1:
        report(topologies[0])
        write_results("fanout", topologies[0])
        return topologies[0]
    for t in topologies:
        print(f"\n=== nats={t['nats_nodes']} schedulers={t['schedulers']} ===")
        report(t)
    results = {"machine": machine(), "topologies": topologies}
    report_topologies(results)
    write_results("fanout-topology", results)
    return results


def report_topologies(results: dict) -> None:
    """Each topology's runs set against the 1-node, 1-scheduler one of the same run, path by path."""
    tops = results["topologies"]
    base = next((t for t in tops if t["nats_nodes"] == 1 and t["schedulers"] == 1), tops[0])
    base_runs = {(r["pace"], r["path"]): r for r in base["runs"]}
    rows = []
    for t in tops:
        for r in t["runs"]:
            b = base_runs.get((r["pace"], r["path"]))
            lat = r["latency"]
            cpu = r["cpu_s"]
            nats_cpu = sum(v for k, v in cpu.items() if k.startswith("nats-server"))
            relay_cpu = sum(v for k, v in cpu.items() if k.startswith("service scheduler"))
            rows.append(
                [
                    f"nats={t['nats_nodes']} schedulers={t['schedulers']}",
                    r["pace"],
                    r["path"],
                    f"{r['viewers_complete']}/{r['viewers']}",
                    f"{r['lines_per_s_all_viewers']:,}",
                    lat["p50_ms"],
                    lat["p99_ms"],
                    f"{ratio(lat['p99_ms'], b['latency']['p99_ms'])}x" if b else "-",
                    f"{ratio(r['lines_per_s_all_viewers'], b['lines_per_s_all_viewers'])}x" if b else "-",
                    round(relay_cpu * 1e6 / r["lines"], 1),
                    round(nats_cpu * 1e6 / r["lines"], 1),
                    r.get("gateway_cpu_us_per_line_delivery", "-"),
                ]
            )
    print_table(
        f"fanout by topology, ratios against nats={base['nats_nodes']} schedulers={base['schedulers']} of this run",
        [
            "topology",
            "pace",
            "path",
            "complete",
            "lines/s",
            "p50 ms",
            "p99 ms",
            "p99 /base",
            "rate /base",
            "relay µs/line",
            "nats µs/line",
            "gateway µs/line/viewer",
        ],
        rows,
    )
    print(f"  machine: load {results['machine']['load_avg']} at the end")
