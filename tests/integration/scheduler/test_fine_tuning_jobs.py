"""OpenAI's fine-tuning jobs on the scheduler (services/scheduler/openai): the real scheduler in-process, real NATS
and Postgres, the registry and datasets services answering what a caller may use. A fine-tuning job is one of our
training jobs (created through POST /api/jobs' own path), paused and resumed from the checkpoints in its output
folder, its events read from its stored history and progress; errors come in OpenAI's shape."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest

from services.common import contracts
from services.common.contracts import Buckets, Subjects
from services.common.security import new_id
from services.registry.presets import register_preset
from services.scheduler.jobs import store as jobs_store
from services.scheduler.jobs.service import PAUSE_GRACE_S
from services.scheduler.openai import history
from tests.helpers import eventually

from .helpers import agent_row, job_on, move

pytestmark = pytest.mark.integration

JOBS = "/v1/fine_tuning/jobs"


def file_id() -> str:
    return "file-" + secrets.token_hex(12)


async def private_file(pool, owner_id: str, fmt: str = "alpaca") -> str:
    """A dataset of `owner_id` named by a file id, as /v1/files stores one."""
    name = file_id()
    columns = {"prompt": "instruction"} if fmt == "alpaca" else {"messages": "conversations"}
    await pool.execute(
        "INSERT INTO datasets (id, name, info_key, visibility, owner_id, source, format, columns, file_name, info) "
        "VALUES ($1, $2, $3, 'private', $4, 'upload', $5, $6, $7, $8)",
        new_id("ds"),
        name,
        f"{name}-{owner_id}",
        owner_id,
        fmt,
        columns,
        f"{name}.json",
        {"file_name": f"{name}.json", "columns": columns},
    )
    return name


@pytest.fixture(scope="module")
async def world(scheduler, people, pool):
    model = f"ft-base-{new_id('x')[-8:]}"
    await register_preset(pool, name=model, path="/srv/models/ft-base", parameter_count=1_000_000)
    owner_id, other_id = people["fleet-owner"][0], people["fleet-other"][0]
    # A registered agent with a GPU and no process (never heard from: nothing is placed on it), so jobs here are
    # accepted whatever agents earlier modules of the session left registered, and stay queued.
    gpu_agent = await agent_row(pool, gpus=1)
    yield {
        "model": model,
        "train": await private_file(pool, owner_id),
        "valid": await private_file(pool, owner_id),
        "others": await private_file(pool, other_id),
        "username": await pool.fetchval("SELECT username FROM users WHERE id = $1", owner_id),
    }
    await pool.execute("DELETE FROM agents WHERE id = $1", gpu_agent)


async def create(scheduler, headers, world, **fields) -> dict:
    body = {"model": world["model"], "training_file": world["train"], **fields}
    r = await scheduler.post(JOBS, json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def openai_error(r, status: int, param: str | None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    assert error["message"]
    return error


async def test_a_fine_tuning_job_is_one_of_our_training_jobs(scheduler, people, world):
    owner = people["fleet-owner"][1]
    job = await create(
        scheduler,
        owner,
        world,
        validation_file=world["valid"],
        suffix="mine",
        seed=42,
        metadata={"team": "blue"},
        integrations=[{"type": "wandb", "wandb": {"project": "p", "mode": "offline"}}],
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 16}}},
    )
    assert job["id"].startswith("ftjob-") and job["object"] == "fine_tuning.job" and job["status"] == "queued"
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 16, "learning_rate_multiplier": 1.0}
    assert job["method"]["type"] == "supervised" and job["seed"] == 42 and job["user_provided_suffix"] == "mine"
    assert job["fine_tuned_model"] is None and job["error"] is None and job["result_files"] == []
    assert job["organization_id"] == people["fleet-owner"][0] and job["metadata"] == {"team": "blue"}
    assert job["integrations"] == [{"type": "wandb", "wandb": {"project": "p", "mode": "offline"}}]
    assert job["llmct"]["model_name"] is None

    ours = (await scheduler.get(f"/api/jobs/{job['llmct']['job_id']}", headers=owner)).json()
    # Queued on our side too; an agent that an earlier module of the session left live may already have it.
    assert ours["openai_id"] == job["id"] and ours["kind"] == "train" and ours["state"] in {"pending", "dispatched"}
    config = ours["config"]
    assert (config["stage"], config["finetuning_type"], config["num_train_epochs"]) == ("sft", "lora", 2.0)
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] == 16
    assert config["dataset"].startswith(world["train"]) and config["eval_dataset"].startswith(world["valid"])
    assert config["seed"] == 42 and config["save_strategy"] == "epoch"
    # Its wandb integration is the job's W&B tracking (offline: kept in its outputs, no link).
    assert config["report_to"] == ["wandb"] and ours["tracking"][0]["kind"] == "wandb"
    assert ours["tracking"][0]["mode"] == "offline" and ours["tracking"][0]["url"] is None
    listed = (await scheduler.get("/api/jobs", headers=owner)).json()["items"]
    assert next(j for j in listed if j["id"] == ours["id"])["openai_id"] == job["id"]

    r = await scheduler.get(f"{JOBS}/{job['id']}", headers=owner)
    assert r.status_code == 200 and r.json()["id"] == job["id"]


async def test_listing_pages_newest_first_and_filters_on_metadata(scheduler, people, world):
    owner = people["fleet-owner"][1]
    tag = new_id("t")
    made = [(await create(scheduler, owner, world, metadata={"run": tag}))["id"] for _ in range(3)]
    r = await scheduler.get(JOBS, params={"limit": 2, "metadata[run]": tag}, headers=owner)
    page = r.json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [j["id"] for j in page["data"]] == made[::-1][:2]
    rest = (
        await scheduler.get(JOBS, params={"after": made[1], "limit": 2, "metadata[run]": tag}, headers=owner)
    ).json()
    assert [j["id"] for j in rest["data"]] == [made[0]] and rest["has_more"] is False
    others = (await scheduler.get(JOBS, params={"metadata[run]": tag}, headers=people["fleet-other"][1])).json()
    assert others["data"] == []


async def test_refusals_come_in_openais_shape_naming_openais_fields(scheduler, people, world):
    owner = people["fleet-owner"][1]
    body = {"model": world["model"], "training_file": world["others"]}
    error = openai_error(await scheduler.post(JOBS, json=body, headers=owner), 404, "training_file")
    assert world["others"] in error["message"]
    body = {"model": world["model"], "training_file": world["train"], "validation_file": world["others"]}
    openai_error(await scheduler.post(JOBS, json=body, headers=owner), 404, "validation_file")
    body = {"model": "no-such-model", "training_file": world["train"]}
    assert openai_error(await scheduler.post(JOBS, json=body, headers=owner), 400, "model")["type"] == (
        "invalid_request_error"
    )
    body = {"model": world["model"], "training_file": world["train"], "suffix": "NOT OK"}
    openai_error(await scheduler.post(JOBS, json=body, headers=owner), 400, "suffix")
    hp = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 99}}}
    body = {"model": world["model"], "training_file": world["train"], "method": hp}
    error = openai_error(
        await scheduler.post(JOBS, json=body, headers=owner), 400, "method.supervised.hyperparameters.n_epochs"
    )
    assert error["type"] == "invalid_request_error"
    assert (await scheduler.post(JOBS, json={"model": world["model"]}, headers={})).status_code == 401
    count = await scheduler.get(JOBS, headers=owner)
    assert all(j["training_file"] != world["others"] for j in count.json()["data"])


async def test_another_users_job_is_not_found_everywhere(scheduler, people, world):
    job = await create(scheduler, people["fleet-owner"][1], world)
    other = people["fleet-other"][1]
    for method, path in (
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/checkpoints"),
        ("POST", "/cancel"),
        ("POST", "/pause"),
        ("POST", "/resume"),
    ):
        r = await scheduler.request(method, f"{JOBS}/{job['id']}{path}", headers=other)
        assert openai_error(r, 404, "fine_tuning_job_id")["code"] == "fine_tuning_job_not_found", path
    mine = await scheduler.get(f"{JOBS}/{job['id']}", headers=people["fleet-owner"][1])
    assert mine.json()["status"] == "queued"


async def test_cancel_a_queued_job(scheduler, people, world):
    owner = people["fleet-owner"][1]
    job = await create(scheduler, owner, world)
    r = await scheduler.post(f"{JOBS}/{job['id']}/cancel", headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    openai_error(await scheduler.post(f"{JOBS}/{job['id']}/resume", headers=owner), 409, None)
    openai_error(await scheduler.post(f"{JOBS}/{job['id']}/pause", headers=owner), 409, None)


async def progress(pool, job_id: str, step: int, loss: float, eval_loss: float | None = None) -> None:
    point = {"step": step, "total_steps": 6, "loss": loss, "eval_loss": eval_loss, "learning_rate": 1e-4}
    async with pool.acquire() as conn:
        await jobs_store.insert_progress(conn, job_id, {**point, "epoch": step / 2})


async def test_pause_keeps_checkpoints_and_resume_continues_from_the_last(scheduler, people, world, pool, settings):
    owner = people["fleet-owner"][1]
    job = await create(scheduler, owner, world, suffix="p")
    job_id = job["llmct"]["job_id"]
    await move(pool, job_id, "ft-ghost-agent", 1, "running")
    for step in range(1, 5):
        await progress(pool, job_id, step, loss=2.0 - step / 10, eval_loss=1.5 if step == 4 else None)
    output = Path(settings.storage.output) / job_id
    for step in (2, 4, 6):
        (output / f"checkpoint-{step}").mkdir(parents=True)
        if step != 6:  # checkpoint-6 is still being written: no trainer_state.json yet
            (output / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")

    r = await scheduler.post(f"{JOBS}/{job['id']}/pause", headers=owner)
    assert r.status_code == 200, r.text

    async def paused():
        found = (await scheduler.get(f"{JOBS}/{job['id']}", headers=owner)).json()
        return found if found["status"] == "paused" else None

    # Its agent never answers here: the scheduler's sweep ends the stop (cancel grace, or its agent gone).
    await eventually(paused, timeout=30)

    r = await scheduler.get(f"{JOBS}/{job['id']}/checkpoints", headers=owner)
    page = r.json()
    assert [c["step_number"] for c in page["data"]] == [4, 2] and page["has_more"] is False
    hexpart = job["id"].removeprefix("ftjob-")
    newest = page["data"][0]
    assert (
        newest["id"] == f"ftckpt-4-{hexpart}" == page["first_id"] and newest["object"] == "fine_tuning.job.checkpoint"
    )
    assert newest["fine_tuned_model_checkpoint"] == f"ft:{world['model']}:{world['username']}:p:{hexpart}:ckpt-step-4"
    assert newest["metrics"]["train_loss"] == pytest.approx(1.6) and newest["metrics"]["valid_loss"] == 1.5
    assert page["data"][1]["metrics"]["valid_loss"] is None and newest["fine_tuning_job_id"] == job["id"]
    after = (
        await scheduler.get(f"{JOBS}/{job['id']}/checkpoints", params={"after": newest["id"]}, headers=owner)
    ).json()
    assert [c["step_number"] for c in after["data"]] == [2]

    for step in (2, 4, 6):  # as its agent would have told them (6: told, then its folder went)
        await pool.execute(
            "INSERT INTO job_checkpoints (job_id, step, saved_at, attempt) VALUES ($1, $2, now(), 1)", job_id, step
        )
    r = await scheduler.post(f"{JOBS}/{job['id']}/resume", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued"
    kept = await pool.fetch("SELECT step FROM job_checkpoints WHERE job_id = $1 ORDER BY step", job_id)
    assert [r["step"] for r in kept] == [2, 4], "those after the one it resumes from will be told again"
    ours = (await scheduler.get(f"/api/jobs/{job_id}", headers=owner)).json()
    assert ours["config"]["resume_from_checkpoint"].endswith("checkpoint-4") and ours["state"] == "pending"

    events = (await scheduler.get(f"{JOBS}/{job['id']}/events", params={"limit": 100}, headers=owner)).json()["data"]
    assert events[0]["message"].startswith("Job resumed") and events[0]["type"] == "message"
    messages = [e["message"] for e in events if e["type"] == "message"]
    assert any(m.startswith("Pause requested") for m in messages) and messages[-1] == "Created fine-tuning job"
    assert any(e["level"] == "warn" and e["message"].startswith("The job was") for e in events)
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["data"]["step"] for e in metrics] == [4, 3, 2, 1] and metrics[0]["data"]["valid_loss"] == 1.5
    assert all(e["object"] == "fine_tuning.job.event" for e in events)
    assert [e["created_at"] for e in events] == sorted((e["created_at"] for e in events), reverse=True)

    paged, after_id = [], None
    while True:
        params = {"limit": 3, **({"after": after_id} if after_id else {})}
        page = (await scheduler.get(f"{JOBS}/{job['id']}/events", params=params, headers=owner)).json()
        paged += page["data"]
        after_id = page["data"][-1]["id"] if page["data"] else None
        if not page["has_more"]:
            break
    assert [e["id"] for e in paged] == [e["id"] for e in events]


async def test_a_succeeded_job_names_its_fine_tuned_model_and_registered_model(scheduler, people, world, pool):
    owner = people["fleet-owner"][1]
    job = await create(scheduler, owner, world, suffix="done")
    job_id = job["llmct"]["job_id"]
    await pool.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1", job_id)
    name = f"trained-{new_id('x')[-8:]}"
    await pool.execute(
        "INSERT INTO models (id, name, source, kind, visibility, owner_id, job_id, path) "
        "VALUES ($1, $2, 'train', 'full', 'private', $3, $4, '/srv/x')",
        new_id("mdl"),
        name,
        people["fleet-owner"][0],
        job_id,
    )
    found = (await scheduler.get(f"{JOBS}/{job['id']}", headers=owner)).json()
    hexpart = job["id"].removeprefix("ftjob-")
    assert found["status"] == "succeeded" and found["finished_at"]
    assert found["fine_tuned_model"] == f"ft:{world['model']}:{world['username']}:done:{hexpart}"
    assert found["llmct"]["model_name"] == name


async def test_a_job_paused_before_it_started_resumes_from_the_start(scheduler, people, world):
    owner = people["fleet-owner"][1]
    job = await create(scheduler, owner, world)
    r = await scheduler.post(f"{JOBS}/{job['id']}/pause", headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    assert (await scheduler.get(f"{JOBS}/{job['id']}/checkpoints", headers=owner)).json()["data"] == []
    r = await scheduler.post(f"{JOBS}/{job['id']}/resume", headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    r = await scheduler.post(f"{JOBS}/{job['id']}/cancel", headers=owner)
    assert r.json()["status"] == "cancelled"  # not paused: the pause was resumed


async def test_the_same_idempotency_key_gets_the_one_job(scheduler, people, world):
    owner = {**people["fleet-owner"][1], "Idempotency-Key": new_id("k")}
    body = {"model": world["model"], "training_file": world["train"], "suffix": "once"}
    first = await scheduler.post(JOBS, json=body, headers=owner)
    again = await scheduler.post(JOBS, json=body, headers=owner)
    assert first.status_code == again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["id"] == again.json()["id"]


async def test_checkpoints_in_the_store_are_the_whole_ones(js):
    job_id = new_id("job")
    store = await js.object_store(Buckets.CHECKPOINTS)
    await store.put(Buckets.checkpoint_object(job_id, "checkpoint-3", "adapter_model.safetensors"), b"w")
    await store.put(Buckets.checkpoint_object(job_id, "checkpoint-3", "trainer_state.json"), b"{}")
    await store.put(Buckets.checkpoint_object(job_id, "checkpoint-5", "adapter_model.safetensors"), b"w")
    await store.put(Buckets.checkpoint_object(f"{job_id}x", "checkpoint-7", "trainer_state.json"), b"{}")
    assert await history.stored_steps(js, job_id) == [3]


async def test_a_nul_in_metadata_or_integrations_is_refused_not_stored(scheduler, people, world):
    owner = people["fleet-owner"][1]
    for extra in ({"metadata": {"k": "a\u0000b"}}, {"integrations": [{"type": "wandb", "wandb": {"name": "\u0000"}}]}):
        body = {"model": world["model"], "training_file": world["train"], **extra}
        r = await scheduler.post(JOBS, json=body, headers=owner)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"


async def test_a_wandb_integration_without_the_owners_key_is_refused_in_openais_shape(scheduler, people, world):
    owner = people["fleet-owner"][1]
    body = {"model": world["model"], "training_file": world["train"]}
    r = await scheduler.post(
        JOBS, json={**body, "integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, headers=owner
    )
    error = openai_error(r, 400, "integrations[0].wandb")
    assert "PUT /api/secrets/wandb_api_key" in error["message"]
    for integration, param in (
        ({"type": "comet", "wandb": {"project": "p"}}, "integrations[0]"),
        ({"type": "wandb"}, "integrations[0]"),
        ({"type": "wandb", "wandb": {"project": "p", "base_url": "file:///etc/passwd"}}, "integrations[0].wandb"),
        ({"type": "wandb", "wandb": {"project": "has space", "mode": "offline"}}, "integrations[0].wandb"),
    ):
        r = await scheduler.post(JOBS, json={**body, "integrations": [integration]}, headers=owner)
        assert r.status_code in (400, 422) and r.json()["error"]["param"] == param, (integration, r.text)


async def test_a_pause_asks_the_agent_for_a_checkpoint_first_and_its_answer_reads_paused_at_its_step(
    scheduler, people, world, pool, nats_server
):
    """Both faces: POST /v1/fine_tuning/jobs/{id}/pause and POST /api/jobs/{id}/pause send a stop that is a pause
    (pause_grace_s: the engine saves a checkpoint at its step first); the agent's answer (cancelled, reason
    `paused`) reads `paused` with its step in the events. Only a training job pauses."""
    owner = people["fleet-owner"][1]
    nc = await nats.connect(nats_server.url)
    asked: asyncio.Queue = asyncio.Queue()
    try:
        job = await create(scheduler, owner, world, suffix="pz")
        job_id = job["llmct"]["job_id"]
        await move(pool, job_id, "ft-ghost-agent", 1, "running")
        sub = await nc.subscribe(Subjects.job_cancel(job_id), cb=asked.put)
        await nc.flush()
        assert (await scheduler.post(f"{JOBS}/{job['id']}/pause", headers=owner)).status_code == 200
        request = contracts.decode((await asyncio.wait_for(asked.get(), 10)).data)
        assert isinstance(request, contracts.JobCancelRequested) and request.pause_grace_s == PAUSE_GRACE_S

        told = contracts.JobFinished(
            job_id=job_id,
            agent_id="ft-ghost-agent",
            state="cancelled",
            reason="paused",
            message="paused at step 7 (checkpoint saved)",
            attempt=1,
            at=datetime.now(UTC),
        )
        await nc.jetstream().publish(Subjects.job_status("ft-ghost-agent", job_id), contracts.encode(told))

        async def paused():
            found = (await scheduler.get(f"{JOBS}/{job['id']}", headers=owner)).json()
            return found if found["status"] == "paused" else None

        await eventually(paused, timeout=30)
        events = (await scheduler.get(f"{JOBS}/{job['id']}/events", headers=owner)).json()["data"]
        assert events[0]["message"] == "The job was paused: paused at step 7 (checkpoint saved)", events[0]
        await sub.unsubscribe()

        # Our own face: a training job of /api/jobs pauses the same way.
        other = await create(scheduler, owner, world, suffix="pz2")
        other_id = other["llmct"]["job_id"]
        await move(pool, other_id, "ft-ghost-agent", 1, "running")
        sub = await nc.subscribe(Subjects.job_cancel(other_id), cb=asked.put)
        await nc.flush()
        r = await scheduler.post(f"/api/jobs/{other_id}/pause", headers=owner)
        assert r.status_code == 202 and r.json() == {"id": other_id, "state": "cancelling"}, r.text
        request = contracts.decode((await asyncio.wait_for(asked.get(), 10)).data)
        assert isinstance(request, contracts.JobCancelRequested) and request.pause_grace_s == PAUSE_GRACE_S
        history = await pool.fetch("SELECT reason FROM job_events WHERE job_id = $1 ORDER BY id", other_id)
        assert [r["reason"] for r in history][-2:] == ["pause_requested", "cancel_requested"]
        await sub.unsubscribe()
        r = await scheduler.post(f"/api/jobs/{other_id}/pause", headers=owner)
        assert r.status_code == 202  # asked again while it stops: the same answer
    finally:
        await nc.close()


async def test_only_a_training_job_pauses_on_api_jobs(scheduler, people, pool, tmp_path):
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, "ft-ghost-agent", attempt=1)
    await pool.execute("UPDATE jobs SET kind = 'eval' WHERE id = $1", job_id)
    r = await scheduler.post(f"/api/jobs/{job_id}/pause", headers=owner)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_pausable", r.text
    r = await scheduler.post(f"/api/jobs/{new_id('job')}/pause", headers=owner)
    assert r.status_code == 404


async def test_a_checkpoint_of_ones_own_job_is_a_base_for_a_new_one(scheduler, people, world, pool, settings):
    """`model: ft:…:ckpt-step-N`: the new job trains on the same base, going on with that checkpoint's adapter
    (LLaMA-Factory's adapter_name_or_path); another user's checkpoint, a step not saved, a bad name: 400 `model`."""
    owner, other = people["fleet-owner"][1], people["fleet-other"][1]
    job = await create(scheduler, owner, world, suffix="base")
    job_id, hexpart = job["llmct"]["job_id"], job["id"].removeprefix("ftjob-")
    await pool.execute("INSERT INTO job_checkpoints (job_id, step, saved_at, attempt) VALUES ($1, 8, now(), 1)", job_id)
    name = f"ft:{world['model']}:{world['username']}:base:{hexpart}:ckpt-step-8"

    r = await scheduler.post(JOBS, json={"model": name, "training_file": world["train"]}, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == world["model"], "the checkpoint's base"
    ours = (await scheduler.get(f"/api/jobs/{r.json()['llmct']['job_id']}", headers=owner)).json()
    assert ours["config"]["adapter_name_or_path"] == str(Path(settings.storage.output) / job_id / "checkpoint-8")
    assert ours["config"]["model_name_or_path"] == "/srv/models/ft-base"

    for who, model in (
        (other, name),
        (owner, name.replace("ckpt-step-8", "ckpt-step-9")),
        (owner, f"ft:{world['model']}:x:ckpt-step-8"),
    ):
        r = await scheduler.post(JOBS, json={"model": model, "training_file": world["train"]}, headers=who)
        openai_error(r, 400, "model")
