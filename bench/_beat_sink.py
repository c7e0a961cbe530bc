"""The heartbeat benchmark's baseline: a process that only receives and decodes heartbeats, nothing else.

`python -m bench._beat_sink --nats URL --seconds S` prints {"received", "cpu_s", "wall_s"} as JSON and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import nats

from services.common import contracts


async def main(url: str, seconds: float) -> dict:
    nc = await nats.connect(url, pending_size=256 * 1024 * 1024)
    received = 0

    async def on_beat(msg) -> None:
        nonlocal received
        if isinstance(contracts.decode(msg.data), contracts.AgentHeartbeat):
            received += 1

    await nc.subscribe(contracts.Subjects.AGENT_HEARTBEAT_ALL, cb=on_beat, pending_msgs_limit=200_000)
    print("ready", flush=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    out = {
        "received": received,
        "cpu_s": round(time.process_time() - cpu0, 3),
        "wall_s": round(time.perf_counter() - wall0, 3),
    }
    await nc.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.nats, args.seconds))), flush=True)
