"""Experiment tracking of a training job (docs/tracking.md): its settings checked at submit, the engine variables
and LLaMA-Factory keys they become, the secrets the job needs, and the links its page shows.

MLflow and W&B servers are reached from the agent's engine, so their addresses pass the same guard as webhooks
(public addresses only, unless an admin allows more in LLMCT_TRACKING_ALLOW). Credentials never travel in the job:
they are the owner's secrets (`jobs.secret_names` lists the variables, the agent fetches the values at run time).
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec

from services.common.errors import ApiError
from services.common.usersecrets import BY_NAME, job_secret_names

from ..settings import TrackingSettings
from ..usersecrets import store as secrets_store
from ..webhooks.addresses import Allowed, Refused, checked_address
from .schemas import Tracking, TrackingRun

WANDB_CLOUD = "https://wandb.ai"
WANDB_API_KEY = "WANDB_API_KEY"
MLFLOW_SECRETS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
TENSORBOARD_FOLDER = "runs"  # TensorBoard's event files, inside the job's output folder
WANDB_FOLDER = "wandb"  # W&B's run folders (offline-run-…), inside the job's output folder (WANDB_DIR)


async def check_address(url: str, settings: TrackingSettings, field: str) -> None:
    """Refuse a tracking server URL that is not http(s), holds credentials, or resolves to an address jobs may
    not reach (private, loopback, link-local such as 169.254.169.254) unless LLMCT_TRACKING_ALLOW allows it."""
    try:
        await checked_address(url, Allowed.parse(settings.tracking_allow))
    except Refused as exc:
        message = str(exc).replace("webhooks may not reach", "jobs may not report to")
        message = message.replace("LLMCT_WEBHOOK_ALLOW", "LLMCT_TRACKING_ALLOW")
        message = message.replace("the signature says who sends", "store credentials with PUT /api/secrets/…")
        raise ApiError(422, "invalid_tracking", message, field) from exc


def effective(tracking: Tracking | None, settings: TrackingSettings) -> Tracking | None:
    """The tracking the job runs with: W&B forced offline where the admin says so (LLMCT_WANDB_MODE)."""
    if tracking is None or not (tracking.mlflow or tracking.wandb or tracking.tensorboard):
        return None
    if tracking.wandb and settings.wandb_mode == "offline" and tracking.wandb.mode != "offline":
        wandb = msgspec.structs.replace(tracking.wandb, mode="offline")
        return msgspec.structs.replace(tracking, wandb=wandb)
    return tracking


async def check_tracking(
    pool: asyncpg.Pool, settings: TrackingSettings, user_id: str, tracking: Tracking | None
) -> list[str]:
    """Check a job's (effective) tracking before it is stored; the secret variables it needs (`jobs.secret_names`).
    W&B online needs the owner's W&B API key; MLflow takes the owner's token or user and password when stored."""
    if tracking is None:
        return []
    if tracking.mlflow:
        await check_address(tracking.mlflow.tracking_uri, settings, "tracking.mlflow.tracking_uri")
    if tracking.wandb and tracking.wandb.base_url:
        await check_address(tracking.wandb.base_url, settings, "tracking.wandb.base_url")
    names: list[str] = []
    rows = await secrets_store.secrets_of(pool, user_id)  # one read for every tracker
    have = {BY_NAME[row["name"]].env for row in rows if row["name"] in BY_NAME}
    if tracking.wandb and tracking.wandb.mode == "online":
        if WANDB_API_KEY not in have:
            raise ApiError(
                422,
                "secret_missing",
                "W&B online needs your W&B API key: store it with PUT /api/secrets/wandb_api_key, "
                "or set tracking.wandb.mode to 'offline'",
                "tracking.wandb.mode",
            )
        names.append(WANDB_API_KEY)
    if tracking.mlflow:
        names += [env for env in MLFLOW_SECRETS if env in have]
    return list(job_secret_names(names))


def wandb_run_id(job_id: str) -> str:
    """The job's W&B run id: the same on every attempt, so a resumed job goes on in its run (WANDB_RESUME=allow)."""
    return "llmct-" + hashlib.sha256(job_id.encode()).hexdigest()[:16]


def report_to(tracking: Tracking | None) -> list[str]:
    """The engine's `report_to`: the integrations chosen (none: "none")."""
    if tracking is None:
        return []
    return [
        name
        for name, on in (("mlflow", tracking.mlflow), ("wandb", tracking.wandb), ("tensorboard", tracking.tensorboard))
        if on
    ]


def engine_env(tracking: Tracking | None, job_id: str) -> dict[str, str]:
    """The engine variables of the job's tracking (contracts.TRACKING_ENV): never a secret, never a path (the agent
    sets WANDB_DIR and MLFLOW_RUN_ID itself)."""
    env: dict[str, str] = {}
    if tracking is None:
        return env
    if tracking.mlflow:
        env.update(MLFLOW_TRACKING_URI=tracking.mlflow.tracking_uri, MLFLOW_EXPERIMENT_NAME=tracking.mlflow.experiment)
    if wandb := tracking.wandb:
        env.update(
            WANDB_PROJECT=wandb.project,
            WANDB_NAME=wandb.name or job_id,
            WANDB_MODE=wandb.mode,
            WANDB_RUN_ID=wandb_run_id(job_id),
            WANDB_RESUME="allow",
        )
        if wandb.entity:
            env["WANDB_ENTITY"] = wandb.entity
        if wandb.tags:
            env["WANDB_TAGS"] = ",".join(wandb.tags)
        if wandb.base_url:
            env["WANDB_BASE_URL"] = wandb.base_url
    return env


def stored(tracking: Tracking | None) -> dict[str, Any] | None:
    """What `jobs.tracking` starts as: the effective settings; the agent's JobTracked adds MLflow's run."""
    if tracking is None:
        return None
    return msgspec.to_builtins(tracking)


def runs(job_id: str, column: dict[str, Any] | None) -> list[TrackingRun]:
    """The trackers of a job as its page shows them (`jobs.tracking`), with a link to each run that has a page."""
    if not column:
        return []
    found: list[TrackingRun] = []
    if mlflow := column.get("mlflow"):
        run_id, experiment_id = mlflow.get("run_id"), mlflow.get("experiment_id")
        url = None
        if run_id and experiment_id:
            url = f"{mlflow['tracking_uri'].rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        found.append(TrackingRun(kind="mlflow", url=url, run_id=run_id, experiment_id=experiment_id))
    if wandb := column.get("wandb"):
        run_id = wandb_run_id(job_id)
        url = None
        if wandb.get("mode") == "online" and wandb.get("entity"):
            base = (wandb.get("base_url") or WANDB_CLOUD).rstrip("/")
            url = f"{base}/{wandb['entity']}/{wandb['project']}/runs/{run_id}"
        folder = WANDB_FOLDER if wandb.get("mode") == "offline" else None
        found.append(TrackingRun(kind="wandb", url=url, run_id=run_id, mode=wandb.get("mode"), folder=folder))
    if column.get("tensorboard"):
        found.append(TrackingRun(kind="tensorboard", url=None, folder=TENSORBOARD_FOLDER))
    return found
