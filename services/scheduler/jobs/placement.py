"""Where a job goes: an agent with enough free GPUs (or CPU slots, for 0-GPU jobs) that can hold it; a deployment
that asks for vLLM only where the agent has it, and one that leaves it to the agent (`auto`) preferably there."""

from __future__ import annotations

from collections import defaultdict

import msgspec


class AgentCapacity(msgspec.Struct, kw_only=True):
    agent_id: str
    gpu_memory_mb: dict[int, int]  # GPU index -> total memory
    cpu_slots: int
    busy_gpus: set[int] = msgspec.field(default_factory=set)
    busy_cpu: int = 0
    engines: frozenset[str] = frozenset()  # the serving engines its heartbeat names

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
            engines=frozenset(a.get("engines") or ()),
        )
        for a in agents
    ]


def serve_engine(stages: list[dict] | None) -> str | None:
    """The engine a job's stored stages (`jobs.stages`) ask to serve with: None for a job that serves nothing; a
    deployment stored before engines were named asked for LLaMA-Factory's server."""
    serve = next((row["serve"] for row in stages or () if row.get("serve")), None)
    return None if serve is None else serve.get("engine", "llamafactory")


def serves_with(agent: AgentCapacity, engine: str | None) -> bool:
    """Whether the agent may take a job that serves with `engine`: only vLLM is not everywhere."""
    return engine != "vllm" or "vllm" in agent.engines


def could_ever_hold(agent: AgentCapacity, gpu_count: int, per_gpu_mb: int) -> bool:
    """Whether the agent, idle, could run the job at all."""
    if gpu_count == 0:
        return agent.cpu_slots > 0
    fitting = [i for i, mb in agent.gpu_memory_mb.items() if mb >= per_gpu_mb]
    return len(fitting) >= gpu_count


def place(agents: list[AgentCapacity], gpu_count: int, per_gpu_mb: int, engine: str | None = None) -> Placement | None:
    """The least-loaded agent that can run the job now (serving with `engine`: vLLM only on an agent that has it,
    `auto` on one that has it before any other); marks the slots it takes as busy."""
    candidates = []
    for agent in agents:
        if not serves_with(agent, engine):
            continue
        if gpu_count == 0:
            if agent.cpu_slots - agent.busy_cpu > 0:
                candidates.append((agent.busy_cpu - agent.cpu_slots, agent, ()))
            continue
        fitting = [i for i in agent.free_gpus() if agent.gpu_memory_mb[i] >= per_gpu_mb]
        if len(fitting) >= gpu_count:
            candidates.append((-len(agent.free_gpus()), agent, tuple(fitting[:gpu_count])))
    if not candidates:
        return None

    def preference(candidate) -> tuple:
        load, agent, _ = candidate
        return (engine == "auto" and "vllm" not in agent.engines, load, agent.agent_id)

    _, agent, gpu_ids = min(candidates, key=preference)
    if gpu_count == 0:
        agent.busy_cpu += 1
    agent.busy_gpus.update(gpu_ids)
    return Placement(agent_id=agent.agent_id, gpu_ids=gpu_ids)
