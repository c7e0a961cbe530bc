"""Fixtures of the docker tier: a private dockerd, a registry-free engine image, the tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import docker.errors
import docker.types
import pytest

from llmct.tiny.data import write_tiny_datasets
from services.agent.runtimes.docker import DockerRuntime
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.common.security import new_id
from services.common.settings import StoragePaths
from services.common.store import create_pool
from tests.fixtures_docker import DockerEngine, build_test_image, engine_mounts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker_engine():
    """A real Docker engine of our own; the docker tier is skipped, with the reason, where none can run."""
    reason = DockerEngine.unavailable()
    if reason:
        pytest.skip(reason)
    engine = DockerEngine()
    try:
        engine.start()
    except RuntimeError as exc:  # installed but broken: that is a failure, not a skip
        pytest.fail(str(exc), pytrace=False)
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine):
    return docker_engine.client


@pytest.fixture(scope="session")
def engine_venv() -> Path:
    """The engine's own venv (engine/install.sh); missing, it fails like tests/integration/engine."""
    venv = Path(os.environ.get("LLMCT_ENGINE_VENV", ROOT / ".venv-engine"))
    if not (venv / "bin" / "llamafactory-cli").exists():
        pytest.fail(
            f"the engine environment is missing ({venv}/bin/llamafactory-cli): run engine/install.sh", pytrace=False
        )
    return venv


@pytest.fixture(scope="session")
def test_image(docker_client, engine_venv) -> str:
    """The registry-free engine image; one container is run first, so a broken engine fails here, once."""
    image = build_test_image(docker_client, engine_venv)
    usr = docker.types.Mount("/usr", "/usr", type="bind", read_only=True)
    try:
        docker_client.containers.run(image, ["true"], mounts=[usr], init=True, remove=True)
    except docker.errors.DockerException as exc:
        pytest.fail(f"the test Docker engine cannot run a container: {exc}", pytrace=False)
    return image


@pytest.fixture(scope="session")
def mounts(engine_venv) -> dict[str, str]:
    return engine_mounts(engine_venv)


@pytest.fixture(scope="session")
def storage(engine_venv):
    """The seed's layout under a temp dir, with the tiny datasets in data/ and the tiny model in models/.

    Its own folder rather than pytest's basetemp: a second pytest session started on the machine
    meanwhile prunes old basetemps, and containers would lose their mounts under them.
    """
    base = Path(tempfile.mkdtemp(prefix="llmct-docker-tests-"))
    paths = StoragePaths(base=base, logs=base / "logs", hf_cache=base / "hf-cache")
    paths.ensure()
    write_tiny_datasets(paths.data)
    done = subprocess.run(
        [str(engine_venv / "bin" / "python"), "-m", "llmct.tiny.make_model", "--out", str(paths.models / "tiny")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield paths
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def agent_id() -> str:
    return f"test-agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_runtime(docker_engine, test_image, mounts, storage, agent_id):
    """DockerRuntime against the private engine, with the test image and its read-only mounts."""

    def make(**options) -> DockerRuntime:
        defaults = {
            "storage": storage,
            "image": test_image,
            "agent_id": agent_id,
            "extra_mounts": mounts,
            "base_url": docker_engine.base_url,
            "cleanup_delay_s": 0,
        }
        return DockerRuntime(**{**defaults, **options})

    return make


@pytest.fixture
async def log_relay(nats_server, postgres_server):
    """The scheduler's log relay (services/scheduler/logs/relay.py), which copies an agent's log batches to LOGS only
    for jobs on that agent: `assign(job_id, agent_id, attempt=1)` stores such a job, as a dispatch would."""
    from services.auth.store import insert_user
    from services.scheduler.jobs import store
    from services.scheduler.logs.gate import Assignments, read_assignment
    from services.scheduler.logs.relay import LogRelay

    pool = await create_pool(postgres_server.url)
    owner_id = new_id("usr")
    await insert_user(pool, user_id=owner_id, username=f"docker-{owner_id[-8:]}", password_hash="!test", role="user")
    nc = await connect_bus(nats_server.url, "docker-log-relay")
    js = nc.jetstream()
    await ensure_streams(js)
    relay = LogRelay(nc, js, Assignments(lambda job_id: read_assignment(pool, job_id)))
    await relay.start()

    async def assign(job_id: str, agent_id: str, attempt: int = 1) -> None:
        await store.insert_job(
            pool,
            job_id=job_id,
            owner_id=owner_id,
            kind="train",
            priority=0,
            gpu_count=0,
            request={},
            config={},
            config_yaml="",
            stages=[],
            output_dir="/nonexistent",
            estimate={},
        )
        await pool.execute(
            "UPDATE jobs SET state = 'running', agent_id = $2, attempt = $3 WHERE id = $1", job_id, agent_id, attempt
        )

    yield assign
    await relay.stop()
    await close_bus(nc)
    await pool.close()
