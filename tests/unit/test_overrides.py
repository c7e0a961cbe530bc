"""The override policy: the engine's own keys only, checked at every depth; what reaches past the job is refused
with a 422 naming the dotted key; the memory estimate reads the merged config."""

from pathlib import Path

import msgspec
import pytest

from services.common.errors import ApiError
from services.scheduler import rendering
from services.scheduler.jobs import memory
from services.scheduler.jobs.schemas import DeployRequest, JobRequest, TrainRequest
from services.scheduler.rendering import overrides

pytestmark = pytest.mark.unit

DATA, OUT = Path("/srv/cloud-llm/data"), Path("/srv/cloud-llm/output/job_1")
BASE = rendering.ModelPaths(model_path="/models/base", template="qwen")


def render_train(config_overrides: dict, **fields) -> dict:
    req = TrainRequest(base_model="m", datasets=["d"], config_overrides=config_overrides, **fields)
    return rendering.render_train(
        req, model_path="/models/m", default_template="default", data_dir=DATA, output_dir=OUT
    )


def render_deploy(config_overrides: dict) -> rendering.Rendered:
    req = DeployRequest(model="m", config_overrides=config_overrides)
    return rendering.render_deploy(req, model=BASE, startup_timeout_s=60, idle_timeout_s=60)


def render_eval(config_overrides: dict, evaluation: str = "loss") -> rendering.Rendered:
    body = {"kind": "eval", "model": "m", "evaluation": evaluation, "config_overrides": config_overrides}
    body |= {"task": "tinymc"} if evaluation == "benchmark" else {"datasets": ["d"]}
    req = msgspec.convert(body, JobRequest)
    return rendering.render_eval(req, model=BASE, stage="sft", data_dir=DATA, task_dir=DATA, output_dir=OUT)


def render_export(config_overrides: dict) -> rendering.Rendered:
    req = msgspec.convert({"kind": "export", "model": "m", "config_overrides": config_overrides}, JobRequest)
    adapter = rendering.ModelPaths(model_path="/models/base", adapter_path="/out/job_a")
    return rendering.render_export(req, model=adapter, output_dir=OUT)


def refusal(render, config_overrides: dict) -> ApiError:
    with pytest.raises(ApiError) as refused:
        render(config_overrides)
    assert refused.value.status == 422
    return refused.value


ATTACKS = [
    # other code
    ({"trust_remote_code": True}, "config_overrides.trust_remote_code", "forbidden_override"),
    (
        {"vllm_config": {"trust_remote_code": True}},
        "config_overrides.vllm_config.trust_remote_code",
        "forbidden_override",
    ),
    (
        {"accelerator_config": {"gradient_accumulation_kwargs": {"trust_remote_code": True}}},
        "config_overrides.accelerator_config.gradient_accumulation_kwargs.trust_remote_code",
        "forbidden_override",
    ),
    ({"vllm_config": {"worker_cls": "evil.Worker"}}, "config_overrides.vllm_config.worker_cls", "forbidden_override"),
    ({"fsdp_config": {"xla": True}}, "config_overrides.fsdp_config", "forbidden_override"),
    # other models
    ({"vllm_config": {"model": "org/x"}}, "config_overrides.vllm_config.model", "forbidden_override"),
    ({"vllm_config": '{"model": "org/x"}'}, "config_overrides.vllm_config", "invalid_override"),
    ({"sglang_config": {"model_path": "org/x"}}, "config_overrides.sglang_config.model_path", "forbidden_override"),
    (
        {"vllm_config": {"speculative_config": {}}},
        "config_overrides.vllm_config.speculative_config",
        "forbidden_override",
    ),
    ({"adapter_name_or_path": "x"}, "config_overrides.adapter_name_or_path", "forbidden_override"),
    ({"ref_model": "org/x"}, "config_overrides.ref_model", "forbidden_override"),
    ({"reward_model": "x"}, "config_overrides.reward_model", "forbidden_override"),
    ({"ref_model_adapters": "x"}, "config_overrides.ref_model_adapters", "forbidden_override"),
    ({"reward_model_adapters": "x"}, "config_overrides.reward_model_adapters", "forbidden_override"),
    ({"model_revision": "evil-branch"}, "config_overrides.model_revision", "forbidden_override"),
    ({"generation_config": "org/x"}, "config_overrides.generation_config", "forbidden_override"),
    ({"kt_weight_path": "w"}, "config_overrides.kt_weight_path", "forbidden_override"),
    ({"template": "org/evil"}, "config_overrides.template", "forbidden_override"),
    ({"optim_target_modules": ["q_proj", "org/x"]}, "config_overrides.optim_target_modules[1]", "forbidden_override"),
    ({"stage": "ppo"}, "config_overrides.stage", "forbidden_override"),
    # the platform's keys, at any depth, and data leaving the platform
    ({"dataset_dir": "x"}, "config_overrides.dataset_dir", "forbidden_override"),
    (
        {"lr_scheduler_kwargs": {"output_dir": "x"}},
        "config_overrides.lr_scheduler_kwargs.output_dir",
        "forbidden_override",
    ),
    ({"resume_from_checkpoint": "x"}, "config_overrides.resume_from_checkpoint", "forbidden_override"),
    ({"lora_target": "~/.ssh"}, "config_overrides.lora_target", "forbidden_override"),
    ({"default_system": "see https://evil.example"}, "config_overrides.default_system", "forbidden_override"),
    ({"default_system": "${oc.env:DATABASE_URL}"}, "config_overrides.default_system", "forbidden_override"),
    ({"hub_model_id": "me/leak"}, "config_overrides.hub_model_id", "forbidden_override"),
    ({"push_to_hub": True}, "config_overrides.push_to_hub", "forbidden_override"),
    ({"report_to": "wandb"}, "config_overrides.report_to", "invalid_override"),
    ({"report_to": ["tensorboard", "mlflow"]}, "config_overrides.report_to", "invalid_override"),
    ({"ray_init_kwargs": {"address": "ray://x"}}, "config_overrides.ray_init_kwargs", "forbidden_override"),
    ({"deepspeed": "z9"}, "config_overrides.deepspeed", "forbidden_override"),
    ({"deepspeed": {"zero_optimization": {"stage": 3}}}, "config_overrides.deepspeed", "forbidden_override"),
    # not the engine's, or not where a mapping may go
    ({"no_such_engine_option": 3}, "config_overrides.no_such_engine_option", "unknown_override"),
    ({"lr_scheduler_kwargs": {"anything": 1}}, "config_overrides.lr_scheduler_kwargs.anything", "unknown_override"),
    ({"lora_rank": {"a": {"b": {"c": 1}}}}, "config_overrides.lora_rank", "invalid_override"),
    # malformed values: the engine's type of each key
    ({"cutoff_len": {"a": 1}}, "config_overrides.cutoff_len", "invalid_override"),
    ({"cutoff_len": [1024]}, "config_overrides.cutoff_len", "invalid_override"),
    ({"cutoff_len": True}, "config_overrides.cutoff_len", "invalid_override"),
    ({"cutoff_len": 1.5}, "config_overrides.cutoff_len", "invalid_override"),
    ({"learning_rate": "high"}, "config_overrides.learning_rate", "invalid_override"),
    ({"max_grad_norm": [1.0]}, "config_overrides.max_grad_norm", "invalid_override"),
    ({"flash_attn": "evil"}, "config_overrides.flash_attn", "invalid_override"),
    (
        {"vllm_config": {"gpu_memory_utilization": "all"}},
        "config_overrides.vllm_config.gpu_memory_utilization",
        "invalid_override",
    ),
    (
        {"accelerator_config": {"gradient_accumulation_kwargs": {"num_steps": {"x": 1}}}},
        "config_overrides.accelerator_config.gradient_accumulation_kwargs.num_steps",
        "invalid_override",
    ),
    # numbers keep the form's limits
    ({"per_device_train_batch_size": 10**9}, "config_overrides.per_device_train_batch_size", "invalid_override"),
    ({"cutoff_len": 4}, "config_overrides.cutoff_len", "invalid_override"),
]


@pytest.mark.parametrize("config_overrides, field, code", ATTACKS)
def test_what_reaches_past_the_job_is_refused_with_its_dotted_key(config_overrides, field, code):
    error = refusal(render_train, config_overrides)
    assert (error.field, error.code) == (field, code), error.message


def test_engine_options_merge_last():
    config = render_train(
        {
            "lr_scheduler_type": "cosine_with_min_lr",
            "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
            "max_grad_norm": 1,  # an integer where the engine takes a float
            "deepspeed": "z2",
            "report_to": ["tensorboard"],
            "stage": "sft",  # the form's own
            "lora_alpha": None,
            "accelerator_config": {"gradient_accumulation_kwargs": {"sync_each_batch": True}},
            "per_device_train_batch_size": 64,
        }
    )
    assert config["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1} and config["max_grad_norm"] == 1
    assert config["deepspeed"].endswith("ds_z2_config.json") and config["per_device_train_batch_size"] == 64
    assert config["trust_remote_code"] is False and config["model_name_or_path"] == "/models/m"


def test_each_command_takes_its_own_parsers_keys():
    assert refusal(render_deploy, {"per_device_train_batch_size": 4}).code == "unknown_override"
    assert refusal(lambda o: render_eval(o, "benchmark"), {"learning_rate": 0.1}).code == "unknown_override"
    assert refusal(render_export, {"stage": "sft"}).field == "config_overrides.stage"
    assert refusal(render_eval, {"stage": "rm"}).field == "config_overrides.stage"
    assert render_eval({"stage": "sft", "cutoff_len": 2048}).config["cutoff_len"] == 2048
    served = render_deploy({"infer_backend": "vllm", "vllm_config": {"gpu_memory_utilization": 0.8}}).config
    assert served["vllm_config"] == {"gpu_memory_utilization": 0.8}


def test_a_deployment_cannot_serve_another_model_through_vllm():
    error = refusal(render_deploy, {"infer_backend": "vllm", "vllm_config": {"model": "org/x", "tokenizer": "org/y"}})
    assert error.field == "config_overrides.vllm_config.model" and error.code == "forbidden_override"
    assert (
        refusal(render_deploy, {"sglang_config": {"revision": "evil"}}).field
        == "config_overrides.sglang_config.revision"
    )
    assert refusal(render_deploy, {"max_new_tokens": 10**6}).field == "config_overrides.max_new_tokens"


def test_the_allow_list_is_the_engines():
    train = overrides.engine_fields("train")
    assert overrides.engine_args().versions["llamafactory"] == "0.9.5"
    assert len(train) > 300 and "cutoff_len" in train and "task" not in train
    assert "per_device_train_batch_size" not in overrides.engine_fields("infer")
    # every key that may hold a mapping is an engine key with a nested allow-list; no other takes one
    takes_mapping = {
        k for p in ("train", "infer", "eval") for k, s in overrides.engine_fields(p).items() if "dict" in s.types
    }
    refused = {k for k in takes_mapping if k in overrides.REFUSED_KEYS or k == "deepspeed"}
    assert set(overrides.NESTED) == takes_mapping - refused


def test_the_memory_estimate_reads_the_merged_config():
    def per_gpu_mb(config_overrides: dict, **fields) -> int:
        config = render_train(config_overrides, **fields)
        return memory.estimate_training(config, parameters=7_000_000_000, gpu_count=1).per_gpu_mb

    form = per_gpu_mb({}, finetuning_type="qlora")
    assert (
        form
        == memory.estimate(
            parameters=7_000_000_000,
            finetuning_type="qlora",
            quantization_bit=4,
            batch_size=2,
            cutoff_len=1024,
            gradient_checkpointing=True,
            gpu_count=1,
        ).per_gpu_mb
    )
    no_quantisation = per_gpu_mb({"quantization_bit": None}, finetuning_type="qlora")
    bigger = per_gpu_mb({"per_device_train_batch_size": 64, "cutoff_len": 8192}, finetuning_type="qlora")
    full = per_gpu_mb({"finetuning_type": "full"})
    no_checkpoints = per_gpu_mb({"disable_gradient_checkpointing": True})
    assert form < no_quantisation and form < 24_576 < min(bigger, full) and per_gpu_mb({}) < no_checkpoints


WEIRD_VALUES = [None, True, 0, -1, 10**40, 1e308, "", "x" * 10_000, "org/x", [], [None, {"a": []}], {}, {"model": {}}]


@pytest.mark.parametrize("parser", ["train", "infer", "eval"])
def test_no_value_of_any_engine_key_breaks_the_check(parser):
    """Every key of the engine with values of every shape: accepted or a 422, never another error (a 500)."""
    form = TrainRequest(base_model="m", datasets=["d"])
    nested = [{key: {sub: value}} for key, subs in overrides.NESTED.items() for sub in subs for value in WEIRD_VALUES]
    for attempt in [{key: value} for key in overrides.engine_fields(parser) for value in WEIRD_VALUES] + nested:
        try:
            overrides.check_overrides(attempt, parser=parser, form=form, stage="sft")
        except ApiError as error:
            assert (
                error.status == 422
                and error.field
                and error.field.startswith(f"config_overrides.{next(iter(attempt))}")
            )
