"""Session fixtures: a real nats-server and a real throwaway Postgres, migrated once."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmct.embedded import NatsServer, PostgresServer, free_port
from services.auth.settings import AuthSettings
from services.common.settings import settings_for
from services.common.store import migrate
from services.gateway.settings import GatewaySettings
from services.scheduler.settings import SchedulerSettings
from tests.fixtures_mlflow import MLFLOW, MlflowServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    server = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    # Postgres runs as its own user, which cannot enter pytest's private tmp folders.
    base = Path(tempfile.mkdtemp(prefix="llmct-pg-"))
    os.chmod(base, 0o755)
    server = PostgresServer(data_dir=base / "data", port=free_port(), database="llmct_test")
    server.start()
    migrate(server.url)
    yield server
    server.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(nats_server, postgres_server, tmp_path_factory):
    """Environment every service of a test stack shares."""
    storage = tmp_path_factory.mktemp("cloud-llm")
    env = {
        "NATS_URL": nats_server.url,
        "DATABASE_URL": postgres_server.url,
        "LLMCT_SECRET_KEY": secrets.token_hex(32),
        "LLMCT_SECRETS_KEY": secrets.token_hex(32),
        "INVITE_CODE": "test-invite",
        "LLMCT_ADMIN_USERNAME": "root-admin",
        "LLMCT_ADMIN_PASSWORD": "admin-pass-1234",
        "HOST_BASE_PATH": str(storage),
        "HF_HUB_OFFLINE": "1",
        # Every test registers from loopback: the per-client registration cap has its own test with its own cap.
        "LLMCT_REGISTER_MAX": "100000",
        # Likewise failed joins (the API fuzzer guesses join tokens): the join throttle's test sets its own limit.
        "LLMCT_JOIN_MAX_FAILURES": "100000",
        # A first delay no busy test machine outlasts between two requests, so a pause is seen as one.
        "LLMCT_LOGIN_DELAY_S": "30",
    }
    os.environ.update(env)
    return env


@dataclass(frozen=True, kw_only=True)
class StackSettings(AuthSettings, SchedulerSettings, GatewaySettings):
    """Every service's settings in one, for tests: given to any app factory, it is that service's own."""


@pytest.fixture(scope="session")
def settings(stack_env):
    return settings_for(StackSettings)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on loopback (its runs in sqlite), stopped at the end of the session."""
    if not MLFLOW.exists():
        pytest.fail(f"{MLFLOW} is missing: run tests/tools/mlflow/install.sh (make test does)")
    server = MlflowServer(folder=tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()
