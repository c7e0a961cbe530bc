"""A training job's experiment tracking on the scheduler (services/scheduler/jobs/tracking.py): checked at submit,
rendered into the engine's keys and the stage's variables, and shown on the job's page. The session's settings:
no LLMCT_TRACKING_ALLOW (loopback, private and link-local servers refused) and W&B not forced offline."""

from __future__ import annotations

import pytest

from services.common.security import new_id
from services.registry.presets import register_preset
from services.scheduler.jobs.tracking import wandb_run_id
from tests.helpers import assert_error

from .helpers import agent_row

pytestmark = pytest.mark.integration

PUBLIC_MLFLOW = "http://93.184.215.14:5000"  # a public address: accepted at submit, never contacted here


@pytest.fixture(scope="module")
async def world(scheduler, people, pool):
    model = f"track-base-{new_id('x')[-8:]}"
    await register_preset(pool, name=model, path="/srv/models/track-base", parameter_count=1_000_000)
    owner_id = people["fleet-owner"][0]
    name = f"track-data-{new_id('x')[-8:]}"
    columns = {"prompt": "instruction"}
    await pool.execute(
        "INSERT INTO datasets (id, name, info_key, visibility, owner_id, source, format, columns, file_name, info) "
        "VALUES ($1, $2, $3, 'private', $4, 'upload', 'alpaca', $5, $6, $7)",
        new_id("ds"),
        name,
        f"{name}-{owner_id}",
        owner_id,
        columns,
        f"{name}.json",
        {"file_name": f"{name}.json", "columns": columns},
    )
    gpu_agent = await agent_row(pool, gpus=1)  # nothing is placed on it: the jobs here stay queued
    yield {"model": model, "dataset": name}
    await pool.execute("DELETE FROM agents WHERE id = $1", gpu_agent)


def train(world, **tracking) -> dict:
    return {"kind": "train", "base_model": world["model"], "datasets": [world["dataset"]], "tracking": tracking}


@pytest.mark.parametrize(
    ("tracking", "field", "says"),
    [
        ({"mlflow": {"tracking_uri": "file:///srv/mlruns"}}, "tracking.mlflow.tracking_uri", "https://"),
        ({"mlflow": {"tracking_uri": "http://169.254.169.254/latest"}}, "tracking.mlflow.tracking_uri", "169.254"),
        ({"mlflow": {"tracking_uri": "http://127.0.0.1:5000"}}, "tracking.mlflow.tracking_uri", "TRACKING_ALLOW"),
        ({"mlflow": {"tracking_uri": "http://10.1.2.3:5000"}}, "tracking.mlflow.tracking_uri", "private"),
        ({"mlflow": {"tracking_uri": "http://0x7f.1:5000"}}, "tracking.mlflow.tracking_uri", "127.0.0.1"),
        ({"mlflow": {"tracking_uri": "http://[::ffff:169.254.169.254]/"}}, "tracking.mlflow.tracking_uri", "169.254"),
        ({"mlflow": {"tracking_uri": "http://a.example\\@127.0.0.1/"}}, "tracking.mlflow.tracking_uri", "credentials"),
        ({"mlflow": {"tracking_uri": "https://me:pw@93.184.215.14"}}, "tracking.mlflow.tracking_uri", "credentials"),
        (
            {"wandb": {"project": "p", "mode": "offline", "base_url": "http://[::1]:8080"}},
            "tracking.wandb.base_url",
            "::1",
        ),
        ({"wandb": {"project": "p"}}, "tracking.wandb.mode", "PUT /api/secrets/wandb_api_key"),
    ],
)
async def test_a_tracking_server_jobs_may_not_reach_or_a_missing_key_is_refused(
    scheduler, people, world, tracking, field, says
):
    r = await scheduler.post("/api/jobs", json=train(world, **tracking), headers=people["fleet-owner"][1])
    error = assert_error(r, 422, field=field)
    assert says in error["message"], error


@pytest.mark.parametrize(
    ("tracking", "field"),
    [
        ({"wandb": {"project": "../etc"}}, "tracking.wandb.project"),
        ({"wandb": {"project": "p", "tags": ["x" * 65]}}, "tracking.wandb.tags[0]"),
        ({"wandb": {"project": "p", "mode": "shared"}}, "tracking.wandb.mode"),
        ({"mlflow": {"tracking_uri": "http://93.184.215.14", "experiment": "x\nY"}}, "tracking.mlflow.experiment"),
        ({"mlflow": {"tracking_uri": "http://93.184.215.14", "env": {"LD_PRELOAD": "x"}}}, "tracking.mlflow.env"),
    ],
)
async def test_tracking_fields_have_limits(scheduler, people, world, tracking, field):
    r = await scheduler.post("/api/jobs", json=train(world, **tracking), headers=people["fleet-owner"][1])
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["field"] == field, r.text


async def test_report_to_stays_narrowed_in_overrides(scheduler, people, world):
    body = {**train(world, tensorboard=True), "config_overrides": {"report_to": "wandb"}}
    r = await scheduler.post("/api/jobs", json=body, headers=people["fleet-owner"][1])
    assert_error(r, 422, field="config_overrides.report_to")


async def test_a_tracked_job_renders_its_trackers_and_shows_them(scheduler, people, world, pool):
    tracking = {
        "mlflow": {"tracking_uri": PUBLIC_MLFLOW, "experiment": "team runs"},
        "wandb": {"project": "p", "entity": "team", "tags": ["a", "b"], "mode": "offline"},
        "tensorboard": True,
    }
    r = await scheduler.post("/api/jobs", json=train(world, **tracking), headers=people["fleet-owner"][1])
    assert r.status_code == 201, r.text
    job = r.json()
    config = job["config"]
    assert config["report_to"] == ["mlflow", "wandb", "tensorboard"] and config["run_name"] == job["id"]
    assert config["logging_dir"] == f"{config['output_dir']}/runs"
    stages = await pool.fetchval("SELECT stages FROM jobs WHERE id = $1", job["id"])
    assert stages[0]["env"] == {
        "MLFLOW_TRACKING_URI": PUBLIC_MLFLOW,
        "MLFLOW_EXPERIMENT_NAME": "team runs",
        "WANDB_PROJECT": "p",
        "WANDB_ENTITY": "team",
        "WANDB_NAME": job["id"],
        "WANDB_TAGS": "a,b",
        "WANDB_MODE": "offline",
        "WANDB_RUN_ID": wandb_run_id(job["id"]),
        "WANDB_RESUME": "allow",
    }
    assert await pool.fetchval("SELECT secret_names FROM jobs WHERE id = $1", job["id"]) == []
    kinds = {run["kind"]: run for run in job["tracking"]}
    assert kinds["mlflow"] == {
        "kind": "mlflow",
        "url": None,
        "run_id": None,
        "experiment_id": None,
        "mode": None,
        "folder": None,
    }
    assert kinds["wandb"]["url"] is None and kinds["wandb"]["folder"] == "wandb"  # offline: no page to link
    assert kinds["tensorboard"]["folder"] == "runs"

    # The agent's JobTracked (applied by services/scheduler/jobs/events.py): the page links to the run.
    from services.scheduler.jobs import store

    async with pool.acquire() as conn:
        await store.record_mlflow_run(conn, job["id"], "abc123", "7")
    detail = (await scheduler.get(f"/api/jobs/{job['id']}", headers=people["fleet-owner"][1])).json()
    mlflow = next(run for run in detail["tracking"] if run["kind"] == "mlflow")
    assert mlflow["url"] == f"{PUBLIC_MLFLOW}/#/experiments/7/runs/abc123"


async def test_a_job_without_tracking_reports_nowhere(scheduler, people, world, pool):
    body = {"kind": "train", "base_model": world["model"], "datasets": [world["dataset"]]}
    r = await scheduler.post("/api/jobs", json=body, headers=people["fleet-owner"][1])
    assert r.status_code == 201, r.text
    assert r.json()["config"]["report_to"] == "none" and r.json()["tracking"] == []
    stages = await pool.fetchval("SELECT stages FROM jobs WHERE id = $1", r.json()["id"])
    assert "env" not in stages[0]


async def test_stored_credentials_go_to_the_job_by_name_only(scheduler, people, world, pool):
    """With the owner's W&B key stored (/api/secrets), W&B online is accepted; the job lists the variables it is
    to be given (its MLflow token too, stored: MLflow takes what the owner has), never their values."""
    owner = people["fleet-owner"][1]
    for name, value in (("wandb_api_key", "wk-" + new_id("v")), ("mlflow_tracking_token", "mt-" + new_id("v"))):
        r = await scheduler.put(f"/api/secrets/{name}", json={"value": value}, headers=owner)
        assert r.status_code == 200, r.text
    try:
        tracking = {"wandb": {"project": "p", "mode": "online"}, "mlflow": {"tracking_uri": PUBLIC_MLFLOW}}
        r = await scheduler.post("/api/jobs", json=train(world, **tracking), headers=owner)
        assert r.status_code == 201, r.text
        names = await pool.fetchval("SELECT secret_names FROM jobs WHERE id = $1", r.json()["id"])
        assert names == ["WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN"]
        assert "wk-" not in r.text and "mt-" not in r.text
        stages = await pool.fetchval("SELECT stages FROM jobs WHERE id = $1", r.json()["id"])
        assert not set(stages[0]["env"]) & {"WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN"}
    finally:
        for name in ("wandb_api_key", "mlflow_tracking_token"):
            await scheduler.delete(f"/api/secrets/{name}", headers=owner)
