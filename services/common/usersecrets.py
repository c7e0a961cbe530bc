"""The user secrets a job may be given: a fixed catalogue, secret name → the environment variable the engine reads.

Users store credentials of the trackers their jobs report to (`/api/secrets`, the scheduler's); a job lists the
variables it needs (`jobs.secret_names`, `JobDispatched.secrets`) and its train stages get them. Nothing outside
this catalogue can be stored or handed to a job, so a user never sets LD_PRELOAD, PYTHONPATH or a platform variable
this way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SecretKind:
    """One secret users may store: its name in the API, the variable a job gets it as, and what it is."""

    name: str
    env: str
    label: str


CATALOGUE: tuple[SecretKind, ...] = (
    SecretKind("wandb_api_key", "WANDB_API_KEY", "W&B API key"),
    SecretKind("mlflow_tracking_token", "MLFLOW_TRACKING_TOKEN", "MLflow tracking token"),
    SecretKind("mlflow_tracking_username", "MLFLOW_TRACKING_USERNAME", "MLflow tracking username"),
    SecretKind("mlflow_tracking_password", "MLFLOW_TRACKING_PASSWORD", "MLflow tracking password"),
)
BY_NAME = {kind.name: kind for kind in CATALOGUE}
BY_ENV = {kind.env: kind for kind in CATALOGUE}
SECRET_NAMES = tuple(BY_NAME)
SECRET_ENVS = tuple(BY_ENV)
# Engine stages that get the job's secrets: the trackers report from training only.
STAGES_WITH_SECRETS = ("train",)
MAX_VALUE_BYTES = 4096


def env_of(name: str) -> str | None:
    """The environment variable of secret `name` (None: not in the catalogue)."""
    kind = BY_NAME.get(name)
    return kind.env if kind else None


def job_secret_names(envs) -> tuple[str, ...]:
    """What `jobs.secret_names` (and `JobDispatched.secrets`) holds for a job that needs these variables: each once,
    in the catalogue's order; ValueError naming one outside the catalogue (a submit answers it as a 422)."""
    wanted = set(envs)
    unknown = sorted(wanted - set(BY_ENV))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a secret a job can be given (one of {', '.join(SECRET_ENVS)})")
    return tuple(env for env in SECRET_ENVS if env in wanted)


def missing_message(env: str) -> str:
    """What a job's owner reads when a secret the job needs is not set: which one, and how to set it."""
    kind = BY_ENV.get(env)
    if kind is None:
        return f"{env} is not a secret a job can be given"
    return f"{kind.label} not set: PUT /api/secrets/{kind.name}"
