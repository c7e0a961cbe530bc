"""Which model hub an engine stage downloads from, as the environment LLaMA-Factory reads.

LLaMA-Factory looks a model id up on Hugging Face unless `USE_MODELSCOPE_HUB=1`; with it, it downloads the id
from ModelScope (and needs the `modelscope` package: without it the engine stops with "The 'modelscope>=…'
distribution was not found", which failures.py reports as `missing_dependency`). The scheduler decides the hub
per stage (`EngineStage.hub`); an agent's own environment never does (runtimes/process.py drops these from
what the engine inherits), so a job runs from the same hub on every agent and in both runtimes.
"""

from __future__ import annotations

from pathlib import Path

from services.common.contracts import MODEL_HUBS

# The variables by which LLaMA-Factory picks a hub for model ids (and for datasets that name several hubs).
HUB_SELECTORS = ("USE_MODELSCOPE_HUB", "USE_OPENMIND_HUB")
# Parts of a variable's name that make it a secret (HF_TOKEN, MODELSCOPE_API_TOKEN, HF_TOKEN_PATH...): a hub's
# credentials go only to stages that download (a model or a dataset from a hub), never to one that reads local files.
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")


class UnknownHub(ValueError):
    """A stage names a hub this agent cannot set the engine up for (a newer scheduler): never run it elsewhere."""


# The hubs' clients' variables (what AgentSettings.engine_env passes on): only these are taken for hub credentials,
# so a deployment's own API_KEY (services/agent/serving.py) stays.
HUB_CLIENT_PREFIXES = ("HF_", "HUGGING_FACE_", "TRANSFORMERS_", "MODELSCOPE_")


def is_secret(name: str) -> bool:
    """Whether an engine variable carries a hub's credentials (HF_TOKEN, MODELSCOPE_API_TOKEN and the like)."""
    upper = name.upper()
    return upper.startswith(HUB_CLIENT_PREFIXES) and any(word in upper for word in SECRET_WORDS)


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    """`env` less the hubs' credentials: the environment of a stage that downloads nothing."""
    return {name: value for name, value in env.items() if not is_secret(name)}


def hub_environment(hub: str | None, hf_cache: Path) -> dict[str, str]:
    """The engine's hub variables for a stage whose model comes from `hub` (None: a local copy).

    ModelScope's cache sits in the shared cache beside Hugging Face's (the Docker runtime mounts it writable), for
    every stage: a dataset registered from ModelScope is downloaded from there whatever the model's hub.
    """
    if hub is not None and hub not in MODEL_HUBS:
        raise UnknownHub(
            f"this agent cannot download models from hub {hub!r} (it knows {', '.join(MODEL_HUBS)}): upgrade the agent"
        )
    env = {"MODELSCOPE_CACHE": str(hf_cache / "modelscope")}
    if hub == "modelscope":
        env["USE_MODELSCOPE_HUB"] = "1"
    return env
