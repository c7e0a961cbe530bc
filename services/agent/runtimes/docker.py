"""The `docker` runtime: the engine in a container on this host's Docker engine (production).

What each container is given (mounts at the same paths as on the host, environment, labels) is
docker_options.py's; following a container's output and exit is docker_run.py's. See docs/docker.md.

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
import re
import shutil
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions

from services.common.settings import StoragePaths

from ..settings import DEFAULT_CLEANUP_DELAY_S
from ..settings import DEFAULT_DOCKER_IMAGE as DEFAULT_IMAGE
from .base import FoundEngine, JobSpec, RuntimeStartError
from .docker_options import (
    DEFAULT_MEMORY,
    DEFAULT_PIDS_LIMIT,
    LABEL_AGENT,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_KIND,
    LABEL_STAGE,
    ContainerPlan,
    container_name,
)
from .docker_run import DockerRun, _in_thread

__all__ = [
    "DEFAULT_IMAGE",
    "LABEL_AGENT",
    "LABEL_ATTEMPT",
    "LABEL_JOB",
    "LABEL_KIND",
    "LABEL_STAGE",
    "DockerRun",
    "DockerRuntime",
    "container_name",
]

log = logging.getLogger(__name__)


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time with nanoseconds; None for its zero time ("0001-01-01T00:00:00Z")."""
    if not value or value.startswith("0001-"):
        return None
    main, _, rest = value.partition(".")
    zone = ""
    if rest:
        match = re.match(r"\d*", rest)  # never None: \d* matches the empty string too
        digits = match.group(0) if match else ""
        zone = rest[len(digits) :]
        main = f"{main}.{digits[:6]}"
    elif value.endswith("Z") or "+" in value[10:]:
        main, zone = value[:19], value[19:]
    zone = "+00:00" if zone in ("", "Z") else zone
    try:
        return datetime.fromisoformat(main + zone)
    except ValueError:
        return None


class DockerRuntime:
    """Runs the engine command in a container of `image`, one per job, labelled with this agent's id.

    Reattachable: a container keeps running when the agent stops, and the next agent picks it up.
    """

    name = "docker"

    def __init__(
        self,
        *,
        storage: StoragePaths,
        agent_id: str,
        image: str = DEFAULT_IMAGE,
        memory: str | None = DEFAULT_MEMORY,
        extra_mounts: Mapping[str, str] | None = None,
        cleanup_delay_s: float = DEFAULT_CLEANUP_DELAY_S,
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
        network: str | None = None,
        user: str | None = None,
        pids_limit: int | None = DEFAULT_PIDS_LIMIT,
    ):
        """The agent passes its settings (services/agent/settings.py, LLMCT_DOCKER_*); nothing is read here.

        agent_id: the label this agent finds its containers by
        memory: a memory limit per container such as "24g" ("auto": most of the host's); pids_limit: processes
        and threads per container; extra_mounts: {host: container path}, read-only
        cleanup_delay_s: how long an exited container is kept
        client / base_url: a DockerClient, else one for `base_url`, else Docker's own DOCKER_HOST & co.
        (docker.from_env), made on first use
        network: the containers' network mode; user: "uid:gid" the engine runs as (never root; default: the
        agent's own, or the storage owner's when the agent is root)
        """
        self.plan = ContainerPlan(
            storage=storage,
            agent_id=agent_id,
            image=image,
            memory=memory,
            extra_mounts=dict(extra_mounts or {}),
            network=network,
            user=user,
            pids_limit=pids_limit,
        )
        self.cleanup_delay_s = float(cleanup_delay_s)
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

    def _run(self, container_id: str, name: str, resume: Mapping[str, Any] | None = None) -> DockerRun:
        """A DockerRun of one of this runtime's containers, given what it needs (nothing of this object's)."""
        return DockerRun(self._client, container_id, name, image=self.plan.image, active=self._active, resume=resume)

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
        self.plan.prepare(spec)
        options = self.plan.create_options(spec)
        name = options["name"]
        container = self._create(client, options)
        if container.id is None:  # the SDK types it optional; a created container always has one
            raise RuntimeStartError("start_failed", f"Docker created container {name} without an id")
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
                    f"the engine image {self.plan.image} is not on this host: build or pull it "
                    f"(docker pull {self.plan.image}, or see docs/docker.md), or set LLMCT_DOCKER_IMAGE",
                ) from exc
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or attempt:
                    raise RuntimeStartError(
                        "start_failed", f"container {name} was refused: {exc.explanation or exc}"
                    ) from exc
                self._clear_name(client, name)
        raise AssertionError("unreachable")

    def _clear_name(self, client: docker.DockerClient, name: str) -> None:
        """A container already has this job's name (a retry): remove it if it is ours and over."""
        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            return
        labels = old.labels or {}
        if labels.get(LABEL_AGENT) != self.plan.agent_id:
            raise RuntimeStartError(
                "name_conflict", f"a container named {name} exists and is not this agent's: remove it"
            )
        if old.status in ("running", "restarting", "paused"):
            raise RuntimeStartError("already_running", f"container {name} of this job is still running")
        self._active.discard(old.id)
        with contextlib.suppress(docker.errors.NotFound):
            old.remove(force=True)

    async def start(self, spec: JobSpec) -> DockerRun:
        container_id, name = await asyncio.to_thread(self._start_blocking, spec)
        return self._run(container_id, name)

    # -- after an agent restart ------------------------------------------------------------------------
    def _find_blocking(self) -> list[FoundEngine]:
        api = self._client.api
        found: dict[str, FoundEngine] = {}
        for summary in api.containers(all=True, filters={"label": [f"{LABEL_AGENT}={self.plan.agent_id}"]}):
            try:
                info = api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            labels = info.get("Config", {}).get("Labels") or {}
            state = info.get("State", {})
            running = bool(state.get("Running") or state.get("Restarting") or state.get("Paused"))
            if labels.get(LABEL_AGENT) != self.plan.agent_id or not labels.get(LABEL_JOB):
                continue
            if not running and not _parse_time(state.get("StartedAt")):
                continue  # created, never started: no run to follow
            env = dict(item.partition("=")[::2] for item in info.get("Config", {}).get("Env") or [])
            gpus = env.get("NVIDIA_VISIBLE_DEVICES", "")
            engine = FoundEngine(
                job_id=labels[LABEL_JOB],
                kind=labels.get(LABEL_KIND, "train"),
                stage=int(labels.get(LABEL_STAGE) or 0),
                running=running,
                ref=info["Id"],
                name=info.get("Name", "").lstrip("/"),
                output_dir=info.get("Config", {}).get("WorkingDir", ""),
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
        return self._run(found.ref, found.name, position)

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
        summaries = api.containers(
            all=True,
            filters={"label": [f"{LABEL_AGENT}={self.plan.agent_id}"], "status": ["exited", "dead", "created"]},
        )
        for summary in summaries:
            if summary["Id"] in self._active:
                continue
            try:
                info = api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            if (info.get("Config", {}).get("Labels") or {}).get(LABEL_AGENT) != self.plan.agent_id:
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
            self._forget_job_files(api, (info.get("Config", {}).get("Labels") or {}).get(LABEL_JOB))
        if removed:
            log.info("removed exited containers: %s", ", ".join(removed))
        return removed

    def _forget_job_files(self, api, job_id: str | None) -> None:
        """Remove a job's files (its scratch folder, dataset_info copies) once it has no container left."""
        if not job_id or api.containers(all=True, filters={"label": [f"{LABEL_JOB}={job_id}"]}):
            return
        shutil.rmtree(self.plan.job_folder(job_id), ignore_errors=True)

    async def cleanup(self) -> None:
        """Remove this agent's exited containers once they are older than `cleanup_delay_s`."""
        await asyncio.to_thread(self._cleanup_blocking)
