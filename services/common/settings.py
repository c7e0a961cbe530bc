"""Platform settings, read once from the environment and cached."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .storage import StorageMode

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
T = TypeVar("T")


# --- the one settings idiom ---------------------------------------------------------------------
# A service declares its settings once, as a frozen dataclass whose fields are `env(...)`: the variable, the
# default and a line of doc. `from_env` builds it once at start (the app factory); it is passed in from there.
# Nothing reads the environment at import time or in a constructor. tests/unit/test_settings.py checks that
# every variable is in the README's settings table.


def env(name: str, default: Any = MISSING, doc: str = "", *, default_factory: Any = MISSING) -> Any:
    """A settings field read from the environment variable `name` (empty counts as unset)."""
    return field(default=default, default_factory=default_factory, metadata={"env": name, "doc": doc})


def _parse(kind: Any, raw: str, name: str) -> Any:
    """`raw` as the field's type: str, int, float, bool, Path, a Literal of strings, or one of them | None."""
    if get_origin(kind) in (Union, UnionType):
        (kind,) = [arg for arg in get_args(kind) if arg is not type(None)]
    if get_origin(kind) is Literal:
        if raw not in get_args(kind):
            raise ValueError(f"{name} must be one of {', '.join(get_args(kind))}, not {raw!r}")
        return raw
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc


def from_env(cls: type[T], environ: Mapping[str, str] | None = None, **given: Any) -> T:
    """Build the settings class `cls` from the environment: each `env` field from its variable when set,
    else its default; `given` fields are passed as they are (tests, composed settings)."""
    environ = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    values = dict(given)
    for item in fields(cls):  # type: ignore[arg-type]
        name = item.metadata.get("env")
        raw = environ.get(name) if name else None
        if item.name not in values and name and raw:  # raw implies name; said again for the type checker
            values[item.name] = _parse(hints[item.name], raw, name)
    return cls(**values)


def variables(cls: type) -> dict[str, str]:
    """Every environment variable `cls` reads, with its doc line (the README table and its test)."""
    return {item.metadata["env"]: item.metadata.get("doc", "") for item in fields(cls) if "env" in item.metadata}


@dataclass(frozen=True, kw_only=True)
class StoragePaths:
    """The seed's shared folder layout (cloud-llm/)."""

    base: Path
    """HOST_BASE_PATH: root of data, output, checkpoints and temp."""
    logs: Path
    """LOG_BASE_PATH: where job logs are written."""
    hf_cache: Path
    """HF_CACHE_PATH: the Hugging Face cache mounted into engines."""
    state_dir: Path | None = None
    """LLMCT_STATE_PATH: the platform's private state; `<HOST_BASE_PATH>-state` when unset (`state`)."""

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
        """The embedded stack's NATS and Postgres data, the platform's secrets and agents' saved jobs: beside the
        shared storage, never inside it, since jobs see that (its data, models, temp) and this is for the
        platform's own user only (0700)."""
        return self.state_dir or self.base.with_name(self.base.name + "-state")

    def ensure(self) -> None:
        """Create every folder of the layout."""
        for path in (
            self.data,
            self.output,
            self.checkpoints,
            self.models,
            self.evaluation,
            self.temp,
            self.logs,
            self.hf_cache,
        ):
            path.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every service reads from its environment: the store, the bus, the shared secret, addresses and
    folders. A service's own knobs are in its `settings.py`, a subclass of this one (`settings_for`)."""

    database_url: str = env(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/llmct", doc="postgresql://user@host:port/db."
    )
    nats_url: str = env(
        "NATS_URL",
        "nats://127.0.0.1:4222",
        doc="nats://host:port (it may carry user:password@, NATS_USER/NATS_PASSWORD win over it).",
    )
    nats_user: str | None = env(
        "NATS_USER", None, doc="this process's NATS user (services share one; each agent has its own)."
    )
    nats_password: str | None = env("NATS_PASSWORD", None, doc="the password of NATS_USER.")
    nats_creds: str | None = env(
        "NATS_CREDS", None, doc="a .creds file (JWT + nkey seed) instead of a user and password."
    )
    nats_tls_ca: str | None = env(
        "NATS_TLS_CA",
        None,
        doc="a PEM file of the CA that signed the NATS servers' certificates: the connection uses TLS and trusts only "
        "it (deploy/README.md, TLS between hosts).",
    )
    nats_tls_cert: str | None = env(
        "NATS_TLS_CERT", None, doc="this process's client certificate (PEM), for a NATS that verifies clients."
    )
    nats_tls_key: str | None = env("NATS_TLS_KEY", None, doc="the private key (PEM) of NATS_TLS_CERT.")
    secret_key: str = env(
        "LLMCT_SECRET_KEY", "", doc="signs access tokens; every service that checks callers must share it."
    )
    bind_host: str = env("LLMCT_BIND_HOST", "127.0.0.1", doc="address internal services listen on.")
    public_host: str = env("LLMCT_PUBLIC_HOST", "127.0.0.1", doc="address the gateway listens on.")
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    """LLMCT_<SERVICE>_PORT: port of each service (`ports_from_env`)."""
    service_urls: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """LLMCT_<SERVICE>_URLS: the replicas of a service the gateway forwards to, when it runs more than one
    (`urls_from_env`); else its one port on LLMCT_BIND_HOST."""
    storage: StoragePaths
    """HOST_BASE_PATH, LOG_BASE_PATH, HF_CACHE_PATH: the shared folders (`storage_from_env`)."""
    storage_mode: StorageMode = env(
        "LLMCT_STORAGE_MODE",
        "shared",
        doc="`shared`: one folder at the same path everywhere; `objects`: jobs' files travel in NATS buckets "
        "(services/common/storage.py).",
    )

    nats_replicas: int = env(
        "LLMCT_NATS_REPLICAS",
        1,
        doc="copies JetStream keeps of every platform stream, key-value and object bucket: 1 on one node, 3 on a "
        "3-node cluster (`make up` with LLMCT_NATS_NODES=3 sets it).",
    )

    def service_url(self, name: str) -> str:
        """Internal base URL of a service."""
        return f"http://{self.bind_host}:{self.ports[name]}"

    def upstreams(self, name: str) -> tuple[str, ...]:
        """Base URLs of every replica of a service: LLMCT_<NAME>_URLS, else its one `service_url`."""
        return self.service_urls.get(name) or (self.service_url(name),)


def storage_from_env(environ: Mapping[str, str] | None = None) -> StoragePaths:
    """Storage paths from HOST_BASE_PATH, LOG_BASE_PATH, HF_CACHE_PATH and LLMCT_STATE_PATH."""
    environ = os.environ if environ is None else environ
    base = Path(environ.get("HOST_BASE_PATH") or REPO_ROOT / "cloud-llm").resolve()
    return StoragePaths(
        base=base,
        logs=Path(environ.get("LOG_BASE_PATH") or base / "logs").resolve(),
        hf_cache=Path(environ.get("HF_CACHE_PATH") or base / "hf-cache").resolve(),
        state_dir=Path(environ["LLMCT_STATE_PATH"]).resolve() if environ.get("LLMCT_STATE_PATH") else None,
    )


def ports_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Each service's port: LLMCT_<NAME>_PORT, else its default."""
    environ = os.environ if environ is None else environ
    return {name: int(environ.get(f"LLMCT_{name.upper()}_PORT") or port) for name, port in DEFAULT_PORTS.items()}


def urls_from_env(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """The replicas of each service that has LLMCT_<NAME>_URLS (comma-separated base URLs, no trailing slash)."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in DEFAULT_PORTS:
        urls = tuple(u.strip().rstrip("/") for u in (environ.get(f"LLMCT_{name.upper()}_URLS") or "").split(","))
        if urls := tuple(u for u in urls if u):
            found[name] = urls
    return found


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment (uncached; tests use this)."""
    return from_env(
        Settings,
        environ,
        ports=ports_from_env(environ),
        service_urls=urls_from_env(environ),
        storage=storage_from_env(environ),
    )


S = TypeVar("S", bound=Settings)


def settings_for(cls: type[S], base: Settings | None = None, environ: Mapping[str, str] | None = None) -> S:
    """A service's settings (`cls`, a subclass of `Settings`): `base` itself when it already is one, else the
    shared fields of `base` (or of the environment) with the service's own read from the environment."""
    if isinstance(base, cls):
        return base
    base = base or settings_from_env(environ)
    return from_env(cls, environ, **{item.name: getattr(base, item.name) for item in fields(Settings)})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's shared settings, built once (the `llmct` command)."""
    return settings_from_env()
