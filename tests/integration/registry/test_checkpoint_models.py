"""A kept checkpoint of one's own training job registered as a model (POST /api/models/checkpoints, issue 18): the job
output's kind on the job's parent, once per (job, step), refused for other users' jobs, steps not kept and jobs that
train nothing; then deployable as any model of the caller's (the registry's answer over the real NATS), and found by
job and step in the caller's list (how the gateway resolves `ft:…:ckpt-step-<n>`). Real Postgres and NATS."""

from datetime import UTC, datetime

import pytest

from services.common import readmodels
from services.common.contracts import ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.registry import service

from .helpers import make_job, make_preset, make_user, unique, write_adapter

pytestmark = pytest.mark.integration

URL = "/api/models/checkpoints"


def lora_job(base: str, out) -> tuple[dict, dict]:
    request = {"base_model": base, "datasets": ["tiny_sft"], "finetuning_type": "lora", "stage": "sft"}
    config = {"stage": "sft", "finetuning_type": "lora", "output_dir": str(out)}
    config["model_name_or_path"] = f"/models/{base}"
    return request, config


async def saved(pool, job_id: str, *steps: int) -> None:
    """The checkpoints its agent told the scheduler of (JobCheckpointSaved)."""
    for step in steps:
        await pool.execute(
            "INSERT INTO job_checkpoints (job_id, step, saved_at, attempt) VALUES ($1, $2, $3, 1)",
            job_id,
            step,
            datetime.now(UTC),
        )


@pytest.fixture
async def training(pool, settings, tmp_path):
    """Alice's running LoRA job on a preset, checkpoints 3 and 6 kept (6 on disk): (alice, her headers, job, preset
    id, preset name, output folder)."""
    alice, headers = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    out = tmp_path / "out"
    write_adapter(out / "checkpoint-6", parameters=32)
    request, config = lora_job(preset, out)
    job_id = await make_job(pool, alice, state="running", request=request, config=config)
    await saved(pool, job_id, 3, 6)
    return alice, headers, job_id, preset_id, preset, out


async def test_a_kept_checkpoint_is_registered_once_as_the_jobs_kind_of_model(client, pool, training, bus):
    alice, headers, job_id, preset_id, preset, out = training
    r = await client.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)
    assert r.status_code == 201, r.text
    model = r.json()
    assert (model["kind"], model["source"], model["owner_id"], model["job_id"]) == ("lora", "train", alice, job_id)
    assert (model["base_model_id"], model["base_model"]) == (preset_id, preset)
    assert model["path"] == str(out / "checkpoint-6") and model["name"] == f"{preset}-sft-step6-{job_id[-8:]}"
    assert model["details"]["checkpoint_step"] == 6 and model["details"]["adapter_parameter_count"] == 32
    assert model["size_bytes"] > 128 and "deploy" in model["usable_for"]

    again = await client.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == model["id"], "the same model, not a second one"
    named = await client.post(URL, json={"job_id": job_id, "step": 3, "name": "my-early-bot"}, headers=headers)
    assert named.status_code == 201 and named.json()["name"] == "my-early-bot"

    # The gateway finds it by job and step in the caller's list; deploying it loads the checkpoint on its base.
    r = await client.get("/api/models", params={"job": job_id, "checkpoint_step": 6}, headers=headers)
    assert [m["id"] for m in r.json()["items"]] == [model["id"]]
    r = await client.get("/api/models", params={"job": job_id, "checkpoint": "true"}, headers=headers)
    assert {m["details"]["checkpoint_step"] for m in r.json()["items"]} == {3, 6}
    r = await client.get("/api/models", params={"job": job_id, "checkpoint": "false"}, headers=headers)
    assert r.json()["items"] == []
    asked = ModelUseAsked(user_id=alice, name=model["name"], use="deploy")
    answer = await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    assert (answer.base, answer.model_path) == (preset, f"/models/{preset}")
    assert answer.adapter_path == str(out / "checkpoint-6")

    # The job's own output is still its model once it succeeds, never one of its checkpoints.
    write_adapter(out)
    await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", job_id)
    assert await service.register_job_output(pool, job_id) == "registered"
    output = await pool.fetchval(f"SELECT ({readmodels.model_of_job('$1::text')})", job_id)
    assert output == f"{preset}-sft-{job_id[-8:]}"
    assert await pool.fetchval("SELECT count(*) FROM models WHERE job_id = $1", job_id) == 3


async def test_a_checkpoint_its_trainer_deleted_is_no_longer_usable(client, pool, training, bus):
    """The trainer rotates checkpoints (save_total_limit): once the scheduler has it removed (JobCheckpointRemoved),
    a model registered from it is refused for any use, saying which checkpoints the job keeps."""
    alice, headers, job_id, *_ = training
    model = (await client.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)).json()
    asked = ModelUseAsked(user_id=alice, name=model["name"], use="deploy")
    assert (await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")).adapter_path
    await pool.execute("DELETE FROM job_checkpoints WHERE job_id = $1 AND step = 6", job_id)
    await saved(pool, job_id, 9)
    with pytest.raises(ApiError) as refused:
        await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    assert (refused.value.status, refused.value.code) == (409, "checkpoint_removed")
    assert "steps: 3, 9" in refused.value.message and "POST /api/models/checkpoints" in refused.value.message


async def test_a_deleted_checkpoint_model_is_registered_again_on_request(client, pool, training):
    _, headers, job_id, *_ = training
    first = (await client.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)).json()
    assert (await client.delete(f"/api/models/{first['id']}", headers=headers)).status_code == 204
    r = await client.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)
    assert r.status_code == 201 and r.json()["id"] != first["id"] and r.json()["name"] == first["name"]


async def test_refusals_name_what_to_fix_and_leak_no_one_elses_job(client, pool, settings, training):
    _, headers, job_id, _, preset, out = training
    _, bob = await make_user(pool, settings)
    admin = (await make_user(pool, settings, role="admin"))[1]
    for stranger in (bob, admin):
        theirs = await client.post(URL, json={"job_id": job_id, "step": 6}, headers=stranger)
        missing = await client.post(URL, json={"job_id": "job_nope", "step": 6}, headers=stranger)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json(), "another user's job reads as no job"

    r = await client.post(URL, json={"job_id": job_id, "step": 5}, headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "checkpoint_not_found"
    assert "steps 3, 6" in r.json()["error"]["message"] and r.json()["error"]["field"] == "step"
    await pool.execute("DELETE FROM job_checkpoints WHERE job_id = $1 AND step = 3", job_id)  # the trainer removed it
    r = await client.post(URL, json={"job_id": job_id, "step": 3}, headers=headers)
    assert r.status_code == 404 and "it keeps step 6" in r.json()["error"]["message"]

    for body in ({"job_id": job_id, "step": -1}, {"job_id": job_id, "step": 6, "name": "../x"}, {"job_id": job_id}):
        assert (await client.post(URL, json=body, headers=headers)).status_code == 422
    r = await client.post(URL, json={"job_id": job_id, "step": 6, "name": preset}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken"

    alice = await pool.fetchval("SELECT owner_id FROM jobs WHERE id = $1", job_id)
    request = {"model": preset, "datasets": ["tiny_sft"], "template": "default"}
    evaluation = await make_job(pool, alice, kind="eval", request=request, config={"output_dir": str(out)})
    await saved(pool, evaluation, 6)
    r = await client.post(URL, json={"job_id": evaluation, "step": 6}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_a_training_job"


async def test_a_checkpoint_whose_base_was_deleted_has_no_parent(client, pool, training):
    _, headers, job_id, preset_id, *_ = training
    await pool.execute("UPDATE models SET deleted_at = now() WHERE id = $1", preset_id)
    r = await client.post(URL, json={"job_id": job_id, "step": 6, "name": unique("ckpt")}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "base_model_missing"
