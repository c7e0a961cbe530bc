"""The agent's own settings: each declared once (environment variable, default, meaning), read once at start.

`AgentSettings.from_env(os.environ)` runs in the app factory (services/agent/app.py); the runner and the
runtimes are given the values, so nothing in the agent reads the environment at import time or in a
constructor. The storage paths and the NATS connection are every service's (services/common/settings.py).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from services.common.nats_auth import check_agent_id, default_agent_id
from services.common.settings import REPO_ROOT

DEFAULT_DOCKER_IMAGE = "lf-with-optimum:v1.0"  # the seed's engine image
DEFAULT_CLEANUP_DELAY_S = 60.0
# Variables of the hubs' clients that every engine gets, in a container too (hubs.py picks the hub itself).
ENGINE_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "MODELSCOPE_")


def env(variable: str, doc: str) -> msgspec.Meta:
    """A field's environment variable and its one-line meaning (read by `AgentSettings.from_env`)."""
    return msgspec.Meta(description=doc, extra={"env": variable})


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the agent reads from its environment (docs/docker.md and docs/fleet.md say how to set them)."""

    agent_id: Annotated[str, env("LLMCT_AGENT_ID", "this agent's id: NATS user, subjects, container labels "
                                                   "(default: the host name made a subject token)")] = "agent"
    heartbeat_s: Annotated[float, env("LLMCT_HEARTBEAT_S", "seconds between two heartbeats")] = 5.0
    cpu_slots: Annotated[int | None, env("LLMCT_CPU_SLOTS", "CPU jobs run at once (default: 1 without GPUs, "
                                                            "0 with them)")] = None
    runtime: Annotated[str, env("LLMCT_RUNTIME", "`process` or `docker` (docs/docker.md)")] = "process"
    engine_bin: Annotated[Path, env("LLMCT_ENGINE_BIN", "the process runtime's engine environment's bin folder")] = \
        REPO_ROOT / ".venv-engine" / "bin"
    state_path: Annotated[Path | None, env("LLMCT_AGENT_STATE_PATH", "where jobs in containers are saved for the "
                                                                     "next agent (a local disk is best: a cursor is "
                                                                     "rewritten after every batch of log lines); "
                                                                     "default <HOST_BASE_PATH>/state/agents/<id>")] = None
    docker_image: Annotated[str, env("LLMCT_DOCKER_IMAGE", "the engine image of the docker runtime")] = \
        DEFAULT_DOCKER_IMAGE
    docker_memory: Annotated[str | None, env("LLMCT_DOCKER_MEMORY", "a memory limit per container, e.g. 24g "
                                                                    "(none by default)")] = None
    docker_extra_mounts: Annotated[str, env("LLMCT_DOCKER_EXTRA_MOUNTS", "more read-only mounts, "
                                                                         "\"HOST[:CONTAINER],...\"")] = ""
    docker_cleanup_delay_s: Annotated[float, env("LLMCT_DOCKER_CLEANUP_DELAY_S", "how long an exited container is "
                                                                                 "kept")] = DEFAULT_CLEANUP_DELAY_S
    docker_network: Annotated[str | None, env("LLMCT_DOCKER_NETWORK", "the containers' network mode (Docker's "
                                                                      "default if unset)")] = None
    docker_user: Annotated[str | None, env("LLMCT_DOCKER_USER", "\"uid:gid\" the engine runs as (the image's "
                                                                "user if unset)")] = None
    engine_env: dict[str, str] = {}
    """HF_*, TRANSFORMERS_*, MODELSCOPE_*: the hubs' client settings (endpoints, tokens) every engine gets."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentSettings:
        """The settings in `environ` (an empty value counts as unset); raises ValueError on a value of the wrong
        type and BadAgentId on an id NATS cannot carry."""
        values: dict[str, str | dict[str, str]] = {"agent_id": default_agent_id()}
        for name, variable in variables().items():
            if environ.get(variable):
                values[name] = environ[variable]
        values["engine_env"] = {k: v for k, v in environ.items() if k.startswith(ENGINE_ENV_PREFIXES)}
        try:
            settings = msgspec.convert(values, cls, strict=False, dec_hook=_path)
        except msgspec.ValidationError as exc:
            field = re.search(r"\$\.(\w+)", str(exc))
            raise ValueError(f"{variables().get(field.group(1) if field else '', 'agent setting')}: {exc}") from exc
        check_agent_id(settings.agent_id)  # a bad LLMCT_AGENT_ID stops the agent before it connects anywhere
        return settings

    def extra_mounts(self) -> dict[str, str]:
        """LLMCT_DOCKER_EXTRA_MOUNTS as {host path: container path}."""
        return split_mounts(self.docker_extra_mounts)

    def slots(self, has_gpus: bool) -> int:
        """CPU jobs this agent runs at once: LLMCT_CPU_SLOTS, else 1 on a host without GPUs and 0 on one with."""
        return self.cpu_slots if self.cpu_slots is not None else (0 if has_gpus else 1)


def variables() -> dict[str, str]:
    """Field name -> environment variable, from the declarations above."""
    found = {}
    for field in msgspec.structs.fields(AgentSettings):
        for meta in typing.get_args(field.type)[1:]:
            if isinstance(meta, msgspec.Meta) and meta.extra and "env" in meta.extra:
                found[field.name] = meta.extra["env"]
    return found


def split_mounts(text: str) -> dict[str, str]:
    """"HOST[:CONTAINER],..." as {host: container} (the host path itself when no container path is given)."""
    mounts: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, target = item.partition(":")
        mounts[host] = target or host
    return mounts


def _path(kind: type, value: object) -> object:
    """msgspec has no Path type of its own: a path setting is the string made a Path."""
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"no conversion to {kind}")
