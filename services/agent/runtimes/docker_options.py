"""What the docker runtime asks Docker for a job's container: its name, labels, mounts, environment and options.

Every host path the platform wrote into the job's YAML (data dir, output dir, model, the YAML itself
in temp/, the HF cache) is bind-mounted at the SAME path inside the container, so the frozen YAML
runs unchanged under either runtime. See docs/docker.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.types
import yaml

from services.common.settings import StoragePaths

from .base import JobSpec

SHM_SIZE = "2g"

LABEL_AGENT = "llmct.agent"
LABEL_JOB = "llmct.job"
LABEL_KIND = "llmct.kind"
LABEL_STAGE = "llmct.stage"
LABEL_ATTEMPT = "llmct.attempt"  # the dispatch's attempt, for the events of a job picked up after a restart

# Path-valued keys of a LLaMA-Factory YAML the container must see: read-only inputs and outputs.
READ_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "dataset_dir",
    "deepspeed",
    "resume_from_checkpoint",
    "task_dir",
    "export_quantization_dataset",
)
WRITE_KEYS = ("export_dir", "save_dir")


@dataclass(frozen=True, kw_only=True)
class ContainerPlan:
    """How this agent's containers are made (the docker runtime's settings)."""

    storage: StoragePaths
    agent_id: str  # the label this agent finds its containers by
    image: str
    memory: str | None = None  # a memory limit per container, such as "24g"
    extra_mounts: Mapping[str, str] = field(default_factory=dict)  # host -> container path, read-only
    network: str | None = None  # the network mode (Docker's default if None)
    user: str | None = None  # "uid:gid" the engine runs as (the image's user if None)

    def labels(self, spec: JobSpec) -> dict[str, str]:
        """The labels a restarted agent finds the job's container by, and what it needs to go on with it."""
        return {
            LABEL_AGENT: self.agent_id,
            LABEL_JOB: spec.job_id,
            LABEL_KIND: spec.kind,
            LABEL_STAGE: str(spec.stage),
            LABEL_ATTEMPT: str(spec.attempt),
        }

    def mount_plan(self, spec: JobSpec) -> list[docker.types.Mount]:
        """Bind mounts, each host path at the same path inside; read-only unless the job writes there."""
        wanted: dict[str, bool] = {}  # container path -> read_only
        sources: dict[str, str] = {}

        def add(host: str | Path, read_only: bool, target: str | Path | None = None) -> None:
            host_path = os.path.normpath(os.path.abspath(host))
            target_path = os.path.normpath(str(target)) if target else host_path
            sources[target_path] = host_path
            wanted[target_path] = wanted.get(target_path, True) and read_only  # read-write wins

        add(spec.output_dir, False)
        add(self.storage.hf_cache, False)
        for path in (self.storage.data, self.storage.temp, spec.config_path.parent):
            if Path(path).is_dir():
                add(path, True)
        reads, writes = yaml_paths(spec.config_path)
        for path in writes:
            add(path, False)
        for path in reads:
            if Path(path).exists():  # a hub id or a missing path: the engine says what is wrong
                add(path, True)
        for host, target in self.extra_mounts.items():
            add(host, True, target)
        return _mounts(wanted, sources)

    def environment(self, spec: JobSpec) -> dict[str, str]:
        """The job's environment, with the cache and the GPUs as the container sees them."""
        env = dict(spec.env)
        env["HF_HOME"] = str(self.storage.hf_cache)
        # With a device request only the requested GPUs exist inside, numbered from 0.
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpu_ids)) if spec.gpu_ids else "void"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpu_ids)))
        return env

    def create_options(self, spec: JobSpec) -> dict[str, Any]:
        """Everything `containers.create` is given for a job (tests and docs read this)."""
        options: dict[str, Any] = {
            "image": self.image,
            "command": list(spec.command),
            "name": container_name(spec),
            "labels": self.labels(spec),
            "environment": self.environment(spec),
            "mounts": self.mount_plan(spec),
            "working_dir": str(spec.output_dir),
            "shm_size": SHM_SIZE,
            "init": True,
            "detach": True,
        }
        if spec.gpu_ids:
            options["device_requests"] = [
                docker.types.DeviceRequest(device_ids=[str(i) for i in spec.gpu_ids], capabilities=[["gpu"]])
            ]
        if self.memory:
            options.update(mem_limit=self.memory, memswap_limit=self.memory)  # no swap: an OOM is an OOM
        if self.network:
            options["network_mode"] = self.network
        if spec.ports and self.network != "host":
            # Published on the agent's loopback only; inside, the server listens on every interface.
            options["ports"] = {f"{port}/tcp": ("127.0.0.1", port) for port in spec.ports}
            options["environment"] = {**options["environment"], "API_HOST": "0.0.0.0"}
        if self.user:
            options["user"] = self.user
        return options


def _mounts(wanted: dict[str, bool], sources: dict[str, str]) -> list[docker.types.Mount]:
    """The mounts for the wanted container paths (-> read-only), none that another one shows already."""
    mounts = []
    for target in sorted(wanted):
        read_only = wanted[target]
        # A read-only path inside another mount is visible already; a writable one inside a
        # read-only mount needs its own (nested) mount, which Docker mounts after its parent.
        if read_only and any(
            other != target and sources[other] == other and _is_under(target, other) for other in wanted
        ):
            continue
        mounts.append(docker.types.Mount(target=target, source=sources[target], type="bind", read_only=read_only))
    return mounts


def container_name(spec: JobSpec) -> str:
    """llm-<kind>-<job id>, with anything Docker refuses in a name replaced."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", f"llm-{spec.kind}-{spec.job_id}")


def yaml_paths(config_path: Path) -> tuple[list[str], list[str]]:
    """(read paths, write paths): the absolute paths the job's YAML names, for the mount plan."""
    try:
        config = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return [], []  # the engine reports a bad or missing config itself
    if not isinstance(config, dict):
        return [], []

    def values(keys: tuple[str, ...]) -> list[str]:
        found = []
        for key in keys:
            value = config.get(key)
            if isinstance(value, str):
                # adapter_name_or_path may list several adapters, comma-separated
                found += [part.strip() for part in value.split(",") if os.path.isabs(part.strip())]
        return found

    return values(READ_KEYS), values(WRITE_KEYS)


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")
