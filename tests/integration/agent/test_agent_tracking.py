"""The agent's side of experiment tracking (services/agent/tracking.py) against a real MLflow server: the run made
before the engine starts, found again for a resumed job, and a server that cannot be reached named in the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmct.embedded import free_port
from services.agent import tracking
from services.common.contracts import EngineStage
from tests.helpers import unique

pytestmark = pytest.mark.integration


async def test_the_run_is_made_in_the_experiment_named_after_the_job_and_found_again(mlflow_server):
    job_id, experiment = unique("job"), unique("experiment")
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_EXPERIMENT_NAME": experiment}
    run = await tracking.mlflow_run(env, job_id)

    info = mlflow_server.get("runs/get", run_id=run.run_id)["run"]
    assert info["info"]["experiment_id"] == run.experiment_id and info["info"]["run_name"] == job_id
    tags = {tag["key"]: tag["value"] for tag in info["data"]["tags"]}
    assert tags["llmct.job_id"] == job_id
    named = mlflow_server.get("experiments/get-by-name", experiment_name=experiment)["experiment"]
    assert named["experiment_id"] == run.experiment_id

    # A resumed job goes on in the run it kept; a second job gets its own run in the same experiment.
    assert await tracking.mlflow_run(env, job_id, kept=run.run_id) == run
    other = await tracking.mlflow_run(env, unique("job"))
    assert other.experiment_id == run.experiment_id and other.run_id != run.run_id


async def test_a_kept_run_the_server_no_longer_has_gives_a_new_one(mlflow_server):
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_EXPERIMENT_NAME": unique("experiment")}
    run = await tracking.mlflow_run(env, unique("job"), kept="0" * 32)
    assert mlflow_server.get("runs/get", run_id=run.run_id)["run"]["info"]["run_id"] == run.run_id


async def test_a_server_that_does_not_answer_is_named():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(tracking.TrackingUnreachable, match=f"the MLflow server {uri} did not answer"):
        await tracking.mlflow_run({"MLFLOW_TRACKING_URI": uri}, unique("job"))


async def test_a_server_that_is_not_mlflow_is_named(mlflow_server):
    env = {"MLFLOW_TRACKING_URI": f"{mlflow_server.url}/not-mlflow", "MLFLOW_EXPERIMENT_NAME": "x"}
    with pytest.raises(tracking.TrackingUnreachable, match="refused to find the experiment: HTTP 404"):
        await tracking.mlflow_run(env, unique("job"))


def test_a_stage_sets_only_tracking_variables_and_wandb_writes_in_the_outputs(tmp_path: Path):
    stage = EngineStage(
        name="train",
        command=("llamafactory-cli", "train"),
        config_yaml="{}",
        env={"WANDB_PROJECT": "p", "WANDB_MODE": "offline", "LD_PRELOAD": "/evil.so", "PYTHONPATH": "/x"},
    )
    env = tracking.stage_env(stage, tmp_path)
    assert env["WANDB_PROJECT"] == "p" and env["WANDB_DIR"] == str(tmp_path)
    assert "LD_PRELOAD" not in env and "PYTHONPATH" not in env
    assert all(value.startswith(str(tmp_path)) for name, value in env.items() if name.endswith("_DIR"))
