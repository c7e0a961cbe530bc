"""Follow the engine's trainer_log.jsonl and turn each new line into a JobProgressed event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from services.common import contracts

POLL_S = 0.5


def _seconds(value) -> float | None:
    """'0:01:23' or a number, as seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for part in str(value).split(":"):
        try:
            total = total * 60 + float(part)
        except ValueError:
            return None
    return total


def parse_line(job_id: str, line: str) -> contracts.JobProgressed | None:
    """One trainer_log.jsonl line as an event; None for lines without a step."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if "current_steps" not in row:
        return None
    return contracts.JobProgressed(
        job_id=job_id, step=int(row["current_steps"]), total_steps=int(row.get("total_steps") or 0),
        loss=row.get("loss"), learning_rate=row.get("lr", row.get("learning_rate")), epoch=row.get("epoch"),
        elapsed_s=_seconds(row.get("elapsed_time")), remaining_s=_seconds(row.get("remaining_time")),
        at=datetime.now(UTC),
    )


async def follow(job_id: str, path: Path, publish: Callable[[contracts.JobProgressed], Awaitable[None]],
                 stopped: asyncio.Event) -> None:
    """Publish every new step until `stopped` is set, then read what is left once more."""
    offset = 0
    buffer = ""
    while True:
        done = stopped.is_set()
        if path.exists():
            with open(path, encoding="utf-8") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset = handle.tell()
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            for line in complete:
                event = parse_line(job_id, line)
                if event is not None:
                    await publish(event)
        if done:
            return
        try:
            await asyncio.wait_for(stopped.wait(), POLL_S)
        except asyncio.TimeoutError:
            pass
