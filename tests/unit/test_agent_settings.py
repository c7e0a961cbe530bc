"""The agent's settings (services/agent/settings.py): each declared once, read once from a given environment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.agent.app import service_spec
from services.agent.settings import AgentSettings
from services.common.nats_auth import BadAgentId, default_agent_id
from services.common.settings import REPO_ROOT, variables

pytestmark = pytest.mark.unit

EVERY = {
    "LLMCT_AGENT_ID": "gpu-7",
    "LLMCT_HEARTBEAT_S": "0.3",
    "LLMCT_CPU_SLOTS": "2",
    "LLMCT_RUNTIME": "docker",
    "LLMCT_ENGINE_BIN": "/opt/engine/bin",
    "LLMCT_AGENT_STATE_PATH": "/var/lib/llmct",
    "LLMCT_DOCKER_IMAGE": "engine:2",
    "LLMCT_DOCKER_MEMORY": "24g",
    "LLMCT_DOCKER_EXTRA_MOUNTS": "/usr,/a:/b",
    "LLMCT_DOCKER_CLEANUP_DELAY_S": "5",
    "LLMCT_DOCKER_NETWORK": "host",
    "LLMCT_DOCKER_USER": "1000:1000",
    "LLMCT_SIMULATED_GPUS": "2",
    "LLMCT_SIMULATED_GPU_MEMORY_MB": "1000",
    "LLMCT_DOCKER_PIDS_LIMIT": "64",
    "LLMCT_AGENT_CACHE_GB": "1.5",
    "LLMCT_AGENT_CACHE_PATH": "/srv/cache",
    "LLMCT_VLLM_BIN": "/opt/vllm/bin",
    "LLMCT_VLLM_CPU_KV_CACHE_MB": "64",
    "LLMCT_VLLM_CPU_MAX_MODEL_LEN": "256",
}


def test_the_defaults_are_todays():
    settings = AgentSettings.from_env({})
    assert settings == AgentSettings(
        agent_id=default_agent_id(),
        heartbeat_s=5.0,
        cpu_slots=None,
        runtime="process",
        engine_bin=REPO_ROOT / ".venv-engine" / "bin",
        state_path=None,
        docker_image="lf-with-optimum:v1.0",
        docker_memory="auto",
        docker_pids_limit=8192,
        docker_extra_mounts="",
        docker_cleanup_delay_s=60.0,
        docker_network=None,
        docker_user=None,
        simulated_gpus=0,
        simulated_gpu_memory_mb=24576,
        cache_gb=50.0,
        cache_path=None,
        vllm_bin=REPO_ROOT / ".venv-vllm" / "bin",
        vllm_cpu_kv_cache_mb=256,
        vllm_cpu_max_model_len=1024,
        engine_env={},
    )
    assert (settings.slots(has_gpus=False), settings.slots(has_gpus=True)) == (1, 0)


def test_every_variable_is_read():
    settings = AgentSettings.from_env(EVERY)
    assert set(variables(AgentSettings)) == set(EVERY), "each variable is declared once, on its field"
    assert settings == AgentSettings(
        agent_id="gpu-7",
        heartbeat_s=0.3,
        cpu_slots=2,
        runtime="docker",
        engine_bin=Path("/opt/engine/bin"),
        state_path=Path("/var/lib/llmct"),
        docker_image="engine:2",
        docker_memory="24g",
        docker_pids_limit=64,
        docker_extra_mounts="/usr,/a:/b",
        docker_cleanup_delay_s=5.0,
        docker_network="host",
        docker_user="1000:1000",
        simulated_gpus=2,
        simulated_gpu_memory_mb=1000,
        cache_gb=1.5,
        cache_path=Path("/srv/cache"),
        vllm_bin=Path("/opt/vllm/bin"),
        vllm_cpu_kv_cache_mb=64,
        vllm_cpu_max_model_len=256,
    )
    assert settings.extra_mounts() == {"/usr": "/usr", "/a": "/b"}
    assert (settings.slots(has_gpus=False), settings.slots(has_gpus=True)) == (2, 2)


def test_every_field_says_its_variable_and_meaning():
    documented = variables(AgentSettings)
    assert len(documented) == len(dataclasses.fields(AgentSettings)) - 1, "every field but engine_env has one"
    assert all(documented.values()), documented


def test_an_empty_value_counts_as_unset():
    assert AgentSettings.from_env(dict.fromkeys(EVERY, "")) == AgentSettings.from_env({})


def test_the_hubs_client_settings_go_to_every_engine():
    settings = AgentSettings.from_env(
        {
            "HF_ENDPOINT": "https://hf-mirror.com",
            "MODELSCOPE_ENDPOINT": "m",
            "TRANSFORMERS_OFFLINE": "1",
            "PATH": "/bin",
            "LLMCT_RUNTIME": "process",
        }
    )
    assert settings.engine_env == {
        "HF_ENDPOINT": "https://hf-mirror.com",
        "MODELSCOPE_ENDPOINT": "m",
        "TRANSFORMERS_OFFLINE": "1",
    }


def test_a_bad_value_names_its_variable():
    with pytest.raises(ValueError, match="LLMCT_HEARTBEAT_S"):
        AgentSettings.from_env({"LLMCT_HEARTBEAT_S": "often"})
    with pytest.raises(BadAgentId):
        AgentSettings.from_env({"LLMCT_AGENT_ID": "gpu.7"})  # a NATS subject token: refused before connecting


def test_the_service_is_built_from_the_settings_it_is_given():
    spec = service_spec(AgentSettings(agent_id="gpu-7"))
    assert spec.bus_options() == {"inbox_prefix": "_INBOX.agent-gpu-7"}
