"""Model hubs: the scheduler decides per stage where a model is downloaded from (a local copy: none), every kind
renders it, and the agent turns it into the engine's environment (USE_MODELSCOPE_HUB=1) in both runtimes."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml

from services.agent import failures
from services.agent.hubs import UnknownHub, hub_environment
from services.agent.runner import Runner
from services.agent.runtimes.base import ExitInfo
from services.agent.runtimes.process import ProcessRuntime
from services.agent.serving import ModelServer
from services.common import contracts
from services.common.settings import StoragePaths, settings_for
from services.registry import answers
from services.registry.rules import ModelRef
from services.scheduler import rendering
from services.scheduler.jobs import recovery
from services.scheduler.jobs.schemas import DeployRequest, JobRequest
from services.scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.unit

OUT = Path("/srv/cloud-llm/output/job_x")
NOTE = "# model hub: modelscope (the engine runs with USE_MODELSCOPE_HUB=1)\n"


def ref(**fields) -> ModelRef:
    return ModelRef(id="mdl_1", name="m", kind="base", source="preset", **fields)


MS_ONLY = ref(ms_path="LLM-Research/Meta-Llama-3.1-8B-Instruct")
BOTH = ref(hf_path="Qwen/Qwen3-0.6B", ms_path="Qwen/Qwen3-0.6B-ms")
LOCAL = ref(path="/srv/cloud-llm/models/tiny", hf_path="Qwen/Qwen3-0.6B", ms_path="Qwen/Qwen3-0.6B")


# --- the registry's answer --------------------------------------------------------------------------------------


def test_a_model_comes_from_its_local_copy_else_its_hub():
    assert LOCAL.loaded_from() == ("/srv/cloud-llm/models/tiny", None)
    assert LOCAL.loaded_from("modelscope") == ("/srv/cloud-llm/models/tiny", None), "a local copy always wins"
    assert MS_ONLY.loaded_from() == ("LLM-Research/Meta-Llama-3.1-8B-Instruct", "modelscope")
    assert ref(hf_path="org/m").loaded_from("modelscope") == ("org/m", "huggingface")


def test_a_model_on_both_hubs_comes_from_the_platforms_choice():
    assert BOTH.loaded_from() == ("Qwen/Qwen3-0.6B", "huggingface")
    assert BOTH.loaded_from("huggingface") == ("Qwen/Qwen3-0.6B", "huggingface")
    assert BOTH.loaded_from("modelscope") == ("Qwen/Qwen3-0.6B-ms", "modelscope")


def test_an_adapter_on_a_modelscope_base_is_loaded_on_it_from_modelscope():
    adapter = ModelRef(id="mdl_2", name="a", kind="lora", source="train", path="/srv/cloud-llm/output/job_a")
    paths = answers.model_for_job(adapter, MS_ONLY, "huggingface")
    assert paths.hub == "modelscope" and paths.model_path == MS_ONLY.ms_path
    assert paths.adapter_path == "/srv/cloud-llm/output/job_a"
    assert answers.model_for_job(adapter, LOCAL, "modelscope").hub is None
    alone = answers.model_for_job(MS_ONLY, None, "huggingface")
    assert (alone.model_path, alone.hub, alone.adapter_path) == (MS_ONLY.ms_path, "modelscope", None)


def test_the_platforms_hub_setting_is_checked(monkeypatch):
    monkeypatch.setenv("LLMCT_MODEL_HUB", "modelscope")
    assert settings_for(SchedulerSettings).model_hub == "modelscope"
    monkeypatch.setenv("LLMCT_MODEL_HUB", "openmind")
    with pytest.raises(ValueError, match="LLMCT_MODEL_HUB"):
        settings_for(SchedulerSettings)
    monkeypatch.delenv("LLMCT_MODEL_HUB")
    assert settings_for(SchedulerSettings).model_hub == "huggingface"


# --- every kind renders it -------------------------------------------------------------------------------------------

MS = rendering.ModelPaths(model_path="Qwen/Qwen2.5-0.5B-Instruct", template="qwen", hub="modelscope")
MS_ADAPTER = rendering.ModelPaths(
    model_path="Qwen/Qwen2.5-0.5B-Instruct",
    adapter_path="/srv/cloud-llm/output/job_a",
    template="qwen",
    hub="modelscope",
)
LOCAL_PATHS = rendering.ModelPaths(model_path="/srv/cloud-llm/models/tiny", template="default")


def rendered_for(kind: str, model: rendering.ModelPaths) -> rendering.Rendered:
    if kind == "train":
        req = msgspec.convert({"kind": "train", "base_model": "m", "datasets": ["d"]}, JobRequest)
        config = rendering.render_train(
            req, model_path=model.model_path, default_template=model.template, data_dir=Path("/data"), output_dir=OUT
        )
        return rendering.train_stages(config, model.hub)
    if kind in ("loss", "generation", "benchmark"):
        body = {
            "kind": "eval",
            "model": "m",
            "evaluation": kind,
            **({"task": "tinymc"} if kind == "benchmark" else {"datasets": ["d"]}),
        }
        return rendering.render_eval(
            msgspec.convert(body, JobRequest),
            model=model,
            stage="sft",
            data_dir=Path("/data"),
            task_dir=Path("/tasks"),
            output_dir=OUT,
        )
    if kind == "export":
        quantization = {"method": "gptq", "bits": 4, "calibration_dataset": "c"}
        req = msgspec.convert({"kind": "export", "model": "m", "quantization": quantization}, JobRequest)
        return rendering.render_export(req, model=model, output_dir=OUT, calibration_file="/data/c.json")
    req = msgspec.convert({"model": "m", "gpu_count": 0}, DeployRequest)
    return rendering.render_deploy(req, model=model, startup_timeout_s=1, idle_timeout_s=1)


def dispatched(rendered: rendering.Rendered) -> tuple[contracts.EngineStage, ...]:
    """The stages as the dispatcher sends them (stored rows, converted to the contract, over the wire)."""
    stages = tuple(msgspec.convert(row, contracts.EngineStage) for row in rendered.stage_rows())
    order = contracts.JobDispatched(
        job_id="job_x", kind="train", stages=stages, output_dir=str(OUT), dispatched_at=datetime.now(UTC)
    )
    return contracts.decode(contracts.encode(order)).stages


@pytest.mark.parametrize("kind", ["train", "loss", "generation", "benchmark", "export", "deploy"])
def test_every_kind_that_loads_a_modelscope_model_says_so(kind):
    rendered = rendered_for(kind, MS_ADAPTER if kind == "export" else MS)
    first = dispatched(rendered)[0]
    assert first.hub == "modelscope" and rendered.model_hub == "modelscope"
    assert first.config_yaml.startswith(NOTE), "the frozen YAML says how to run it again"
    assert yaml.safe_load(first.config_yaml)["model_name_or_path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert NOTE in rendered.yaml_text()
    assert rendering.model_hub(rendered.stage_rows()) == "modelscope"


@pytest.mark.parametrize("kind", ["train", "loss", "generation", "benchmark", "export", "deploy"])
def test_a_local_model_uses_no_hub(kind):
    rendered = rendered_for(
        kind,
        LOCAL_PATHS
        if kind != "export"
        else rendering.ModelPaths(model_path="/m", adapter_path="/srv/cloud-llm/output/job_a"),
    )
    assert {stage.hub for stage in dispatched(rendered)} == {None} and rendered.model_hub is None
    assert all("hub" not in row for row in rendered.stage_rows())
    assert "model hub" not in rendered.yaml_text()


def test_a_quantised_modelscope_adapter_merges_from_modelscope_then_quantises_the_local_merge():
    merge, quantize = dispatched(rendered_for("export", MS_ADAPTER))
    assert (merge.name, merge.hub) == ("merge", "modelscope")
    assert (quantize.name, quantize.hub) == ("quantize", None)
    assert yaml.safe_load(quantize.config_yaml)["model_name_or_path"] == str(OUT / "merged")


def test_a_retry_or_resume_keeps_the_hub_the_job_was_frozen_with():
    rows = rendered_for("train", MS).stage_rows()
    stages, config, text = recovery.with_checkpoint(rows, Path("/srv/cloud-llm/output/job_x/checkpoint-5"))
    assert stages[0]["hub"] == "modelscope" and text.count(NOTE) == 1 and text.startswith(NOTE)
    assert config["resume_from_checkpoint"].endswith("checkpoint-5")


def test_a_stage_from_before_hubs_decodes_as_local():
    old = b'{"name":"train","command":["llamafactory-cli","train"],"config_yaml":"a: 1\\n"}'
    assert msgspec.json.decode(old, type=contracts.EngineStage).hub is None
    assert rendering.model_hub([{"name": "train"}]) is None and rendering.model_hub(None) is None


# --- the agent's environment ----------------------------------------------------------------------------------------


def storage_in(tmp_path) -> StoragePaths:
    storage = StoragePaths(base=tmp_path, logs=tmp_path / "logs", hf_cache=tmp_path / "hf")
    storage.ensure()
    return storage


def order_with(tmp_path, hub: str | None, *, serve: bool = False, command=("llamafactory-cli", "train")):
    options = contracts.ServeOptions(startup_timeout_s=1, idle_timeout_s=1) if serve else None
    stage = contracts.EngineStage(
        name="serve" if serve else "train", command=command, config_yaml="a: 1\n", hub=hub, serve=options
    )
    return contracts.JobDispatched(
        job_id="job_1",
        kind="deploy" if serve else "train",
        stages=(stage,),
        output_dir=str(tmp_path / "out"),
        dispatched_at=datetime.now(UTC),
    )


def runner_in(tmp_path, runtime=None) -> Runner:
    return Runner(
        nc=None,
        js=None,
        agent_id="a1",
        runtime=runtime or ProcessRuntime(tmp_path / "bin"),
        storage=storage_in(tmp_path),
        engine_env={"HF_HUB_OFFLINE": "1"},
    )


def test_a_modelscope_stage_gets_use_modelscope_hub_and_others_do_not(tmp_path):
    runner = runner_in(tmp_path)
    modelscope = runner._spec(order_with(tmp_path, "modelscope"), 0).env
    assert modelscope["USE_MODELSCOPE_HUB"] == "1" and modelscope["HF_HUB_OFFLINE"] == "1"
    assert modelscope["MODELSCOPE_CACHE"] == str(tmp_path / "hf" / "modelscope"), "the shared cache, not ~/.cache"
    for hub in (None, "huggingface"):
        env = runner._spec(order_with(tmp_path, hub), 0).env
        assert "USE_MODELSCOPE_HUB" not in env and env["MODELSCOPE_CACHE"] == modelscope["MODELSCOPE_CACHE"]
        assert {k: v for k, v in env.items() if k != "MODELSCOPE_CACHE"} == {
            k: v for k, v in modelscope.items() if k not in ("MODELSCOPE_CACHE", "USE_MODELSCOPE_HUB")
        }


async def test_a_served_modelscope_model_gets_it_beside_the_servers_own_settings(tmp_path):
    server = ModelServer(
        nc=None,
        deployment_id="dep_1",
        agent_id="a1",
        publish=None,
        note=lambda _: None,
        options=contracts.ServeOptions(startup_timeout_s=1, idle_timeout_s=1),
    )
    try:
        env = (
            runner_in(tmp_path)
            ._spec(order_with(tmp_path, "modelscope", serve=True), 0, server.environment(), ports=(server.port,))
            .env
        )
    finally:
        await server._http.aclose()
    assert env["USE_MODELSCOPE_HUB"] == "1" and env["API_PORT"] == str(server.port) and env["API_KEY"]


def test_an_unknown_hub_is_refused_rather_than_run_from_another(tmp_path):
    with pytest.raises(UnknownHub, match="openmind"):
        runner_in(tmp_path)._spec(order_with(tmp_path, "openmind"), 0)
    assert hub_environment(None, Path("/c")) == {"MODELSCOPE_CACHE": "/c/modelscope"}


def stand_in_engine(folder: Path) -> Path:
    """An engine that prints the hub variables it was given."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "llamafactory-cli"
    script.write_text('#!/bin/sh\necho "hub=[${USE_MODELSCOPE_HUB}] openmind=[${USE_OPENMIND_HUB}]"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


async def run_process(runner: Runner, order) -> list[str]:
    run = await runner.runtime.start(runner._spec(order, 0))
    lines = [text async for _, text in run.lines()]
    assert (await run.wait()).exit_code == 0
    return lines


async def test_the_process_runtime_gives_the_engine_the_stages_hub_never_the_agents(tmp_path, monkeypatch):
    runner = runner_in(tmp_path, ProcessRuntime(stand_in_engine(tmp_path / "bin")))
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")  # the agent's own environment says otherwise
    monkeypatch.setenv("USE_OPENMIND_HUB", "1")
    assert await run_process(runner, order_with(tmp_path, None)) == ["hub=[] openmind=[]"]
    assert await run_process(runner, order_with(tmp_path, "huggingface")) == ["hub=[] openmind=[]"]
    monkeypatch.delenv("USE_MODELSCOPE_HUB")
    assert await run_process(runner, order_with(tmp_path, "modelscope")) == ["hub=[1] openmind=[]"]
    assert os.environ["USE_OPENMIND_HUB"] == "1", "the agent's own environment is left alone"


# --- without the package --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail, package",
    [
        # LLaMA-Factory's mandatory check before a ModelScope model download (measured with the package hidden)
        (
            [
                "importlib.metadata.PackageNotFoundError: No package metadata was found for The 'modelscope>=1.14.0' "
                "distribution was not found and is required by this application. ",
                "To fix: run `pip install modelscope>=1.14.0`.",
            ],
            "modelscope>=1.14.0",
        ),
        # a ModelScope dataset with modelscope but not its `datasets` extra (measured: this engine's state)
        (
            [
                "    import addict",
                "ModuleNotFoundError: No module named 'addict'",
                "",
                "RuntimeError: Failed to import modelscope.msdatasets because of the following error (look up to see "
                "its traceback):",
                "No module named 'addict'",
            ],
            "modelscope[datasets]",
        ),
    ],
)
def test_a_missing_modelscope_is_a_missing_dependency_naming_it(tail, package):
    reason, message = failures.classify(ExitInfo(exit_code=1), tail)
    assert reason == "missing_dependency" and repr(package) in message
