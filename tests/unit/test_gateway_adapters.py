"""Where the gateway sends a chat that names a LoRA adapter, and what it lists (services/gateway/adapters.py): a
deployment of the adapter's base on vLLM, the least busy; clear refusals otherwise; /v1/models and the playground's
picker; the agent's 429 relayed with Retry-After (services/gateway/chat.py)."""

from pathlib import Path

import msgspec
import pytest

from services.common.contracts import AdapterRef, ChatFrames, JobInput, ModelForUse
from services.common.errors import ApiError
from services.gateway.adapters import (
    adapter_entries,
    adapter_files,
    adapter_of,
    chat_headers,
    check_adapter_on,
    choices_on,
    deployment_entry,
    deployment_for_adapter,
)
from services.gateway.chat import platform_error, retry_after
from services.gateway.openai_shape import OpenAIError

pytestmark = pytest.mark.unit

ADAPTER = ModelForUse(
    name="alice-lora",
    kind="lora",
    model_path="/models/tiny",
    template="default",
    adapter_path="/srv/llm/output/job_1",
    base="tiny",
    inputs=[JobInput(bucket="outputs", name="job_1/a", sha256="ab" * 32, size=9, path="output/job_1/a.safetensors")],
)
BASE = Path("/srv/llm")  # the storage base: inputs' paths are relative to it


def deployment(dep_id: str, model: str = "tiny", state: str = "ready", engine: str | None = "vllm", **more) -> dict:
    return {
        "id": dep_id,
        "model": model,
        "state": state,
        "engine": engine,
        "created_at": "2026-01-01T00:00:00+00:00",
        "ready_at": "2026-01-01T00:01:00+00:00",
        **more,
    }


def test_only_a_lora_with_a_base_is_an_adapter_to_pool():
    assert adapter_of(ADAPTER) is ADAPTER
    assert adapter_of(None) is None
    assert adapter_of(msgspec.structs.replace(ADAPTER, base=None)) is None  # the registry did not say its base
    assert adapter_of(msgspec.structs.replace(ADAPTER, kind="full", adapter_path=None)) is None


def test_an_adapter_goes_to_the_least_busy_vllm_deployment_of_its_base():
    busy = deployment("dep_1", load={"running": 5, "waiting": 3})
    idle = deployment("dep_2", load={"running": 1, "waiting": 0})
    others = [deployment("dep_3", model="other"), deployment("dep_4", engine="llamafactory")]
    assert deployment_for_adapter("alice-lora", ADAPTER, [busy, *others, idle])["id"] == "dep_2"


def test_an_adapter_whose_base_runs_only_on_llamafactory_is_a_400_saying_to_deploy_with_vllm():
    with pytest.raises(OpenAIError) as caught:
        deployment_for_adapter("alice-lora", ADAPTER, [deployment("dep_1", engine="llamafactory")])
    assert (caught.value.status, caught.value.code) == (400, "adapters_not_supported")
    assert "engine vllm" in caught.value.message and "'tiny'" in caught.value.message


def test_an_adapter_whose_base_is_not_deployed_is_a_404_naming_the_base():
    with pytest.raises(OpenAIError) as caught:
        deployment_for_adapter("alice-lora", ADAPTER, [deployment("dep_1", model="other")])
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")
    assert "deploy its base 'tiny'" in caught.value.message


def test_an_adapter_whose_base_is_starting_is_a_503_with_retry_after():
    with pytest.raises(OpenAIError) as caught:
        deployment_for_adapter("alice-lora", ADAPTER, [deployment("dep_1", state="starting", engine=None)])
    assert caught.value.status == 503 and caught.value.headers["Retry-After"]


def test_the_headers_say_who_asks_always_and_the_adapter_when_there_is_one():
    assert chat_headers("usr_1", None, BASE) == {ChatFrames.USER: "usr_1"}
    headers = chat_headers("usr_1", ADAPTER, BASE)
    ref = msgspec.json.decode(headers[ChatFrames.ADAPTER], type=AdapterRef)
    assert ref == AdapterRef(name="alice-lora", adapter_path="/srv/llm/output/job_1", inputs=ADAPTER.inputs)
    assert "\n" not in headers[ChatFrames.ADAPTER]  # one header line


def stored(path: str) -> JobInput:
    return JobInput(bucket="outputs", name=path, sha256="ab" * 32, size=9, path=path)


def test_the_adapter_header_carries_the_adapters_files_not_its_bases():
    base_files = [stored("models/tiny/model.safetensors"), stored("models/tiny/config.json")]
    own = [stored("output/job_1/adapter_model.safetensors"), stored("output/job_1/adapter_config.json")]
    with_base = msgspec.structs.replace(ADAPTER, inputs=[*base_files, *own, stored("output/job_10/x")])
    assert adapter_files(with_base, BASE) == own
    elsewhere = msgspec.structs.replace(with_base, adapter_path="/elsewhere/job_1")  # not under the base: all
    assert adapter_files(elsewhere, BASE) == with_base.inputs
    unmatched = msgspec.structs.replace(with_base, inputs=base_files)  # never none: the agent would lack files
    assert adapter_files(unmatched, BASE) == base_files


def test_the_playground_checks_the_adapter_against_its_deployment():
    dep = deployment("dep_1")
    assert check_adapter_on(dep, "alice-lora", ADAPTER) is ADAPTER
    cases = [
        (dep, None, 404, "not_found"),  # refused by the registry: not found, whoever's it is
        (deployment("dep_1", model="other"), ADAPTER, 400, "adapter_not_of_base"),
        (deployment("dep_1", engine="llamafactory"), ADAPTER, 400, "adapters_not_supported"),
    ]
    for on, model, status, code in cases:
        with pytest.raises(ApiError) as caught:
            check_adapter_on(on, "alice-lora", model)
        assert (caught.value.status, caught.value.code, caught.value.field) == (status, code, "adapter")


REGISTRY_ADAPTERS = [
    {"name": "alice-lora", "owner": "alice", "created_at": "2026-01-02T00:00:00+00:00"},
    {"name": "shared-lora", "owner": None, "created_at": "2026-01-03T00:00:00+00:00"},
]


def test_models_list_a_deployment_with_no_parent_and_its_adapters_with_it_as_parent():
    dep = deployment("dep_1")
    assert deployment_entry(dep) == {
        "id": "dep_1",
        "object": "model",
        "created": 1767225660,
        "owned_by": "llm-cloud-trainer",
        "root": "tiny",
        "parent": None,
    }
    entries = adapter_entries(dep, REGISTRY_ADAPTERS)
    assert [(e["id"], e["root"], e["parent"], e["owned_by"]) for e in entries] == [
        ("alice-lora", "tiny", "dep_1", "alice"),
        ("shared-lora", "tiny", "dep_1", "llm-cloud-trainer"),
    ]


def test_the_picker_marks_what_the_engine_holds_and_offers_nothing_off_vllm():
    dep = deployment("dep_1", load={"running": 0, "waiting": 0, "adapters": [{"name": "shared-lora"}]})
    picked = [(c.name, c.owner, c.loaded) for c in choices_on(dep, REGISTRY_ADAPTERS)]
    assert picked == [("alice-lora", "alice", False), ("shared-lora", None, True)]
    assert [c.loaded for c in choices_on(deployment("dep_1", load=None), REGISTRY_ADAPTERS)] == [False, False]
    assert choices_on(deployment("dep_1", engine="llamafactory"), REGISTRY_ADAPTERS) == []
    assert choices_on(deployment("dep_1", state="starting", engine=None), REGISTRY_ADAPTERS) == []


def test_a_full_queue_is_relayed_with_retry_after():
    assert retry_after({ChatFrames.STATUS: "429", ChatFrames.RETRY_AFTER: "3"}) == {"Retry-After": "3"}
    assert retry_after({ChatFrames.STATUS: "200"}) == {}
    assert retry_after({ChatFrames.RETRY_AFTER: "soon\r\nX: y"}) == {}  # only a number of seconds is passed on
    body = b'{"error": {"message": "the queue is full", "type": "x", "param": null, "code": "rate_limit_exceeded"}}'
    error = platform_error(429, body, {"Retry-After": "3"})
    assert (error.status, error.code, error.headers) == (429, "rate_limit_exceeded", {"Retry-After": "3"})
