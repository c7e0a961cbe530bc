"""A job's experiment tracking on the agent (docs/tracking.md): the engine variables a stage may carry, and the MLflow
run made before the engine starts.

The scheduler renders a training stage's tracking variables (`EngineStage.env`); this agent takes only the names in
`contracts.TRACKING_ENV` (a newer or a tampered dispatch sets nothing else: not LD_PRELOAD, not PYTHONPATH) and adds
the paths itself: W&B's folders inside the job's output folder. When the stage names an MLflow server, the agent
creates the run through MLflow's REST API (the experiment by name, created when missing; the run named after the
job, tagged `llmct.job_id`), or finds the one the job kept from an earlier attempt, and hands its id to the engine
as MLFLOW_RUN_ID: transformers' MLflowCallback then logs into that run. A server that does not answer fails the job
here, with the URI named, before any GPU time is spent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.common.contracts import TRACKING_ENV, EngineStage

MLFLOW_TIMEOUT_S = 10.0
API = "/api/2.0/mlflow"


class TrackingUnreachable(Exception):
    """The job's MLflow server did not answer, or refused the run; the message names the URI and says why."""


@dataclass(frozen=True)
class MlflowRun:
    run_id: str
    experiment_id: str


def stage_env(stage: EngineStage, output_dir: Path) -> dict[str, str]:
    """The tracking variables of `stage` the engine gets: the allowed names only, W&B's folders in the outputs."""
    env = {name: value for name, value in stage.env.items() if name in TRACKING_ENV and isinstance(value, str)}
    if "WANDB_PROJECT" in env:
        # W&B keeps its runs (offline-run-…/ for `wandb sync`) under WANDB_DIR/wandb, and its config and cache
        # under the user's home unless told: all of it in the job's folder, where the outputs are.
        env.update(
            WANDB_DIR=str(output_dir),
            WANDB_CONFIG_DIR=str(output_dir / "wandb" / ".config"),
            WANDB_CACHE_DIR=str(output_dir / "wandb" / ".cache"),
            WANDB_DATA_DIR=str(output_dir / "wandb" / ".data"),
        )
    return env


def _auth(env: Mapping[str, str]) -> dict[str, Any]:
    """The credentials MLflow's own client would send (the owner's secrets, when the job was given them)."""
    if token := env.get("MLFLOW_TRACKING_TOKEN"):
        return {"headers": {"Authorization": f"Bearer {token}"}}
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"auth": (user, password)}
    return {}


async def _call(client: httpx.AsyncClient, uri: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.request(method, f"{uri.rstrip('/')}{API}/{path}", **kwargs)
    except httpx.HTTPError as exc:
        raise TrackingUnreachable(f"the MLflow server {uri} did not answer ({type(exc).__name__}: {exc})") from exc


def _checked(uri: str, answer: httpx.Response, doing: str) -> dict[str, Any]:
    if answer.status_code >= 400:
        detail = answer.text[:300].replace("\n", " ")
        hint = " (store your MLflow credentials with PUT /api/secrets/…)" if answer.status_code in (401, 403) else ""
        raise TrackingUnreachable(
            f"the MLflow server {uri} refused to {doing}: HTTP {answer.status_code} {detail}{hint}"
        )
    try:
        body = answer.json()
    except ValueError as exc:
        raise TrackingUnreachable(f"the MLflow server {uri} answered {doing} with something not JSON") from exc
    if not isinstance(body, dict):
        raise TrackingUnreachable(f"the MLflow server {uri} answered {doing} with something unexpected")
    return body


def _missing(answer: httpx.Response) -> bool:
    """MLflow's own "no such thing" (a 404 of anything else at that path is not MLflow: refused as such)."""
    return answer.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in answer.text


async def _experiment_id(client: httpx.AsyncClient, uri: str, name: str) -> str:
    """The experiment's id by name; created when there is none."""
    found = await _call(client, uri, "GET", "experiments/get-by-name", params={"experiment_name": name})
    if not _missing(found):
        return str(_checked(uri, found, "find the experiment")["experiment"]["experiment_id"])
    made = await _call(client, uri, "POST", "experiments/create", json={"name": name})
    if made.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in made.text:  # another job made it just now
        return await _experiment_id(client, uri, name)
    return str(_checked(uri, made, "create the experiment")["experiment_id"])


async def _kept(client: httpx.AsyncClient, uri: str, run_id: str) -> MlflowRun | None:
    """The run a job kept from an earlier attempt, when the server still has it (not deleted)."""
    answer = await _call(client, uri, "GET", "runs/get", params={"run_id": run_id})
    if _missing(answer):
        return None
    info = _checked(uri, answer, "find the job's run")["run"]["info"]
    if info.get("lifecycle_stage") == "deleted":
        return None
    return MlflowRun(run_id=str(info["run_id"]), experiment_id=str(info["experiment_id"]))


async def mlflow_run(env: Mapping[str, str], job_id: str, kept: str | None = None) -> MlflowRun:
    """The job's MLflow run: the one it kept (a resumed job goes on in it) or a new one in the stage's experiment."""
    uri = env["MLFLOW_TRACKING_URI"]
    experiment = env.get("MLFLOW_EXPERIMENT_NAME") or "Default"
    async with httpx.AsyncClient(timeout=MLFLOW_TIMEOUT_S, follow_redirects=False, **_auth(env)) as client:
        if kept and (run := await _kept(client, uri, kept)) is not None:
            return run
        experiment_id = await _experiment_id(client, uri, experiment)
        body = {
            "experiment_id": experiment_id,
            "run_name": job_id,
            "start_time": int(time.time() * 1000),
            "tags": [{"key": "llmct.job_id", "value": job_id}, {"key": "mlflow.runName", "value": job_id}],
        }
        made = _checked(uri, await _call(client, uri, "POST", "runs/create", json=body), "create the run")
        info = made["run"]["info"]
        return MlflowRun(run_id=str(info["run_id"]), experiment_id=str(info["experiment_id"]))


# The job's end as MLflow's run status (a succeeded run is ended by the engine's own callback).
RUN_STATUS = {"failed": "FAILED", "cancelled": "KILLED"}


async def end_mlflow_run(env: Mapping[str, str], run_id: str, state: str) -> None:
    """Mark the job's MLflow run failed or killed when the engine could not end it itself; best effort (a server
    gone meanwhile changes nothing of the job)."""
    status = RUN_STATUS.get(state)
    if status is None:
        return
    uri = env["MLFLOW_TRACKING_URI"]
    body = {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)}
    async with httpx.AsyncClient(timeout=MLFLOW_TIMEOUT_S, follow_redirects=False, **_auth(env)) as client:
        try:
            await _call(client, uri, "POST", "runs/update", json=body)
        except TrackingUnreachable:
            return
