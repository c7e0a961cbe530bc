"""Experiment tracking's pure parts: what a job's tracking renders into, the links its page shows, OpenAI's
integrations mapped onto it (services/scheduler/jobs/tracking.py, rendering/train.py, openai/mapping.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.common.contracts import TRACKING_ENV
from services.common.errors import ApiError
from services.common.settings import from_env
from services.scheduler.jobs import tracking
from services.scheduler.jobs.schemas import Tracking, TrainRequest
from services.scheduler.openai import mapping
from services.scheduler.openai.schemas import FineTuningJobCreate, Integration
from services.scheduler.rendering import render_train
from services.scheduler.settings import TrackingSettings

pytestmark = pytest.mark.unit

FULL = {
    "mlflow": {"tracking_uri": "https://mlflow.example.com/", "experiment": "team"},
    "wandb": {"project": "p", "entity": "e", "name": "my run", "tags": ["a"], "mode": "online"},
    "tensorboard": True,
}


def tracked(**given) -> Tracking:
    return msgspec.convert(given, Tracking)


def test_the_engine_gets_only_tracking_variables_and_never_a_secret():
    env = tracking.engine_env(tracked(**FULL), "job_1")
    assert set(env) <= TRACKING_ENV
    assert env["WANDB_RUN_ID"] == tracking.wandb_run_id("job_1") == tracking.wandb_run_id("job_1")
    assert env["WANDB_RESUME"] == "allow" and env["WANDB_NAME"] == "my run"
    assert not any(word in name for name in env for word in ("KEY", "TOKEN", "PASSWORD"))
    assert tracking.wandb_run_id("job_1") != tracking.wandb_run_id("job_2")


def test_rendering_reports_to_the_chosen_trackers_with_tensorboard_in_the_outputs(tmp_path: Path):
    req = TrainRequest(base_model="m", datasets=["d"], tracking=tracked(**FULL))
    config = render_train(
        req, model_path="/m", default_template="default", data_dir=tmp_path, output_dir=tmp_path / "j"
    )
    assert config["report_to"] == ["mlflow", "wandb", "tensorboard"] and config["run_name"] == "my run"
    assert config["logging_dir"] == str(tmp_path / "j" / "runs")
    plain = render_train(
        TrainRequest(base_model="m", datasets=["d"]),
        model_path="/m",
        default_template="default",
        data_dir=tmp_path,
        output_dir=tmp_path / "j",
    )
    assert plain["report_to"] == "none" and "run_name" not in plain


def test_the_admin_forces_wandb_offline():
    settings = from_env(TrackingSettings, {"LLMCT_WANDB_MODE": "offline"})
    forced = tracking.effective(tracked(**FULL), settings)
    assert forced is not None and forced.wandb is not None and forced.wandb.mode == "offline"
    assert tracking.effective(tracked(tensorboard=False), settings) is None


def test_links_name_the_runs_that_have_a_page():
    column = tracking.stored(tracked(**FULL))
    assert column is not None
    column["mlflow"].update(run_id="r1", experiment_id="3")
    runs = {run.kind: run for run in tracking.runs("job_1", column)}
    assert runs["mlflow"].url == "https://mlflow.example.com/#/experiments/3/runs/r1"
    assert runs["wandb"].url == f"https://wandb.ai/e/p/runs/{tracking.wandb_run_id('job_1')}"
    assert runs["tensorboard"].url is None and runs["tensorboard"].folder == "runs"
    column["wandb"].update(mode="offline")
    assert tracking.runs("job_1", column)[1].url is None  # offline: the run is in the outputs, `wandb sync` it
    column["wandb"].update(mode="online", entity=None, base_url="https://wandb.corp")
    assert tracking.runs("job_1", column)[1].url is None  # no entity: no address to link


def test_openai_integrations_become_wandb_tracking():
    create = msgspec.convert(
        {
            "model": "m",
            "training_file": "file-" + "0" * 24,
            "integrations": [{"type": "wandb", "wandb": {"project": "p", "name": "n", "entity": "e", "tags": ["t"]}}],
        },
        FineTuningJobCreate,
    )
    req = mapping.train_request(create, mapping.resolved_method(create), seed=1, gpu_count=0)
    assert req.tracking == tracked(wandb={"project": "p", "name": "n", "entity": "e", "tags": ["t"]})
    with pytest.raises(ApiError) as refused:
        mapping.tracking_of([msgspec.convert({"type": "wandb", "wandb": {"project": "p", "x": 1}}, type=Integration)])
    assert refused.value.field == "integrations[0].wandb"
