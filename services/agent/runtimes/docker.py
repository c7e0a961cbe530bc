"""The `docker` runtime: the engine in a container on this host's Docker engine (production).

Every host path the platform wrote into the job's YAML (data dir, output dir, model, the YAML itself
in temp/, the HF cache) is bind-mounted at the SAME path inside the container, so the frozen YAML
runs unchanged under either runtime. See docs/docker.md.

Blocking Docker SDK calls never run on the event loop: short ones (create, start, inspect, list,
remove) go through `asyncio.to_thread`; the long ones (following logs, waiting for the exit,
stopping with a grace period) get a daemon thread each, so a host running many jobs never pins the
default executor's few workers for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions
import yaml

from services.common.settings import StoragePaths, storage_from_env

from .base import FoundEngine, JobSpec, RuntimeStartError
from .docker_run import DockerRun, _in_thread

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "lf-with-optimum:v1.0"  # the seed's engine image
DEFAULT_CLEANUP_DELAY_S = 60.0
SHM_SIZE = "2g"

LABEL_AGENT = "llmct.agent"
LABEL_JOB = "llmct.job"
LABEL_KIND = "llmct.kind"
LABEL_STAGE = "llmct.stage"
LABEL_ATTEMPT = "llmct.attempt"  # the dispatch's attempt, for the events of a job picked up after a restart

# Path-valued keys of a LLaMA-Factory YAML the container must see: read-only inputs and outputs.
READ_KEYS = ("model_name_or_path", "adapter_name_or_path", "dataset_dir", "deepspeed", "resume_from_checkpoint",
             "task_dir", "export_quantization_dataset")
WRITE_KEYS = ("export_dir", "save_dir")


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time with nanoseconds; None for its zero time ("0001-01-01T00:00:00Z")."""
    if not value or value.startswith("0001-"):
        return None
    main, _, rest = value.partition(".")
    zone = ""
    if rest:
        digits = re.match(r"\d*", rest).group(0)
        zone = rest[len(digits):]
        main = f"{main}.{digits[:6]}"
    elif value.endswith("Z") or "+" in value[10:]:
        main, zone = value[:19], value[19:]
    zone = "+00:00" if zone in ("", "Z") else zone
    try:
        return datetime.fromisoformat(main + zone)
    except ValueError:
        return None


def container_name(spec: JobSpec) -> str:
    """llm-<kind>-<job id>, with anything Docker refuses in a name replaced."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", f"llm-{spec.kind}-{spec.job_id}")


def _split_mounts(text: str) -> dict[str, str]:
    """LLMCT_DOCKER_EXTRA_MOUNTS: "HOST[:CONTAINER],..." (read-only)."""
    mounts: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, target = item.partition(":")
        mounts[host] = target or host
    return mounts


def _yaml_paths(config_path: Path) -> tuple[list[str], list[str]]:
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


class DockerRuntime:
    """Runs the engine command in a container of `image`, one per job, labelled with this agent's id."""

    name = "docker"
    survives_agent = True  # a container keeps running when the agent stops; the next agent re-attaches

    def __init__(self, *, storage: StoragePaths | None = None, image: str | None = None,
                 agent_id: str | None = None, memory: str | None = None,
                 extra_mounts: Mapping[str, str] | None = None, cleanup_delay_s: float | None = None,
                 client: docker.DockerClient | None = None, base_url: str | None = None,
                 network: str | None = None, user: str | None = None):
        """Every argument left out is read from the environment:

        storage: HOST_BASE_PATH / LOG_BASE_PATH / HF_CACHE_PATH (storage_from_env)
        image: LLMCT_DOCKER_IMAGE, else the seed's `lf-with-optimum:v1.0`
        agent_id: LLMCT_AGENT_ID, else the host name (the label this agent finds its containers by)
        memory: LLMCT_DOCKER_MEMORY, a memory limit per container such as "24g" (none by default)
        extra_mounts: LLMCT_DOCKER_EXTRA_MOUNTS "HOST[:CONTAINER],...", all read-only
        cleanup_delay_s: LLMCT_DOCKER_CLEANUP_DELAY_S, how long an exited container is kept (60)
        client / base_url: a DockerClient, else DOCKER_HOST & co. (docker.from_env)
        network: LLMCT_DOCKER_NETWORK, the containers' network mode (Docker's default if unset)
        user: LLMCT_DOCKER_USER, "uid:gid" the engine runs as (the image's user if unset)
        """
        env = os.environ.get
        self.storage = storage or storage_from_env()
        self.image = image or env("LLMCT_DOCKER_IMAGE") or DEFAULT_IMAGE
        self.agent_id = agent_id or env("LLMCT_AGENT_ID") or socket.gethostname()
        self.memory = memory or env("LLMCT_DOCKER_MEMORY") or None
        self.extra_mounts = dict(extra_mounts if extra_mounts is not None
                                 else _split_mounts(env("LLMCT_DOCKER_EXTRA_MOUNTS", "")))
        self.cleanup_delay_s = float(cleanup_delay_s if cleanup_delay_s is not None
                                     else env("LLMCT_DOCKER_CLEANUP_DELAY_S") or DEFAULT_CLEANUP_DELAY_S)
        self.network = network or env("LLMCT_DOCKER_NETWORK") or None
        self.user = user or env("LLMCT_DOCKER_USER") or None
        self._base_url = base_url
        self._client_lock = threading.Lock()
        self._client_obj = client
        self._active: set[str] = set()  # containers whose exit was not collected yet: cleanup spares them

    # -- the Docker client, made on first use (connecting blocks) ---------------------------------------
    @property
    def _client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client_obj is None:
                # Each running job holds three connections (two log streams and a wait).
                if self._base_url:
                    self._client_obj = docker.DockerClient(base_url=self._base_url, max_pool_size=64)
                else:
                    self._client_obj = docker.from_env(max_pool_size=64)
            return self._client_obj

    def labels(self, spec: JobSpec) -> dict[str, str]:
        return {LABEL_AGENT: self.agent_id, LABEL_JOB: spec.job_id, LABEL_KIND: spec.kind,
                LABEL_STAGE: str(spec.stage), LABEL_ATTEMPT: str(spec.attempt)}

    # -- what the container sees ----------------------------------------------------------------------
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
        reads, writes = _yaml_paths(spec.config_path)
        for path in writes:
            add(path, False)
        for path in reads:
            if Path(path).exists():  # a hub id or a missing path: the engine says what is wrong
                add(path, True)
        for host, target in self.extra_mounts.items():
            add(host, True, target)

        mounts = []
        for target in sorted(wanted):
            read_only = wanted[target]
            # A read-only path inside another mount is visible already; a writable one inside a
            # read-only mount needs its own (nested) mount, which Docker mounts after its parent.
            if read_only and any(other != target and sources[other] == other and _is_under(target, other)
                                 for other in wanted):
                continue
            mounts.append(docker.types.Mount(target=target, source=sources[target], type="bind",
                                             read_only=read_only))
        return mounts

    def environment(self, spec: JobSpec) -> dict[str, str]:
        env = dict(spec.env)
        env["HF_HOME"] = str(self.storage.hf_cache)
        # With a device request only the requested GPUs exist inside, numbered from 0.
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpu_ids)) if spec.gpu_ids else "void"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpu_ids)))
        return env

    def create_options(self, spec: JobSpec) -> dict[str, Any]:
        """Everything `containers.create` is given for a job (tests and docs read this)."""
        options: dict[str, Any] = dict(
            image=self.image, command=list(spec.command), name=container_name(spec), labels=self.labels(spec),
            environment=self.environment(spec), mounts=self.mount_plan(spec), working_dir=str(spec.output_dir),
            shm_size=SHM_SIZE, init=True, detach=True,
        )
        if spec.gpu_ids:
            options["device_requests"] = [docker.types.DeviceRequest(device_ids=[str(i) for i in spec.gpu_ids],
                                                                     capabilities=[["gpu"]])]
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

    # -- start ------------------------------------------------------------------------------------------
    def _start_blocking(self, spec: JobSpec) -> tuple[str, str]:
        try:
            return self._create_and_start(spec)
        except RuntimeStartError:
            raise
        except docker.errors.APIError as exc:
            raise RuntimeStartError("start_failed", f"Docker refused the job's container: {exc}") from exc
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            raise RuntimeStartError("docker_unavailable", f"cannot reach the Docker engine: {exc}") from exc

    def _create_and_start(self, spec: JobSpec) -> tuple[str, str]:
        client = self._client
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        self.storage.hf_cache.mkdir(parents=True, exist_ok=True)
        for path in _yaml_paths(spec.config_path)[1]:
            Path(path).mkdir(parents=True, exist_ok=True)
        options = self.create_options(spec)
        name = options["name"]
        container = self._create(client, options)
        self._active.add(container.id)
        try:
            container.start()
        except docker.errors.APIError as exc:
            self._active.discard(container.id)
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            text = str(exc.explanation or exc)
            if spec.gpu_ids and re.search(r"device driver|nvidia|gpu", text, re.IGNORECASE):
                raise RuntimeStartError(
                    "gpu_unavailable",
                    f"GPUs {list(spec.gpu_ids)} cannot be given to a container on this host ({text}): "
                    "install the NVIDIA driver and the NVIDIA Container Toolkit, then restart Docker",
                ) from exc
            raise RuntimeStartError("start_failed", f"container {name} did not start: {text}") from exc
        return container.id, name

    def _create(self, client: docker.DockerClient, options: dict[str, Any]):
        name = options["name"]
        for attempt in range(2):
            try:
                return client.containers.create(**options)
            except docker.errors.ImageNotFound as exc:
                raise RuntimeStartError(
                    "image_missing",
                    f"the engine image {self.image} is not on this host: build or pull it "
                    f"(docker pull {self.image}, or see docs/docker.md), or set LLMCT_DOCKER_IMAGE",
                ) from exc
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or attempt:
                    raise RuntimeStartError("start_failed", f"container {name} was refused: "
                                                            f"{exc.explanation or exc}") from exc
                self._clear_name(client, name)
        raise AssertionError("unreachable")

    def _clear_name(self, client: docker.DockerClient, name: str) -> None:
        """A container already has this job's name (a retry): remove it if it is ours and over."""
        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            return
        labels = old.labels or {}
        if labels.get(LABEL_AGENT) != self.agent_id:
            raise RuntimeStartError("name_conflict",
                                    f"a container named {name} exists and is not this agent's: remove it")
        if old.status in ("running", "restarting", "paused"):
            raise RuntimeStartError("already_running", f"container {name} of this job is still running")
        self._active.discard(old.id)
        with contextlib.suppress(docker.errors.NotFound):
            old.remove(force=True)

    async def start(self, spec: JobSpec) -> DockerRun:
        container_id, name = await asyncio.to_thread(self._start_blocking, spec)
        return DockerRun(self, container_id, name)

    # -- after an agent restart ------------------------------------------------------------------------
    def _find_blocking(self) -> list[FoundEngine]:
        api = self._client.api
        found: dict[str, FoundEngine] = {}
        for summary in api.containers(all=True, filters={"label": [f"{LABEL_AGENT}={self.agent_id}"]}):
            try:
                info = api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            labels = info.get("Config", {}).get("Labels") or {}
            state = info.get("State", {})
            running = bool(state.get("Running") or state.get("Restarting") or state.get("Paused"))
            if labels.get(LABEL_AGENT) != self.agent_id or not labels.get(LABEL_JOB):
                continue
            if not running and not _parse_time(state.get("StartedAt")):
                continue  # created, never started: no run to follow
            env = dict(item.partition("=")[::2] for item in info.get("Config", {}).get("Env") or [])
            gpus = env.get("NVIDIA_VISIBLE_DEVICES", "")
            engine = FoundEngine(
                job_id=labels[LABEL_JOB], kind=labels.get(LABEL_KIND, "train"),
                stage=int(labels.get(LABEL_STAGE) or 0), running=running, ref=info["Id"],
                name=info.get("Name", "").lstrip("/"), output_dir=info.get("Config", {}).get("WorkingDir", ""),
                gpu_ids=tuple(int(i) for i in gpus.split(",") if i.isdigit()),
                attempt=int(labels.get(LABEL_ATTEMPT) or 0),  # none on containers from before attempts
            )
            # One container per job (every stage has the job's name): keep the running one, else the latest stage.
            other = found.get(engine.job_id)
            if other is None or (engine.running, engine.stage) > (other.running, other.stage):
                found[engine.job_id] = engine
        return list(found.values())

    async def find_own(self) -> list[FoundEngine]:
        """This agent's containers that ran a job: running ones, and exited ones not removed yet."""
        return await asyncio.to_thread(self._find_blocking)

    async def attach(self, found: FoundEngine, position: Mapping[str, Any] | None = None) -> DockerRun:
        """Follow a found container again, from `position` (an earlier DockerRun's) or from its first line."""
        self._active.add(found.ref)  # cleanup must not remove it before its exit is collected
        return DockerRun(self, found.ref, found.name, resume=position)

    async def stop_found(self, found: FoundEngine, grace_s: float = 5) -> None:
        """Stop a found container without following it (a deployment whose server can't be reached again)."""

        def stop() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self._client.api.stop(found.ref, timeout=max(0, math.ceil(grace_s)))

        await _in_thread(stop, f"{found.name}-stop")

    @staticmethod
    def position_since(ref: str, seconds: float) -> dict[str, Any]:
        """A position that skips the messages Docker stamped before `seconds` (an epoch time)."""
        ns = int(seconds * 1e9)
        return {"container": ref, "stdout": [ns, 0], "stderr": [ns, 0]}

    # -- cleanup ----------------------------------------------------------------------------------------
    def _cleanup_blocking(self) -> list[str]:
        api = self._client.api
        now = datetime.now(UTC)
        removed = []
        summaries = api.containers(all=True, filters={"label": [f"{LABEL_AGENT}={self.agent_id}"],
                                                      "status": ["exited", "dead", "created"]})
        for summary in summaries:
            if summary["Id"] in self._active:
                continue
            try:
                info = api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            if (info.get("Config", {}).get("Labels") or {}).get(LABEL_AGENT) != self.agent_id:
                continue  # belt and braces: never touch a container without our label
            state = info.get("State", {})
            if state.get("Running") or state.get("Restarting") or state.get("Paused"):
                continue
            ended = _parse_time(state.get("FinishedAt")) or _parse_time(info.get("Created"))
            if ended and (now - ended).total_seconds() < self.cleanup_delay_s:
                continue
            try:
                api.remove_container(summary["Id"])
            except docker.errors.APIError as exc:  # already gone, or removal in progress
                log.debug("could not remove %s: %s", summary["Id"][:12], exc)
                continue
            removed.append(info.get("Name", summary["Id"]).lstrip("/"))
        if removed:
            log.info("removed exited containers: %s", ", ".join(removed))
        return removed

    async def cleanup(self) -> None:
        """Remove this agent's exited containers once they are older than `cleanup_delay_s`."""
        await asyncio.to_thread(self._cleanup_blocking)
