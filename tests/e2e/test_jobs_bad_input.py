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
            {"config_overrides": {"generation": {"path": "/root/.ssh"}}},
            "config_overrides.generation.path",
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
