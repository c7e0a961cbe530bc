"""Where a job goes: an agent with enough free GPUs (or CPU slots, for 0-GPU jobs) that can hold it."""

from __future__ import annotations

from collections import defaultdict

import msgspec


class AgentCapacity(msgspec.Struct, kw_only=True):
    agent_id: str
    gpu_memory_mb: dict[int, int]  # GPU index -> total memory
    cpu_slots: int
    busy_gpus: set[int] = msgspec.field(default_factory=set)
    busy_cpu: int = 0

    def free_gpus(self) -> list[int]:
        return [i for i in sorted(self.gpu_memory_mb) if i not in self.busy_gpus]


class Placement(msgspec.Struct, kw_only=True, frozen=True):
    agent_id: str
    gpu_ids: tuple[int, ...]


def capacities(agents: list, busy: list) -> list[AgentCapacity]:
    """Agents' capacity minus what their dispatched and running jobs hold."""
    held_gpus: dict[str, set[int]] = defaultdict(set)
    held_cpu: dict[str, int] = defaultdict(int)
    for job in busy:
        if job["gpu_count"] == 0:
            held_cpu[job["agent_id"]] += 1
        held_gpus[job["agent_id"]].update(job["gpu_ids"] or ())
    return [
        AgentCapacity(
            agent_id=a["id"],
            gpu_memory_mb={g["index"]: g["memory_total_mb"] for g in a["gpus"]},
            cpu_slots=a["cpu_slots"],
            busy_gpus=held_gpus[a["id"]],
            busy_cpu=held_cpu[a["id"]],
        )
        for a in agents
    ]


def could_ever_hold(agent: AgentCapacity, gpu_count: int, per_gpu_mb: int) -> bool:
    """Whether the agent, idle, could run the job at all."""
    if gpu_count == 0:
        return agent.cpu_slots > 0
    fitting = [i for i, mb in agent.gpu_memory_mb.items() if mb >= per_gpu_mb]
    return len(fitting) >= gpu_count


def place(agents: list[AgentCapacity], gpu_count: int, per_gpu_mb: int) -> Placement | None:
    """The least-loaded agent that can run the job now; marks the slots it takes as busy."""
    candidates = []
    for agent in agents:
        if gpu_count == 0:
            if agent.cpu_slots - agent.busy_cpu > 0:
                candidates.append((agent.busy_cpu - agent.cpu_slots, agent, ()))
            continue
        fitting = [i for i in agent.free_gpus() if agent.gpu_memory_mb[i] >= per_gpu_mb]
        if len(fitting) >= gpu_count:
            candidates.append((-len(agent.free_gpus()), agent, tuple(fitting[:gpu_count])))
    if not candidates:
        return None
    _, agent, gpu_ids = min(candidates, key=lambda c: (c[0], c[1].agent_id))
    if gpu_count == 0:
        agent.busy_cpu += 1
    agent.busy_gpus.update(gpu_ids)
    return Placement(agent_id=agent.agent_id, gpu_ids=gpu_ids)
