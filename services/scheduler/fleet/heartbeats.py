"""Heartbeats in, batched writes out: the newest beat of every agent is upserted once per flush, and the beats
of each sample period are averaged into one raw metrics row per agent (and per GPU).

A thousand agents beating once a second would be a thousand upserts a second one by one; batched, it is one
statement per flush. The NATS callback only decodes and adds to memory.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from services.common import contracts
from services.common.contracts import Subjects
from services.common.nats_auth import AGENT_ID

from . import store

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(contracts.AgentHeartbeat)
_PREFIX = contracts.Subjects.agent_heartbeat("")


@dataclass
class Sums:
    """Running sums of readings since the last sample row; None readings are not counted."""

    n: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, readings: dict[str, float | None]) -> None:
        self.n += 1
        for name, value in readings.items():
            if value is not None:
                self.totals[name] = self.totals.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + 1

    def mean(self, name: str) -> float | None:
        count = self.counts.get(name)
        return self.totals[name] / count if count else None


def beat_from(subject: str, data: bytes) -> contracts.AgentHeartbeat | None:
    """The heartbeat, or None when it is unreadable or claims another agent than its subject names."""
    try:
        beat = _decoder.decode(data)
    except msgspec.DecodeError:  # not JSON, or not a heartbeat
        log.warning("unreadable heartbeat on %s dropped", subject)
        return None
    # NATS only lets an agent publish on its own subject: the subject is the proof of who sent it.
    if subject != _PREFIX + beat.agent_id or not AGENT_ID.match(beat.agent_id):
        log.warning("heartbeat on %s claims agent %r: dropped", subject, beat.agent_id)
        return None
    return beat


def beat_row(beat: contracts.AgentHeartbeat) -> tuple:
    """The agents row of a heartbeat, in store.record_beats' column order."""
    gpus = [msgspec.to_builtins(g) for g in beat.gpus]
    resources = {
        "cpu_pct": beat.cpu_pct,
        "memory_total_mb": beat.memory_total_mb,
        "memory_used_mb": beat.memory_used_mb,
        "running_jobs": list(beat.running_jobs),
        "running_deployments": list(beat.running_deployments),
        "free_gpu_slots": beat.free_gpu_slots,
        "free_cpu_slots": beat.free_cpu_slots,
    }
    return (
        beat.agent_id,
        beat.hostname,
        gpus,
        beat.cpu_slots,
        resources,
        beat.version,
        beat.runtime,
        beat.sent_at,
        engines_of(beat),
    )


def engines_of(beat: contracts.AgentHeartbeat) -> list[str]:
    """The serving engines the agent names that the platform knows, once each, in the platform's order."""
    return [engine for engine in contracts.SERVING_ENGINES if engine in beat.engines]


class HeartbeatRecorder:
    """Keeps what heartbeats said until the next flush."""

    def __init__(self, sample_s: float):
        self.sample_s = sample_s
        self.latest: dict[str, contracts.AgentHeartbeat] = {}
        self.host: dict[str, Sums] = {}
        self.gpus: dict[tuple[str, int], Sums] = {}
        self.last_sample = datetime.now(UTC)
        self.shape: dict[str, tuple] = {}  # what placement cares about, to wake the dispatcher on a change
        self.received = 0
        self._subscription = None

    async def follow(self, nc) -> None:
        """Take every agent's heartbeats (queue group: one replica records each)."""

        async def on_heartbeat(msg) -> None:
            self.add(msg.subject, msg.data)

        # A burst of a thousand beats must not cut the subscription as a slow consumer.
        self._subscription = await nc.subscribe(
            Subjects.AGENT_HEARTBEAT_ALL, queue="scheduler", cb=on_heartbeat, pending_msgs_limit=200_000
        )

    async def unfollow(self) -> None:
        """Stop taking heartbeats."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    def add(self, subject: str, data: bytes) -> None:
        beat = beat_from(subject, data)
        if beat is None:
            return
        self.received += 1
        self.latest[beat.agent_id] = beat
        self.host.setdefault(beat.agent_id, Sums()).add(
            {
                "cpu_pct": beat.cpu_pct,
                "memory_used_mb": beat.memory_used_mb,
                "memory_total_mb": beat.memory_total_mb,
                "running_jobs": len(beat.running_jobs) + len(beat.running_deployments),
            }
        )
        for gpu in beat.gpus:
            self.gpus.setdefault((beat.agent_id, gpu.index), Sums()).add(
                {
                    "utilization_pct": gpu.utilization_pct,
                    "memory_used_mb": gpu.memory_used_mb,
                    "memory_total_mb": gpu.memory_total_mb,
                    "temperature_c": gpu.temperature_c,
                    "power_w": gpu.power_w,
                }
            )

    def take_samples(self, now: datetime) -> tuple[list[tuple], list[tuple]]:
        """The averages of this sample period as raw metrics rows; starts the next period."""
        host = [(agent, now, s.n, *(s.mean(c) for c in store.HOST_COLUMNS)) for agent, s in self.host.items()]
        gpus = [
            (agent, now, index, s.n, *(s.mean(c) for c in store.GPU_COLUMNS)) for (agent, index), s in self.gpus.items()
        ]
        self.host, self.gpus, self.last_sample = {}, {}, now
        return host, gpus

    async def flush(self, pool, *, final: bool = False) -> bool:
        """Write what arrived since the last flush (`final`: the samples of an unfinished period too); True when
        placement may have changed (wake the dispatcher)."""
        beats, self.latest = self.latest, {}
        changed = False
        if beats:
            try:
                async with pool.acquire() as conn:
                    rows = await store.record_beats(conn, [beat_row(b) for b in beats.values()])
            except Exception:
                for agent, beat in beats.items():  # keep them for the next flush unless a newer one came
                    self.latest.setdefault(agent, beat)
                raise
            for row in rows:
                if row["registered"]:
                    log.info("agent %s registered", row["id"])
            changed = self._placement_changed(beats.values()) or any(row["registered"] for row in rows)
        now = datetime.now(UTC)
        if (final or (now - self.last_sample).total_seconds() >= self.sample_s) and self.host:
            host, gpus = self.take_samples(now)
            async with pool.acquire() as conn, conn.transaction():
                await store.insert_samples(conn, host, gpus)
        return changed

    def _placement_changed(self, beats) -> bool:
        changed = False
        for beat in beats:
            shape = (beat.cpu_slots, tuple((g.index, g.memory_total_mb) for g in beat.gpus), tuple(engines_of(beat)))
            if self.shape.get(beat.agent_id) != shape:
                self.shape[beat.agent_id] = shape
                changed = True
        return changed
