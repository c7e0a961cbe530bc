"""Where a batch of log lines goes in a job's log: the order rules of the log relay (relay.py).

A job's lines are numbered by the agent from 1 for each run (attempt), on without a gap or a repeat across agent
restarts (docs/docker.md). So, against the job's last batch in LOGS (its tip), a shipped batch is the next one, one
LOGS holds already, or one after a gap: what the relay publishes, drops, or keeps a while for the batches before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

NEXT, DUPLICATE, GAP = "next", "duplicate", "gap"


class _Line(msgspec.Struct, array_like=True):
    seq: int  # the rest of a LogLine (stream, at, text) is skipped, not decoded


class Head(msgspec.Struct, tag_field="type", tag="log_batch"):
    """What the relay reads of a LogBatch: the job, the attempt and the line numbers (about 0.3 µs a line)."""

    job_id: str
    lines: list[_Line]
    attempt: int = 0


heads = msgspec.json.Decoder(Head)


@dataclass(frozen=True)
class Tip:
    """A job's last batch in LOGS: its stream sequence (0: the job has none), attempt and last line number."""

    stream_seq: int = 0
    attempt: int = 0
    seq: int = 0


def tip_of(stream_seq: int, data: bytes) -> Tip:
    """The tip that a batch stored in LOGS at `stream_seq` makes (one that cannot be read: its sequence only)."""
    try:
        head = heads.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Tip(stream_seq)
    return Tip(stream_seq, head.attempt, head.lines[-1].seq if head.lines else 0)


def placement(tip: Tip, attempt: int, first: int, last: int) -> str:
    """Where a batch of `attempt` holding lines `first`..`last` stands against the job's `tip` in LOGS: NEXT (publish
    it), DUPLICATE (LOGS has it, or a newer attempt's lines) or GAP (lines between are missing)."""
    if tip.stream_seq == 0:
        return NEXT if first == 1 else GAP
    # A new run numbers from 1. A tip of attempt 0 was stored before batches carried attempts: line 1 is a new run.
    if (attempt > tip.attempt) if tip.attempt else first == 1:
        return NEXT if first == 1 else GAP
    if attempt < tip.attempt or last <= tip.seq:
        return DUPLICATE
    return NEXT if first <= tip.seq + 1 else GAP
