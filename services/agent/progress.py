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


def _count(value) -> int | None:
    """A whole count the engine logged (`total_tokens`), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        return None
    return int(value)


def parse_line(job_id: str, line: str, attempt: int = 0) -> contracts.JobProgressed | None:
    """One trainer_log.jsonl line as an event of the job's `attempt`; None for lines without a step. A validation
    pass is a line of its own at the step it ran (`eval_loss`, no `loss`)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if "current_steps" not in row:
        return None
    return contracts.JobProgressed(
        job_id=job_id,
        step=int(row["current_steps"]),
        total_steps=int(row.get("total_steps") or 0),
        loss=row.get("loss"),
        eval_loss=row.get("eval_loss"),
        learning_rate=row.get("lr", row.get("learning_rate")),
        epoch=row.get("epoch"),
        elapsed_s=_seconds(row.get("elapsed_time")),
        remaining_s=_seconds(row.get("remaining_time")),
        tokens_seen=_count(row.get("total_tokens")),
        attempt=attempt,
        at=datetime.now(UTC),
    )


def _read_from(path: Path, offset: int) -> tuple[bool, bytes] | None:
    """What the file holds from `offset` on (from its start when it is now shorter: (True, ...)); None while it does
    not exist. Blocking: run it in a thread."""
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        restarted = handle.seek(0, 2) < offset
        handle.seek(0 if restarted else offset)
        return restarted, handle.read()


async def follow(
    job_id: str,
    path: Path,
    publish: Callable[[contracts.JobProgressed], Awaitable[None]],
    stopped: asyncio.Event,
    *,
    start: int = 0,
    moved: Callable[[int], None] | None = None,
    attempt: int = 0,
) -> None:
    """Publish every new step until `stopped` is set, then read what is left once more.

    Reading begins at byte `start` (where an earlier agent got to); `moved(offset)` is told the end of
    every whole line read, so the agent can remember how far it got.
    """
    offset = start
    buffer = b""
    while True:
        done = stopped.is_set()
        read = await asyncio.to_thread(_read_from, path, offset)
        if read is not None:
            restarted, chunk = read
            if restarted:  # written anew since that offset was taken: start over
                offset, buffer = 0, b""
            offset += len(chunk)
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                event = parse_line(job_id, line.decode(errors="replace"), attempt)
                if event is not None:
                    await publish(event)
            if complete and moved is not None:
                moved(offset - len(buffer))
        if done:
            return
        try:
            await asyncio.wait_for(stopped.wait(), POLL_S)
        except TimeoutError:
            pass
