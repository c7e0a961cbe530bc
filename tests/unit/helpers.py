"""Stand-ins shared by the unit tests: a JetStream, runtimes whose engines were found again or run once, NATS
subject matching, a storage folder."""

from __future__ import annotations

import json
from types import SimpleNamespace

from services.agent.runtimes.base import ExitInfo, FoundEngine
from services.common import contracts
from services.common.settings import StoragePaths


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or token not in ("*", got[i]):
            return False
    return len(want) == len(got)


class FakeJetStream:
    def __init__(self):
        self.published: list[tuple[str, object]] = []

    async def publish(self, subject, data, **_):
        self.published.append((subject, contracts.decode(data)))


class FakeRuntime:
    """A Reattachable runtime (runtimes/base.py) whose engines were found again."""

    name = "docker"  # the reattachable one

    def __init__(self, found):
        self.found, self.stopped, self.attached = found, [], []

    async def find_own(self):
        return self.found

    async def attach(self, found, position):
        self.attached.append((found.job_id, position))
        return SimpleNamespace(name=found.name)

    async def stop_found(self, found, grace_s=5):
        self.stopped.append(found.job_id)

    @staticmethod
    def position_since(ref, seconds):
        return {"container": ref, "since": seconds}


def found(job_id, kind="train", running=True, stage=0):
    return FoundEngine(
        job_id=job_id,
        kind=kind,
        stage=stage,
        running=running,
        ref=f"c-{job_id}",
        name=f"llm-{kind}-{job_id}",
        output_dir=f"/o/{job_id}",
        gpu_ids=(0,),
    )


class OneRunRuntime:
    """Starts an engine that logs a training step and exits 0."""

    name = "process"

    def __init__(self):
        self.specs = []

    async def start(self, spec):
        self.specs.append(spec)
        (spec.output_dir / "trainer_log.jsonl").write_text(json.dumps({"current_steps": 1, "total_steps": 1}) + "\n")
        return OneRunEngine()

    async def cleanup(self):
        pass


class OneRunEngine:
    async def lines(self):
        yield "stdout", "step 1"

    async def wait(self):
        return ExitInfo(exit_code=0)

    async def stop(self, grace_s):
        pass


def storage_in(tmp_path) -> StoragePaths:
    storage = StoragePaths(base=tmp_path, logs=tmp_path / "logs", hf_cache=tmp_path / "hf")
    storage.ensure()
    return storage
