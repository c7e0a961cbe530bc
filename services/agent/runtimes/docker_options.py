"""What the docker runtime asks Docker for a job's container: its name, labels, mounts, environment and options.

Every host path the platform wrote into the job's YAML (its datasets, output dir, model, the YAML itself) is
bind-mounted at the SAME path inside the container, so the frozen YAML runs unchanged under either runtime.

A job sees only what is its own (docs/security.md): its YAML (not the temp folder of every job's), a
dataset_info.json of its own datasets and their files (not the data folder of every user's), its model read-only,
its output folder, a scratch folder of its own (caches, HOME) and the shared model cache read-only. A stage that
downloads (`JobSpec.downloads`) downloads into its scratch folder; one that does not runs offline and without the
hubs' credentials. The container runs as a user that is not root, with every capability dropped, no new privileges,
and pids and memory limits. See docs/docker.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.types
import yaml

from services.common.settings import StoragePaths

from ..hubs import without_secrets
from ..jobfiles import JobDatasets, job_datasets, write_info
from .base import JobSpec

log = logging.getLogger(__name__)

SHM_SIZE = "2g"
DEFAULT_JOB_USER = "65532:65532"  # when the agent runs as root and so does the storage's owner: nobody's uid
DEFAULT_PIDS_LIMIT = 8192  # processes and threads per container: a fork bomb stops there
DEFAULT_MEMORY = "auto"  # AUTO_MEMORY_SHARE of the host's memory: a runaway job can't take the agent down with it
AUTO_MEMORY_SHARE = 0.9
JOBS_FOLDER = "jobs"  # <temp>/jobs/<job id>/: the agent's per-job files (dataset_info copies, the scratch folder)

LABEL_AGENT = "llmct.agent"
LABEL_JOB = "llmct.job"
LABEL_KIND = "llmct.kind"
LABEL_STAGE = "llmct.stage"
LABEL_ATTEMPT = "llmct.attempt"  # the dispatch's attempt, for the events of a job picked up after a restart

# Path-valued keys of a LLaMA-Factory YAML the container must see: read-only inputs and outputs. dataset_dir is not
# one: the job gets its own datasets' files only (jobfiles.py).
READ_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "deepspeed",
    "resume_from_checkpoint",
    "task_dir",
    "export_quantization_dataset",
)
WRITE_KEYS = ("export_dir", "save_dir")


def default_job_user(storage: StoragePaths) -> str:
    """The agent's own uid:gid; for an agent that runs as root, the storage's owner's, else DEFAULT_JOB_USER."""
    if os.geteuid() != 0:
        return f"{os.geteuid()}:{os.getegid()}"
    try:
        info = storage.base.stat()
    except OSError:
        return DEFAULT_JOB_USER
    return f"{info.st_uid}:{info.st_gid}" if info.st_uid != 0 else DEFAULT_JOB_USER


def check_job_user(user: str) -> None:
    """Refuse a container user that is root (LLMCT_DOCKER_USER): a job never runs as root."""
    name = user.partition(":")[0].strip()
    if name in ("0", "root", ""):
        raise ValueError(f"LLMCT_DOCKER_USER={user!r}: jobs must not run as root; give a uid:gid such as 1000:1000")


def memory_limit(memory: str | None) -> str | int | None:
    """A container's memory limit: "auto" is AUTO_MEMORY_SHARE of this host's memory (in bytes)."""
    if memory != "auto":
        return memory
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return int(total * AUTO_MEMORY_SHARE)


@dataclass(frozen=True, kw_only=True)
class ContainerPlan:
    """How this agent's containers are made (the docker runtime's settings)."""

    storage: StoragePaths
    agent_id: str  # the label this agent finds its containers by
    image: str
    memory: str | None = DEFAULT_MEMORY  # a memory limit per container, such as "24g"; "auto": most of the host's
    extra_mounts: Mapping[str, str] = field(default_factory=dict)  # host -> container path, read-only
    network: str | None = None  # the network mode (Docker's default if None)
    user: str | None = None  # "uid:gid" the engine runs as (default_job_user if None); never root
    pids_limit: int | None = DEFAULT_PIDS_LIMIT

    def __post_init__(self) -> None:
        if self.user is not None:
            check_job_user(self.user)

    @property
    def job_user(self) -> str:
        return self.user or default_job_user(self.storage)

    def labels(self, spec: JobSpec) -> dict[str, str]:
        """The labels a restarted agent finds the job's container by, and what it needs to go on with it."""
        return {
            LABEL_AGENT: self.agent_id,
            LABEL_JOB: spec.job_id,
            LABEL_KIND: spec.kind,
            LABEL_STAGE: str(spec.stage),
            LABEL_ATTEMPT: str(spec.attempt),
        }

    # -- the job's own files ---------------------------------------------------------------------------------
    def job_folder(self, job_id: str) -> Path:
        """The agent's files of one job (not mounted as a whole): removed with the job's last container."""
        return self.storage.temp / JOBS_FOLDER / re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)

    def scratch(self, spec: JobSpec) -> Path:
        """The job's writable scratch folder: HOME, the datasets cache, a downloading stage's hub caches."""
        return self.job_folder(spec.job_id) / "scratch"

    def datasets_info(self, spec: JobSpec) -> Path:
        """The stage's own dataset_info.json, mounted over the data folder's."""
        return self.job_folder(spec.job_id) / f"dataset_info.{spec.stage}.json"

    def prepare(self, spec: JobSpec) -> None:
        """Write what the container is given that the job did not bring: its folders (owned by the job's user when
        the agent is root) and its own dataset_info.json."""
        uid, _, gid = self.job_user.partition(":")
        scratch = self.scratch(spec)
        writable = [
            spec.output_dir,
            scratch,
            scratch / "home",
            scratch / "cache",
            *map(Path, self._config_paths(spec)[1]),
        ]
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0 and uid.isdigit():  # never through a link the job left there
                os.chown(path, int(uid), int(gid) if gid.isdigit() else int(uid), follow_symlinks=False)
        self.job_folder(spec.job_id).chmod(0o755)
        spec.config_path.chmod(0o644)  # the job's user reads it; it holds nothing another job may not know
        datasets = self._datasets(spec)
        if datasets is not None:
            write_info(datasets, self.datasets_info(spec))

    def _config(self, spec: JobSpec) -> dict[str, Any]:
        try:
            config = yaml.safe_load(spec.config_path.read_text())
        except (OSError, yaml.YAMLError):
            return {}  # the engine reports a bad or missing config itself
        return config if isinstance(config, dict) else {}

    def _config_paths(self, spec: JobSpec) -> tuple[list[str], list[str]]:
        reads, writes = paths_in(self._config(spec))
        return (
            [p for p in reads if not self._reaches_shared(p, writing=False) and not self._through_link(p)],
            [p for p in writes if not self._reaches_shared(p, writing=True) and not self._through_link(p)],
        )

    def _through_link(self, path: str) -> bool:
        """Whether a path inside the storage passes through a link below its root. A job may leave links in
        its output (an earlier stage's `export -> ../job_of_someone_else`); Docker would mount where one
        leads, and a later stage or job would read, write or chown another user's folder."""
        base = os.path.abspath(self.storage.base)
        target = os.path.normpath(os.path.abspath(path))
        if not _is_under(target, base) or target == base:
            return False
        current = base
        for part in os.path.relpath(target, base).split(os.sep):
            current = os.path.join(current, part)
            if os.path.islink(current):
                log.warning("%s passes through the link %s: not mounted", path, current)
                return True
        return False

    def _datasets(self, spec: JobSpec) -> JobDatasets | None:
        return job_datasets(self._config(spec))

    def _reaches_shared(self, path: str, *, writing: bool) -> bool:
        """A path that holds a folder of everyone's (data, temp, state, logs, the model cache, the storage's
        roots), or lies in one: mounted, it would hand the job every user's files, so it never is. A file read
        in the data folder is allowed (a GPTQ calibration dataset the datasets service gave the job)."""
        storage = self.storage
        shared = [storage.data, storage.temp, storage.state, storage.logs, storage.hf_cache]
        real = os.path.realpath(path)
        if any(_is_under(os.path.realpath(folder), real) for folder in shared):
            return True
        if any(real == os.path.realpath(root) for root in (storage.output, storage.checkpoints, storage.models)):
            return True
        inside = shared if writing else [storage.temp, storage.state, storage.logs]
        return any(_is_under(real, os.path.realpath(folder)) for folder in inside)

    # -- what Docker is given --------------------------------------------------------------------------------
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
        add(self.scratch(spec), False)
        add(spec.config_path, True)
        if spec.hook_dir is not None:
            add(spec.hook_dir, True)
        if self.storage.hf_cache.is_dir():
            add(self.storage.hf_cache, True)
        datasets = self._datasets(spec)
        if datasets is not None and self.datasets_info(spec).exists():
            add(self.datasets_info(spec), True, datasets.info_path)
            for path in datasets.files:
                add(path, True)
        reads, writes = self._config_paths(spec)
        for path in writes:
            add(path, False)
        for path in reads:
            if Path(path).exists():  # a hub id or a missing path: the engine says what is wrong
                add(path, True)
        for host, target in self.extra_mounts.items():
            add(host, True, target)
        return _mounts(wanted, sources)

    def environment(self, spec: JobSpec) -> dict[str, str]:
        """The job's environment: its own caches and HOME, the hubs' credentials only when it downloads, and
        the GPUs as the container sees them."""
        env = dict(spec.env) if spec.downloads else without_secrets(spec.env)
        scratch = self.scratch(spec)
        # The shared cache is read-only: a stage that downloads fills a cache of its own.
        hub_cache = scratch if spec.downloads else self.storage.hf_cache
        env.update(
            HOME=str(scratch / "home"),
            USER="llmct-job",  # no passwd entry for the job's uid: getpass and the like read these
            LOGNAME="llmct-job",
            XDG_CACHE_HOME=str(scratch / "cache"),
            HF_HOME=str(scratch / "hf"),
            HF_DATASETS_CACHE=str(scratch / "datasets"),
            HF_HUB_CACHE=str(hub_cache / "hub"),
            MODELSCOPE_CACHE=str(hub_cache / "modelscope"),
            TRITON_CACHE_DIR=str(scratch / "triton"),
        )
        if not spec.downloads:
            env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
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
            "user": self.job_user,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
        }
        if self.pids_limit:
            options["pids_limit"] = self.pids_limit
        if spec.gpu_ids:
            options["device_requests"] = [
                docker.types.DeviceRequest(device_ids=[str(i) for i in spec.gpu_ids], capabilities=[["gpu"]])
            ]
        if (memory := memory_limit(self.memory)) is not None:
            options.update(mem_limit=memory, memswap_limit=memory)  # no swap: an OOM is an OOM
        if self.network:
            options["network_mode"] = self.network
        if spec.ports and self.network != "host":
            # Published on the agent's loopback only; inside, the server listens on every interface.
            options["ports"] = {f"{port}/tcp": ("127.0.0.1", port) for port in spec.ports}
            options["environment"] = {**options["environment"], "API_HOST": "0.0.0.0"}
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


def paths_in(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(read paths, write paths): the absolute paths a job's YAML names, for the mount plan."""

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
