"""Platform settings, read once from the environment and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from services.common.contracts import MODEL_HUBS

SERVICE_NAMES = ("auth", "scheduler", "datasets", "registry", "agent", "gateway")

# Default ports for the local stack; each can be overridden with LLMCT_<NAME>_PORT.
DEFAULT_PORTS = {
    "gateway": 8080,
    "auth": 8101,
    "scheduler": 8102,
    "datasets": 8103,
    "registry": 8104,
    "agent": 8105,
}

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True, kw_only=True)
class StoragePaths:
    """The seed's shared folder layout (cloud-llm/)."""

    base: Path
    """HOST_BASE_PATH: root of data, output, checkpoints and temp."""
    logs: Path
    """LOG_BASE_PATH: where job logs are written."""
    hf_cache: Path
    """HF_CACHE_PATH: the Hugging Face cache mounted into engines."""

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"

    @property
    def models(self) -> Path:
        """Models made or copied locally (presets such as the tiny test model)."""
        return self.base / "models"

    @property
    def evaluation(self) -> Path:
        """Benchmark task data (MMLU / C-Eval / CMMLU layout: <task>/mapping.json + data), LLaMA-Factory's task_dir."""
        return self.base / "evaluation"

    @property
    def temp(self) -> Path:
        return self.base / "temp"

    @property
    def state(self) -> Path:
        """Local NATS and Postgres state of the embedded stack."""
        return self.base / "state"

    def ensure(self) -> None:
        """Create every folder of the layout."""
        for path in (self.data, self.output, self.checkpoints, self.models, self.evaluation, self.temp, self.logs, self.hf_cache):
            path.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a service reads from its environment."""

    database_url: str
    """DATABASE_URL: postgresql://user@host:port/db."""
    nats_url: str
    """NATS_URL: nats://host:port (it may carry user:password@, NATS_USER/NATS_PASSWORD win over it)."""
    nats_user: str | None = None
    """NATS_USER: this process's NATS user (services share one; each agent has its own, docs/fleet.md)."""
    nats_password: str | None = None
    """NATS_PASSWORD: the password of NATS_USER."""
    nats_creds: str | None = None
    """NATS_CREDS: a .creds file (JWT + nkey seed) instead of a user and password, for operator-mode NATS."""
    secret_key: str
    """LLMCT_SECRET_KEY: signs access tokens; every service that checks callers must share it."""
    token_ttl_s: int = 12 * 3600
    """LLMCT_TOKEN_TTL_S: lifetime of an access token in seconds."""
    invite_code: str | None = None
    """INVITE_CODE: a standing invite code accepted at registration."""
    admin_username: str | None = None
    """LLMCT_ADMIN_USERNAME: the first admin, created at auth start-up if missing."""
    admin_password: str | None = None
    """LLMCT_ADMIN_PASSWORD: the first admin's password."""
    bind_host: str = "127.0.0.1"
    """LLMCT_BIND_HOST: address internal services listen on."""
    public_host: str = "127.0.0.1"
    """LLMCT_PUBLIC_HOST: address the gateway listens on."""
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    """LLMCT_<SERVICE>_PORT: port of each service."""
    login_max_failures: int = 5
    """LLMCT_LOGIN_MAX_FAILURES: failed logins per account or address before a pause."""
    login_window_s: int = 300
    """LLMCT_LOGIN_WINDOW_S: window in which failed logins are counted."""
    web_dist: Path = REPO_ROOT / "web" / "dist"
    """LLMCT_WEB_DIST: the built web client the gateway serves."""
    deploy_idle_s: int = 300
    """LLMCT_DEPLOY_IDLE_S: a deployment with no request for this long stops itself (the seed: 5 minutes)."""
    deploy_startup_s: int = 180
    """LLMCT_DEPLOY_STARTUP_S: how long an agent waits for a model server to answer before failing it."""
    max_deployments: int = 1
    """LLMCT_MAX_DEPLOYMENTS: active deployments per user unless an admin set the user's own limit."""
    max_gpus_per_user: int | None = None
    """LLMCT_MAX_GPUS_PER_USER: GPUs one user's running jobs may hold at once (unset: no limit)."""
    max_queued_per_user: int = 100
    """LLMCT_MAX_QUEUED_PER_USER: pending jobs one user may have; more are refused at submit."""
    fair_share_window_h: float = 24.0
    """LLMCT_FAIR_SHARE_WINDOW_H: the window of GPU-hours fair sharing counts (fewest goes first)."""
    model_hub: str = "huggingface"
    """LLMCT_MODEL_HUB: where a model registered on both hubs is downloaded from (huggingface | modelscope)."""
    storage: StoragePaths

    def service_url(self, name: str) -> str:
        """Internal base URL of a service."""
        return f"http://{self.bind_host}:{self.ports[name]}"


def storage_from_env() -> StoragePaths:
    """Storage paths from HOST_BASE_PATH, LOG_BASE_PATH and HF_CACHE_PATH."""
    base = Path(_env("HOST_BASE_PATH", str(REPO_ROOT / "cloud-llm"))).resolve()
    return StoragePaths(
        base=base,
        logs=Path(_env("LOG_BASE_PATH", str(base / "logs"))).resolve(),
        hf_cache=Path(_env("HF_CACHE_PATH", str(base / "hf-cache"))).resolve(),
    )


def _model_hub(value: str) -> str:
    if value not in MODEL_HUBS:
        raise ValueError(f"LLMCT_MODEL_HUB must be one of {', '.join(MODEL_HUBS)}, not {value!r}")
    return value


def settings_from_env() -> Settings:
    """Build settings from the environment (uncached; tests use this)."""
    ports = {name: int(_env(f"LLMCT_{name.upper()}_PORT", str(port))) for name, port in DEFAULT_PORTS.items()}
    return Settings(
        database_url=_env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/llmct"),
        nats_url=_env("NATS_URL", "nats://127.0.0.1:4222"),
        nats_user=_env("NATS_USER"),
        nats_password=_env("NATS_PASSWORD"),
        nats_creds=_env("NATS_CREDS"),
        secret_key=_env("LLMCT_SECRET_KEY", ""),
        token_ttl_s=int(_env("LLMCT_TOKEN_TTL_S", str(12 * 3600))),
        invite_code=_env("INVITE_CODE"),
        admin_username=_env("LLMCT_ADMIN_USERNAME"),
        admin_password=_env("LLMCT_ADMIN_PASSWORD"),
        bind_host=_env("LLMCT_BIND_HOST", "127.0.0.1"),
        public_host=_env("LLMCT_PUBLIC_HOST", "127.0.0.1"),
        ports=ports,
        login_max_failures=int(_env("LLMCT_LOGIN_MAX_FAILURES", "5")),
        login_window_s=int(_env("LLMCT_LOGIN_WINDOW_S", "300")),
        web_dist=Path(_env("LLMCT_WEB_DIST", str(REPO_ROOT / "web" / "dist"))),
        deploy_idle_s=int(_env("LLMCT_DEPLOY_IDLE_S", "300")),
        deploy_startup_s=int(_env("LLMCT_DEPLOY_STARTUP_S", "180")),
        max_deployments=int(_env("LLMCT_MAX_DEPLOYMENTS", "1")),
        max_gpus_per_user=int(_env("LLMCT_MAX_GPUS_PER_USER")) if _env("LLMCT_MAX_GPUS_PER_USER") else None,
        max_queued_per_user=int(_env("LLMCT_MAX_QUEUED_PER_USER", "100")),
        fair_share_window_h=float(_env("LLMCT_FAIR_SHARE_WINDOW_H", "24")),
        model_hub=_model_hub(_env("LLMCT_MODEL_HUB", "huggingface")),
        storage=storage_from_env(),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built once."""
    return settings_from_env()
