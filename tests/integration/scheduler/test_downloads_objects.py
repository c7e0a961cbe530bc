"""Downloads in `objects` storage mode (issue 15): the scheduler in-process with its own empty control-plane folder,
its agent elsewhere. A running job's (and deployment's) log over HTTP is its lines in LOGS, the same text and order
as the WebSocket replay sends them, across attempts; a finished job's output file and log come straight out of the
store, whole or a range, and nothing is written into the control plane's folder; a missing object is a 404."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import nats
import pytest
from litestar.testing import AsyncTestClient

from services.agent.logs import LogShipper
from services.common import objects
from services.common.contracts import Buckets
from services.common.logtext import line_text
from services.common.settings import StoragePaths
from services.gateway.logs import START, LogHub, lines_after, position_of
from services.scheduler.deployments import store as dstore
from tests.helpers import assert_error, unique

from .helpers import connect_as, job_on, move, until_relayed

pytestmark = pytest.mark.integration

CHUNK = objects.CHUNK_BYTES


@pytest.fixture(scope="module")
def control_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("control-plane") / "cloud-llm"


@pytest.fixture(scope="module")
async def scheduler(settings, control_base):
    """The scheduler in `objects` mode, its folders (logs, outputs) under `control_base`."""
    from services.scheduler.app import create_app

    storage = StoragePaths(base=control_base, logs=control_base / "logs", hf_cache=control_base / "hf-cache")
    objects_mode = dataclasses.replace(settings, storage_mode="objects", storage=storage)
    async with AsyncTestClient(app=create_app(objects_mode)) as client:
        yield client


@pytest.fixture(scope="module")
async def services_js(nats_server):
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def agent(nats_server, pool):
    """An agent on another host: its own NATS connection, and a row that stays online (no process beats for it,
    and its job must not be re-queued meanwhile); marked offline when the test ends."""
    agent_id = unique("objects-downloads")
    await pool.execute(
        "INSERT INTO agents (id, hostname, gpus, cpu_slots, last_seen) "
        "VALUES ($1, 'elsewhere', $2, 0, now() + interval '1 hour')",
        agent_id,
        [],
    )
    nc = await connect_as(nats_server, agent_id, [])
    yield agent_id, nc.jetstream()
    await nc.close()
    await pool.execute("UPDATE agents SET offline_since = now() WHERE id = $1", agent_id)


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def ship(
    js, agent_id: str, job_id: str, attempt: int, lines: list[tuple[str, str]], log_path: Path, seq: int = 0
) -> None:
    """Lines shipped the way the agent runs a job (numbered after `seq`): into its log file on the agent's host and
    to its relay."""
    shipper = LogShipper(js, job_id, log_path, agent_id=agent_id, attempt=attempt, seq=seq)
    for stream, text in lines:
        shipper.add(stream, text)
    await shipper.close()


def attempt_lines(attempt: int, count: int) -> list[tuple[str, str]]:
    """A run's lines as the agent writes them: its first line says which attempt (more than one batch of 500)."""
    return [("system", f"attempt {attempt}: train job on its agent")] + [
        ("stderr" if i % 7 == 0 else "stdout", f"attempt {attempt} line {i} ünïcode ✓") for i in range(count)
    ]


async def socket_text(js, job_id: str) -> bytes:
    """What a viewer's WebSocket replays (the gateway's own code: services/gateway/sockets.py), as log text."""
    after, text = START, []
    async for batch in LogHub(None, js).replay(job_id):  # type: ignore[arg-type]  # a replay needs no connection
        if lines := lines_after(batch, after):
            text += [line_text(line["stream"], line["text"]) for line in lines]
            after = position_of(batch)
    return "".join(text).encode()


async def test_a_running_jobs_log_is_its_lines_in_logs_across_attempts(
    scheduler, services_js, agent, pool, people, control_base, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    agent_id, agent_js = agent
    job_id = await job_on(pool, owner_id, control_base / "output", agent_id, attempt=1)
    on_agent = tmp_path / "agent-host" / f"{job_id}.log"  # the agent's own log file: the control plane never sees it
    on_agent.parent.mkdir()
    await ship(agent_js, agent_id, job_id, 1, attempt_lines(1, 700), on_agent)
    await until_relayed(services_js)
    await move(pool, job_id, agent_id, 2, "running")  # re-queued and dispatched again: numbered from 1 anew
    await ship(agent_js, agent_id, job_id, 2, attempt_lines(2, 30), on_agent)
    await until_relayed(services_js)

    url = f"/api/jobs/{job_id}/log"
    whole = await scheduler.get(url, headers=owner)
    assert whole.status_code == 200, whole.text
    assert whole.content == await socket_text(services_js, job_id) == on_agent.read_bytes()
    assert b"[platform] attempt 1:" in whole.content and b"[platform] attempt 2:" in whole.content
    assert int(whole.headers["content-length"]) == len(whole.content)
    assert whole.headers["content-disposition"] == f'attachment; filename="{job_id}.log"'

    etag, cut = whole.headers["etag"], len(whole.content) // 3
    rest = await scheduler.get(url, headers={**owner, "Range": f"bytes={cut}-", "If-Range": etag})
    assert rest.status_code == 206 and rest.headers["etag"] == etag
    assert whole.content[:cut] + rest.content == whole.content
    middle = await scheduler.get(url, headers={**owner, "Range": "bytes=10-99"})
    assert middle.status_code == 206 and middle.content == whole.content[10:100]
    past = await scheduler.get(url, headers={**owner, "Range": f"bytes={len(whole.content)}-"})
    assert_error(past, 416, "range_not_satisfiable", "Range")

    await ship(agent_js, agent_id, job_id, 2, [("stdout", "one more")], on_agent, seq=31)
    await until_relayed(services_js)
    grown = await scheduler.get(url, headers={**owner, "Range": f"bytes={cut}-", "If-Range": etag})
    assert grown.status_code == 200 and grown.headers["etag"] != etag, "the log grew: a resume starts over"
    assert grown.content == on_agent.read_bytes() and grown.content.endswith(b"\none more\n")
    assert files_in(control_base) == []
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)


async def test_a_running_deployments_log_is_its_lines_in_logs(
    scheduler, services_js, agent, pool, people, control_base, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    agent_id, agent_js = agent
    deployment_id = await job_on(pool, owner_id, control_base / "output", agent_id, attempt=1)
    await pool.execute("UPDATE jobs SET kind = 'deploy' WHERE id = $1", deployment_id)
    async with pool.acquire() as conn:
        await dstore.insert(
            conn, deployment_id=deployment_id, owner_id=owner_id, model="none", generation={}, idle_timeout_s=60
        )
    await ship(agent_js, agent_id, deployment_id, 1, [("system", "ready: the model server answers")], tmp_path / "d")
    await until_relayed(services_js)
    r = await scheduler.get(f"/api/deployments/{deployment_id}/log", headers=owner)
    assert r.status_code == 200 and r.content == b"[platform] ready: the model server answers\n", r.text
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", deployment_id)


async def stored(js, tmp_path: Path, bucket: str, name: str, data: bytes) -> str:
    """`data` put into the store as the agent does; its sha256."""
    source = tmp_path / f"source-{os.urandom(4).hex()}"
    source.write_bytes(data)
    return (await objects.put_file(js, bucket, name, source)).sha256


async def test_a_finished_jobs_files_come_straight_out_of_the_store(
    scheduler, services_js, pool, people, control_base, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, control_base / "output", "gone-agent", attempt=1, state="succeeded")
    weights = os.urandom(2 * CHUNK + 12345)
    digest = await stored(services_js, tmp_path, Buckets.OUTPUTS, f"{job_id}/adapter/weights.bin", weights)
    log = "".join(line_text("stdout", f"step {i}") for i in range(5000)).encode()
    await stored(services_js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(job_id), log)
    state = b'{"global_step": 6}'
    await stored(services_js, tmp_path, Buckets.CHECKPOINTS, f"{job_id}/checkpoint-6/trainer_state.json", state)
    base = f"/api/jobs/{job_id}/artifacts"

    whole = await scheduler.get(f"{base}/adapter/weights.bin", headers=owner)
    assert whole.status_code == 200 and whole.content == weights, whole.text
    assert whole.headers["etag"] == f'"sha256-{digest}"' == f'"sha256-{hashlib.sha256(weights).hexdigest()}"'
    across = {**owner, "Range": f"bytes={CHUNK - 5}-{2 * CHUNK + 4}", "If-Range": whole.headers["etag"]}
    part = await scheduler.get(f"{base}/adapter/weights.bin", headers=across)
    assert part.status_code == 206 and part.content == weights[CHUNK - 5 : 2 * CHUNK + 5]
    assert part.headers["content-range"] == f"bytes {CHUNK - 5}-{2 * CHUNK + 4}/{len(weights)}"
    stale = await scheduler.get(f"{base}/adapter/weights.bin", headers={**across, "If-Range": '"sha256-0"'})
    assert stale.status_code == 200 and stale.content == weights
    past = await scheduler.get(f"{base}/adapter/weights.bin", headers={**owner, "Range": f"bytes={len(weights)}-"})
    assert_error(past, 416, "range_not_satisfiable", "Range")
    assert (await scheduler.get(f"{base}/checkpoint-6/trainer_state.json", headers=owner)).content == state

    logged = await scheduler.get(f"/api/jobs/{job_id}/log", headers=owner)
    assert logged.status_code == 200 and logged.content == log
    tail = await scheduler.get(f"/api/jobs/{job_id}/log", headers={**owner, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == log[-100:]

    assert_error(await scheduler.get(f"{base}/adapter/missing.bin", headers=owner), 404, "no_such_artifact")
    assert_error(await scheduler.get(f"{base}/job.log", headers=owner), 404, "no_such_artifact")  # not an output
    assert_error(await scheduler.get(f"{base}/%2E%2E/{job_id}/job.log", headers=owner), 400, "invalid_path")
    _, other = people["fleet-other"]
    assert_error(await scheduler.get(f"{base}/adapter/weights.bin", headers=other), 404)
    assert files_in(control_base) == [], "nothing is copied into the control plane's folder"


async def test_a_finished_job_without_its_log_object_answers_its_lines_or_a_404(
    scheduler, services_js, agent, pool, people, control_base, tmp_path
):
    """A job lost with its host never put its log in the store: its lines in LOGS answer; with none, 404 no_log."""
    owner_id, owner = people["fleet-owner"]
    agent_id, agent_js = agent
    lost = await job_on(pool, owner_id, control_base / "output", agent_id, attempt=1)
    await ship(agent_js, agent_id, lost, 1, [("stdout", "last words")], tmp_path / "lost.log")
    await until_relayed(services_js)
    await pool.execute("UPDATE jobs SET state = 'failed', reason = 'agent_lost' WHERE id = $1", lost)
    r = await scheduler.get(f"/api/jobs/{lost}/log", headers=owner)
    assert r.status_code == 200 and r.content == b"last words\n", r.text

    silent = await job_on(pool, owner_id, control_base / "output", agent_id, attempt=1, state="failed")
    assert_error(await scheduler.get(f"/api/jobs/{silent}/log", headers=owner), 404, "no_log")
    assert_error(await scheduler.get(f"/api/jobs/{silent}/artifacts/model.bin", headers=owner), 404, "no_such_artifact")
    assert files_in(control_base) == []


async def test_a_finished_job_requeued_to_another_host_keeps_every_attempts_lines(
    scheduler, services_js, agent, pool, people, control_base, tmp_path
):
    """Attempt 1's host was lost with its log file; attempt 2's agent put only its own file into the store. The
    finished job's log still holds both attempts (from LOGS), and the stored file is not what answers."""
    owner_id, owner = people["fleet-owner"]
    agent_id, agent_js = agent
    job_id = await job_on(pool, owner_id, control_base / "output", agent_id, attempt=1)
    await ship(agent_js, agent_id, job_id, 1, attempt_lines(1, 40), tmp_path / "lost-host.log")
    await until_relayed(services_js)
    await move(pool, job_id, agent_id, 2, "running")
    second_host = tmp_path / "second-host.log"
    await ship(agent_js, agent_id, job_id, 2, attempt_lines(2, 10), second_host)
    await until_relayed(services_js)
    await stored(services_js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(job_id), second_host.read_bytes())
    await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", job_id)

    r = await scheduler.get(f"/api/jobs/{job_id}/log", headers=owner)
    assert r.status_code == 200, r.text
    assert b"[platform] attempt 1:" in r.content and b"attempt 1 line 39" in r.content
    assert r.content.endswith(second_host.read_bytes()) and r.content == await socket_text(services_js, job_id)
