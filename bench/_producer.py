"""A job's log producer, run as its own process (like an agent): the agent's LogShipper, fed N lines.

    python -m bench._producer --nats URL --job JOB_ID --lines N [--rate LINES_PER_S] [--raw | --direct]
                              [--agent AGENT_ID] [--attempt N] --log PATH

The lines go through services.agent.logs.LogShipper itself (numbering, `at` stamps, 500-line batches,
0.1 s flushes), shipped as agent AGENT_ID's, attempt N, on `job.logs.<agent>.<job>` (LOG_INGEST), from where
the scheduler's relay copies them to `logs.<job>`. With --raw the shipper's JetStream publish (which waits for
the stream's ack) is swapped for a plain core-NATS publish straight to `logs.<job>`: the "raw nats-py pub"
baseline, with the same batches and timestamps. With --direct it is a JetStream publish straight to
`logs.<job>` (LOGS), as agents shipped before the relay: the same run's "before".
--rate 0 adds lines as fast as the event loop lets it (yielding every 500 lines so batches go out).
Prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import nats

from services.agent.logs import LogShipper
from services.common.contracts import Subjects

TEXT = (
    "{{'loss': 2.3456, 'grad_norm': 0.8123, 'learning_rate': 9.87e-05, 'epoch': 0.42}} "
    "step {i} of the bench job, a line as long as a typical trainer line"
)


class CorePublish:
    """What LogShipper needs from a JetStreamContext (publish), as a plain core-NATS publish to `logs.<job>`."""

    def __init__(self, nc, job_id: str) -> None:
        self.nc, self.subject = nc, Subjects.logs(job_id)

    async def publish(self, subject: str, payload: bytes) -> None:
        await self.nc.publish(self.subject, payload)


class DirectPublish:
    """A JetStream publish straight to `logs.<job>` (LOGS), skipping the relay, as agents shipped before it."""

    def __init__(self, js, job_id: str) -> None:
        self.js, self.subject = js, Subjects.logs(job_id)

    async def publish(self, subject: str, payload: bytes) -> None:
        await self.js.publish(self.subject, payload)


async def produce(args: argparse.Namespace) -> dict:
    servers = [part.strip() for part in args.nats.split(",") if part.strip()]  # a cluster: one URL per node
    nc = await nats.connect(servers, pending_size=256 * 1024 * 1024)
    target = (
        CorePublish(nc, args.job)
        if args.raw
        else DirectPublish(nc.jetstream(), args.job)
        if args.direct
        else nc.jetstream()
    )
    shipper = LogShipper(target, args.job, Path(args.log), agent_id=args.agent, attempt=args.attempt)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if args.rate > 0:
        tick = 0.01
        per_tick = max(1, round(args.rate * tick))
        i = 0
        start = time.perf_counter()
        while i < args.lines:
            for _ in range(min(per_tick, args.lines - i)):
                i += 1
                shipper.add("stdout", TEXT.format(i=i))
            # keep to the schedule: sleep until this tick's slot
            await asyncio.sleep(max(0.0, start + (i / per_tick) * tick - time.perf_counter()))
    else:
        for i in range(1, args.lines + 1):
            shipper.add("stdout", TEXT.format(i=i))
            if i % 500 == 0:
                await asyncio.sleep(0)
    added = time.perf_counter() - t0
    # Let the shipper's own flusher send what is pending and go back to waiting before close():
    # LogShipper.close() right after >= 500 add()s can hang (its cancel of the flusher is swallowed by
    # asyncio.wait_for on Python 3.11 when the wake event is already set; see docs/benchmarks.md).
    while shipper._pending:
        await asyncio.sleep(0.005)
    await shipper.flush()
    await nc.flush()
    shipped = time.perf_counter() - t0
    await asyncio.sleep(0.25)
    await shipper.close()
    await nc.close()
    return {
        "lines": shipper.seq,
        "add_s": round(added, 3),
        "shipped_s": round(shipped, 3),
        "cpu_s": round(time.process_time() - cpu0, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--agent", default="bench-agent")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--log", required=True)
    print(json.dumps(asyncio.run(produce(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
