"""Every refusal at submit is a 4xx naming the field and the reason."""

import asyncpg
import pytest

from services.registry.presets import register_preset

from .helpers import TRAIN, gpu_agent, login, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
async def user(gw, stack, tiny_model):
    return await login(gw, stack.invite_code, unique("bad-input"))


@pytest.mark.parametrize(
    "change, field, code",
    [
        ({"base_model": None}, "base_model", "invalid_field"),
        ({"base_model": "no-such-model"}, "base_model", "unknown_model"),
        ({"datasets": ["no_such_data"]}, "datasets[0]", "unknown_dataset"),
        ({"datasets": []}, "datasets", "invalid_field"),
        ({"kind": "teleport"}, "kind", "invalid_field"),
        ({"per_device_train_batch_size": 65}, "per_device_train_batch_size", "invalid_field"),
        ({"learning_rate": -1}, "learning_rate", "invalid_field"),
        ({"stage": "rlhf"}, "stage", "invalid_field"),
        ({"eval_steps": 10}, "val_size", "invalid_field"),
        ({"unknown_knob": 1}, "unknown_knob", "invalid_field"),
        ({"config_overrides": {"output_dir": "/tmp/elsewhere"}}, "config_overrides.output_dir", "forbidden_override"),
        (
            {"config_overrides": {"model_name_or_path": "evil/model"}},
            "config_overrides.model_name_or_path",
            "forbidden_override",
        ),
        ({"config_overrides": {"trust_remote_code": True}}, "config_overrides.trust_remote_code", "forbidden_override"),
        ({"config_overrides": {"deepspeed": "/etc/passwd"}}, "config_overrides.deepspeed", "forbidden_override"),
        ({"config_overrides": {"lora_target": "../../x"}}, "config_overrides.lora_target", "forbidden_override"),
        (
            {"config_overrides": {"lr_scheduler_kwargs": {"decay_type": "/root/.ssh"}}},
            "config_overrides.lr_scheduler_kwargs.decay_type",
            "forbidden_override",
        ),
        ({"config_overrides": {"bf16": True}}, "config_overrides", "invalid_override"),
        ({"gpu_count": 1}, "gpu_count", "no_capacity"),
        ({"finetuning_type": "qlora"}, "finetuning_type", "invalid_field"),
        ({"warmup_ratio": 0.1, "warmup_steps": 5}, "warmup_steps", "invalid_field"),
    ],
)
async def test_refused_with_the_field_named(gw, user, change, field, code):
    body = {k: v for k, v in {**TRAIN, **change}.items() if v is not None}
    r = await gw.post("/api/jobs", json=body, headers=user)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and error["code"] == code, error


# What a user would try to make a job load other code or another model, smuggle a platform key one level down, or
# break the scheduler with a value of the wrong shape: each a 422 naming the dotted key, never a 500.
SMUGGLED = [
    ({"vllm_config": {"trust_remote_code": True}}, "vllm_config.trust_remote_code", "forbidden_override"),
    (
        {"accelerator_config": {"gradient_accumulation_kwargs": {"trust_remote_code": True}}},
        "accelerator_config.gradient_accumulation_kwargs.trust_remote_code",
        "forbidden_override",
    ),
    ({"vllm_config": {"model": "evil/model"}}, "vllm_config.model", "forbidden_override"),
    ({"vllm_config": '{"model": "evil/model"}'}, "vllm_config", "invalid_override"),
    ({"sglang_config": {"tokenizer": "evil/tok"}}, "sglang_config.tokenizer", "forbidden_override"),
    ({"lr_scheduler_kwargs": {"dataset_dir": "/srv/other"}}, "lr_scheduler_kwargs.dataset_dir", "forbidden_override"),
    ({"adapter_name_or_path": "job_someone_else"}, "adapter_name_or_path", "forbidden_override"),
    ({"ref_model": "evil/model"}, "ref_model", "forbidden_override"),
    ({"reward_model_adapters": "job_x"}, "reward_model_adapters", "forbidden_override"),
    ({"model_revision": "backdoor"}, "model_revision", "forbidden_override"),
    ({"template": "evil/model"}, "template", "forbidden_override"),
    ({"stage": "ppo"}, "stage", "forbidden_override"),
    ({"report_to": "wandb"}, "report_to", "invalid_override"),
    ({"no_such_engine_option": 3}, "no_such_engine_option", "unknown_override"),
    ({"cutoff_len": {"$gt": 1}}, "cutoff_len", "invalid_override"),
    ({"learning_rate": [0.1]}, "learning_rate", "invalid_override"),
    ({"per_device_train_batch_size": 10**12}, "per_device_train_batch_size", "invalid_override"),
    ({"deepspeed": {"zero_optimization": {"stage": 3}}}, "deepspeed", "forbidden_override"),
]


@pytest.mark.parametrize("overrides, key, code", SMUGGLED)
async def test_overrides_cannot_reach_past_the_job(gw, user, overrides, key, code):
    r = await gw.post("/api/jobs", json={**TRAIN, "config_overrides": overrides}, headers=user)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["field"], error["code"]) == (f"config_overrides.{key}", code), error


async def test_malformed_json_and_no_caller(gw, user):
    r = await gw.post("/api/jobs", content=b"{nope", headers={**user, "content-type": "application/json"})
    assert r.status_code == 400
    assert (await gw.post("/api/jobs", json=TRAIN)).status_code == 401
    assert (await gw.get("/api/jobs")).status_code == 401
    assert (await gw.get("/api/jobs/job_missing", headers=user)).status_code == 404


async def test_pretraining_forces_full_from_scratch(gw, user):
    r = await gw.post("/api/jobs", json={**TRAIN, "stage": "pt", "datasets": ["tiny_pt"], "max_steps": 1}, headers=user)
    assert r.status_code == 201, r.text
    config = r.json()["config"]
    assert config["finetuning_type"] == "full" and config["train_from_scratch"] is True
    assert "lora_rank" not in config


async def test_allowed_overrides_are_merged_last(gw, user):
    r = await gw.post(
        "/api/jobs",
        json={
            **TRAIN,
            "max_steps": 1,
            "config_overrides": {"lr_scheduler_type": "linear", "deepspeed": "z2", "max_grad_norm": 0.5},
        },
        headers=user,
    )
    assert r.status_code == 201, r.text
    config = r.json()["config"]
    assert config["lr_scheduler_type"] == "linear" and config["max_grad_norm"] == 0.5
    assert config["deepspeed"].endswith("ds_z2_config.json")
    await gw.post(f"/api/jobs/{r.json()['id']}/cancel", headers=user)


async def test_memory_check_against_the_fleet(gw, user, stack, postgres_server):
    """With a 24 GB GPU agent registered, a 7B full fine-tune is refused with advice; QLoRA fits."""
    name = unique("big-7b")
    conn = await asyncpg.connect(postgres_server.url)
    await register_preset(conn, name=name, path=f"/models/{name}", parameter_count=7_000_000_000)
    await conn.close()
    async with gpu_agent(gw, stack, "a10-box", memory_mb=24_576):
        big = {**TRAIN, "base_model": name, "gpu_count": 1, "finetuning_type": "full", "cutoff_len": 2048}
        r = await gw.post("/api/jobs", json=big, headers=user)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_gpu_memory" and "qlora" in error["message"]
        r = await gw.post("/api/jobs", json={**big, "finetuning_type": "qlora", "cutoff_len": 512}, headers=user)
        assert r.status_code == 201, r.text
        assert r.json()["estimate"]["per_gpu_mb"] < 24_576
        await gw.post(f"/api/jobs/{r.json()['id']}/cancel", headers=user)


async def test_memory_check_reads_the_overrides(gw, user, stack, postgres_server):
    """The estimate is the merged config's: overrides that undo QLoRA and raise the batch and cutoff are refused
    (naming the override); an override that picks a lighter method is placed as what it runs."""
    name = unique("big-7b")
    conn = await asyncpg.connect(postgres_server.url)
    await register_preset(conn, name=name, path=f"/models/{name}", parameter_count=7_000_000_000)
    await conn.close()
    async with gpu_agent(gw, stack, "a10-box", memory_mb=24_576):
        small = {**TRAIN, "base_model": name, "gpu_count": 1, "finetuning_type": "qlora", "cutoff_len": 512}
        grown = {"quantization_bit": None, "per_device_train_batch_size": 64, "cutoff_len": 8192}
        r = await gw.post("/api/jobs", json={**small, "config_overrides": grown}, headers=user)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_gpu_memory", error
        assert error["field"] == "config_overrides.per_device_train_batch_size", error
        full = {**small, "finetuning_type": "full"}
        assert (await gw.post("/api/jobs?dry_run=true", json=full, headers=user)).status_code == 422
        lighter = {**full, "config_overrides": {"finetuning_type": "lora", "quantization_bit": 4}}
        r = await gw.post("/api/jobs?dry_run=true", json=lighter, headers=user)
        assert r.status_code == 200, r.text
        assert r.json()["estimate"]["method"] == "qlora4" and r.json()["estimate"]["per_gpu_mb"] < 24_576
