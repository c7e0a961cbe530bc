"""A checkpoint model in `objects` storage mode (issue 18): its files are the checkpoint in llmct-checkpoints (the agent
uploads each as it is saved), nowhere on the control plane's disk. Registered once it is whole there, refused while it
is not; deploying it brings those files, placed where its job saved them. The registry in-process in `objects` mode,
real NATS (JetStream object store) and Postgres."""

import dataclasses
from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient

from services.common.contracts import Buckets, ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.security import new_id
from services.registry.app import create_app

from .helpers import make_job, make_preset, make_user

pytestmark = pytest.mark.integration

URL = "/api/models/checkpoints"


@pytest.fixture
async def objects_registry(settings, js):
    """The registry in `objects` mode (`js`: every bucket there), the only one answering on the bus meanwhile."""
    async with AsyncTestClient(app=create_app(dataclasses.replace(settings, storage_mode="objects"))) as client:
        yield client


async def upload(js, job_id: str, step: int, whole: bool) -> None:
    """The agent's upload of a checkpoint: its weights, then (once whole) its trainer state last."""
    bucket = await js.object_store(Buckets.CHECKPOINTS)
    await bucket.put(Buckets.checkpoint_object(job_id, f"checkpoint-{step}", "adapter_model.safetensors"), b"w" * 64)
    if whole:
        await bucket.put(Buckets.checkpoint_object(job_id, f"checkpoint-{step}", "trainer_state.json"), b"{}")


async def test_a_checkpoint_in_the_store_is_registered_and_deploys_with_its_files(
    objects_registry, pool, settings, js, bus
):
    alice, headers = await make_user(pool, settings)
    _, preset = await make_preset(pool)
    output = settings.storage.output
    request = {"base_model": preset, "datasets": ["tiny_sft"], "finetuning_type": "lora", "stage": "sft"}
    job_id = new_id("job")
    config = {"stage": "sft", "finetuning_type": "lora", "output_dir": str(output / job_id)}
    await make_job(pool, alice, state="running", request=request, config=config, job_id=job_id)
    for step in (3, 6):
        await pool.execute(
            "INSERT INTO job_checkpoints (job_id, step, saved_at, attempt) VALUES ($1, $2, $3, 1)",
            job_id,
            step,
            datetime.now(UTC),
        )
    await upload(js, job_id, 3, whole=False)
    await upload(js, job_id, 6, whole=True)

    r = await objects_registry.post(URL, json={"job_id": job_id, "step": 3}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "checkpoint_not_stored"
    r = await objects_registry.post(URL, json={"job_id": job_id, "step": 6}, headers=headers)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["path"] == str(output / job_id / "checkpoint-6") and model["size_bytes"] == 66

    asked = ModelUseAsked(user_id=alice, name=model["name"], use="deploy")
    answer = await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    relative = (output / job_id / "checkpoint-6").relative_to(settings.storage.base).as_posix()
    assert answer.adapter_path == model["path"]
    assert sorted((i.bucket, i.path) for i in answer.inputs) == [
        (Buckets.CHECKPOINTS, f"{relative}/adapter_model.safetensors"),
        (Buckets.CHECKPOINTS, f"{relative}/trainer_state.json"),
    ]

    # Once the trainer removed it from the store, a job that would load it is refused, not sent with nothing.
    bucket = await js.object_store(Buckets.CHECKPOINTS)
    await bucket.delete(Buckets.checkpoint_object(job_id, "checkpoint-6", "trainer_state.json"))
    with pytest.raises(ApiError, match="no longer in the store") as refused:
        await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    assert (refused.value.status, refused.value.code) == (409, "checkpoint_not_stored")
