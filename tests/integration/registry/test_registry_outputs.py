"""Job results in, models registered: over real NATS (JetStream) and Postgres, idempotently."""

from datetime import UTC, datetime

import nats
import pytest

from services.common import contracts
from services.registry import service
from tests.helpers import eventually

from .helpers import make_job, make_output, make_preset, make_user, unique, write_adapter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def js(nats_server, client):
    """A publisher on the bus; `client` first, so the registry and its streams are up."""
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def finished(js, job_id: str, state: str = "succeeded") -> None:
    event = contracts.JobFinished(job_id=job_id, agent_id="agent-x", state=state, at=datetime.now(UTC))
    await js.publish(contracts.Subjects.job_status(event.agent_id, job_id), contracts.encode(event))


async def model_of(pool, job_id: str):
    return await pool.fetchrow(
        "SELECT m.*, b.name AS base_name FROM models m JOIN models b ON b.id = m.base_model_id WHERE m.job_id = $1",
        job_id,
    )


def lora_job(base: str, out, datasets=("tiny_sft",)) -> tuple[dict, dict]:
    request = {"base_model": base, "datasets": list(datasets), "finetuning_type": "lora", "stage": "sft"}
    config = {
        "stage": "sft",
        "finetuning_type": "lora",
        "output_dir": str(out),
        "template": "default",
        "model_name_or_path": f"/models/{base}",
    }
    return request, config


async def test_a_succeeded_lora_job_registers_its_adapter_once(client, pool, settings, js, tmp_path):
    owner, _ = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    request, config = lora_job(preset, tmp_path / "adapter")
    write_adapter(tmp_path / "adapter", parameters=64)
    job_id = await make_job(pool, owner, request=request, config=config)
    await finished(js, job_id)
    await finished(js, job_id)  # at-least-once delivery: a second copy changes nothing
    model = await eventually(lambda: model_of(pool, job_id))
    assert model["kind"] == "lora" and model["source"] == "train" and model["owner_id"] == owner
    assert model["base_model_id"] == preset_id and model["datasets"] == ["tiny_sft"]
    assert model["name"] == f"{preset}-sft-{job_id[-8:]}" and model["path"] == str(tmp_path / "adapter")
    assert model["size_bytes"] > 256 and model["details"]["adapter_parameter_count"] == 64
    assert model["parameter_count"] == 1_000_000, "an adapter is as big as its base when it runs"
    assert model["visibility"] == "private"
    await finished(js, job_id)
    assert await service.register_job_output(pool, job_id) == "known"
    assert await pool.fetchval("SELECT count(*) FROM models WHERE job_id = $1", job_id) == 1


async def test_a_result_is_registered_once_the_scheduler_has_recorded_it(client, pool, settings, js, tmp_path):
    owner, _ = await make_user(pool, settings)
    _, preset = await make_preset(pool)
    job_id = await make_job(
        pool, owner, state="running", request=lora_job(preset, tmp_path)[0], config=lora_job(preset, tmp_path)[1]
    )
    assert await service.register_job_output(pool, job_id) == "not_ready"
    await finished(js, job_id)
    await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", job_id)  # the scheduler, later
    assert await eventually(lambda: model_of(pool, job_id))


@pytest.mark.parametrize("state", ["failed", "cancelled"])
async def test_jobs_that_did_not_succeed_register_nothing(client, pool, settings, js, tmp_path, state):
    owner, _ = await make_user(pool, settings)
    _, preset = await make_preset(pool)
    request, config = lora_job(preset, tmp_path)
    job_id = await make_job(pool, owner, state=state, request=request, config=config)
    await finished(js, job_id, state)
    assert await service.register_job_output(pool, job_id) == "no_output"
    assert await model_of(pool, job_id) is None


async def test_a_full_fine_tune_registers_a_full_model(client, pool, settings, js, tmp_path):
    owner, _ = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    request, config = lora_job(preset, tmp_path, datasets=("a", "b"))
    job_id = await make_job(
        pool, owner, request={**request, "finetuning_type": "full"}, config={**config, "finetuning_type": "full"}
    )
    await finished(js, job_id)
    model = await eventually(lambda: model_of(pool, job_id))
    assert model["kind"] == "full" and model["datasets"] == ["a", "b"] and model["base_model_id"] == preset_id


async def test_an_export_registers_its_output_linked_to_what_it_exported(client, pool, settings, js, tmp_path):
    owner, _ = await make_user(pool, settings)
    preset_id, _ = await make_preset(pool)
    adapter_id, adapter = await make_output(pool, owner, preset_id, kind="lora", datasets=("d1",))
    adapter_path = await pool.fetchval("SELECT path FROM models WHERE id = $1", adapter_id)
    config = {
        "model_name_or_path": "/models/x",
        "adapter_name_or_path": adapter_path,
        "output_dir": str(tmp_path),
        "export_dir": str(tmp_path / "export"),
        "template": "default",
    }
    job_id = await make_job(pool, owner, kind="export", request={"model": adapter}, config=config)
    await finished(js, job_id)
    merged = await eventually(lambda: model_of(pool, job_id))
    assert merged["kind"] == "full" and merged["source"] == "export" and merged["base_model_id"] == adapter_id
    assert merged["datasets"] == ["d1"], "an export carries the datasets of what it exported"
    assert merged["name"] == f"{adapter}-export-{job_id[-8:]}" and merged["path"] == str(tmp_path / "export")

    quantised_job = await make_job(
        pool,
        owner,
        kind="export",
        request={"model": merged["name"]},
        config={"model_name_or_path": merged["path"], "output_dir": str(tmp_path / "q"), "export_quantization_bit": 4},
    )
    await finished(js, quantised_job)
    quantised = await eventually(lambda: model_of(pool, quantised_job))
    assert quantised["kind"] == "quantized" and quantised["base_model_id"] == merged["id"]


async def test_a_renamed_parent_is_still_found_by_its_location(client, pool, settings, tmp_path):
    owner, _ = await make_user(pool, settings)
    preset_id, _ = await make_preset(pool)
    full_id, full_name = await make_output(pool, owner, preset_id)
    full_path = await pool.fetchval("SELECT path FROM models WHERE id = $1", full_id)
    job_id = await make_job(
        pool,
        owner,
        request={"base_model": full_name, "datasets": ["d"]},
        config={
            "stage": "sft",
            "finetuning_type": "lora",
            "output_dir": str(tmp_path),
            "model_name_or_path": full_path,
        },
    )
    await pool.execute("UPDATE models SET name = $2 WHERE id = $1", full_id, unique("renamed"))
    assert await service.register_job_output(pool, job_id) == "registered"
    assert (await model_of(pool, job_id))["base_model_id"] == full_id


async def test_a_taken_default_name_falls_back_to_the_whole_job_id(client, pool, settings, tmp_path):
    owner, _ = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    request, config = lora_job(preset, tmp_path)
    job_id = await make_job(pool, owner, request=request, config=config)
    await make_output(pool, owner, preset_id, name=f"{preset}-sft-{job_id[-8:]}")
    assert await service.register_job_output(pool, job_id) == "registered"
    assert (await model_of(pool, job_id))["name"] == f"{preset}-sft-{job_id.split('_')[1]}"


async def test_missed_results_are_caught_up_and_deleted_models_stay_deleted(client, pool, settings, tmp_path):
    owner, headers = await make_user(pool, settings)
    _, preset = await make_preset(pool)
    request, config = lora_job(preset, tmp_path)
    job_id = await make_job(pool, owner, request=request, config=config)  # its result never came
    assert await service.register_missed_outputs(pool) >= 1
    model = await model_of(pool, job_id)
    assert model is not None
    assert (await client.delete(f"/api/models/{model['id']}", headers=headers)).status_code == 204
    await service.register_missed_outputs(pool)
    assert await service.register_job_output(pool, job_id) == "known"
    assert await pool.fetchval("SELECT deleted_at FROM models WHERE job_id = $1", job_id) is not None


async def test_a_result_whose_parent_is_gone_is_skipped(client, pool, settings, tmp_path):
    owner, _ = await make_user(pool, settings)
    job_id = await make_job(
        pool,
        owner,
        request={"base_model": "never-existed"},
        config={"output_dir": str(tmp_path), "model_name_or_path": "/nowhere"},
    )
    assert await service.register_job_output(pool, job_id) == "no_parent"
    assert await service.register_job_output(pool, "job_unknown") == "no_job"
