"""What the scheduler tests share: jobs placed as if dispatched, job events, an agent's own NATS connection,
shipping and reading log lines."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
from nats.js.errors import NotFoundError

from services.agent.logs import LogShipper
from services.common import contracts
from services.common.contracts import Subjects
from services.common.nats_auth import agent_inbox_prefix
from services.common.security import new_id
from services.scheduler.jobs import store
from tests.helpers import eventually

NEVER_FITS_MB = 10_000_000  # a re-queued job must wait, not go to some other test's agent


async def job_on(pool, owner_id: str, tmp_path, agent_id: str, attempt: int, state: str = "running") -> str:
    """A job that the dispatcher sent to `agent_id` as `attempt` (inserted that way at once: never pending)."""
    job_id = new_id("job")
    async with pool.acquire() as conn, conn.transaction():
        await store.insert_job(
            conn,
            job_id=job_id,
            owner_id=owner_id,
            kind="train",
            priority=0,
            gpu_count=1,
            request={"base_model": "none"},
            config={},
            config_yaml="stage: sft\n",
            stages=[{"name": "train", "command": ["sleeper"], "config_yaml": "stage: sft\n"}],
            output_dir=str(tmp_path / job_id),
            estimate={"per_gpu_mb": NEVER_FITS_MB},
        )
        await move(conn, job_id, agent_id, attempt, state)
    return job_id


async def move(db, job_id: str, agent_id: str | None, attempt: int, state: str) -> None:
    """What a re-queue (no agent, pending) or the next dispatch (agent, attempt + 1) leaves in the row."""
    await db.execute(
        "UPDATE jobs SET state = $2, agent_id = $3, attempt = $4, gpu_ids = $5, dispatched_at = now(), "
        "started_at = CASE WHEN $2 = 'running' THEN now() END WHERE id = $1",
        job_id,
        state,
        agent_id,
        attempt,
        [0] if agent_id else [],
    )


def now() -> datetime:
    return datetime.now(UTC)


def finished(job_id: str, agent_id: str, attempt: int, state: str = "succeeded") -> contracts.JobFinished:
    return contracts.JobFinished(job_id=job_id, agent_id=agent_id, state=state, attempt=attempt, at=now())


def progressed(job_id: str, step: int, attempt: int) -> contracts.JobProgressed:
    return contracts.JobProgressed(job_id=job_id, step=step, total_steps=10, loss=1.0, attempt=attempt, at=now())


def started(job_id: str, agent_id: str, attempt: int) -> contracts.JobStarted:
    return contracts.JobStarted(job_id=job_id, agent_id=agent_id, runtime="process", attempt=attempt, at=now())


async def steps(pool, job_id: str) -> list[int]:
    return [
        r["step"] for r in await pool.fetch("SELECT step FROM job_progress WHERE job_id = $1 ORDER BY step", job_id)
    ]


async def until_progress(pool, job_id: str, step: int) -> None:
    """The scheduler handles one stream in order: once this point is in, every event sent before it was handled."""

    async def there():
        return step in await steps(pool, job_id)

    await eventually(there, timeout=15)


async def connect_as(nats_server, agent_id: str, errors: list[str]):
    creds = nats_server.add_agent(agent_id)

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats.connect(
        creds["NATS_URL"],
        user=creds["NATS_USER"],
        password=creds["NATS_PASSWORD"],
        inbox_prefix=agent_inbox_prefix(agent_id),
        error_cb=on_error,
    )


async def ship(js, agent_id: str, job_id: str, attempt: int, texts: list[str], log_path, seq: int = 0) -> None:
    """Ship lines the way an agent does (services.agent.logs.LogShipper: 500-line batches on its own subject)."""
    shipper = LogShipper(js, job_id, log_path, agent_id=agent_id, attempt=attempt, seq=seq)
    for text in texts:
        shipper.add("stdout", text)
    await shipper.close()


async def stored_lines(js, job_id: str) -> list[tuple[int, int, str]]:
    """(attempt, line number, text) of every line of the job in LOGS, in stream order, as a viewer's replay reads
    them."""
    try:
        last = (await js.get_last_msg("LOGS", Subjects.logs(job_id))).seq
    except NotFoundError:
        return []
    sub = await js.subscribe(Subjects.logs(job_id), ordered_consumer=True)
    lines = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            batch = contracts.decode(msg.data)
            lines += [(batch.attempt, line.seq, line.text) for line in batch.lines]
            if msg.metadata.sequence.stream >= last:
                return lines
    finally:
        await sub.unsubscribe()


async def until_relayed(js) -> None:
    """The relay has taken and settled everything shipped so far (nothing waits in LOG_INGEST or in a lane). Not
    num_pending: JetStream updates it a moment after a publish is acknowledged."""
    last = (await js.stream_info("LOG_INGEST")).state.last_seq

    async def settled():
        info = await js.consumer_info("LOG_INGEST", contracts.LOG_RELAY_CONSUMER)
        return info.delivered.stream_seq >= last and info.num_ack_pending == 0

    await eventually(settled, timeout=20)


async def insert_gpu_job(pool, owner_id: str, tmp_path, per_gpu_mb: int = 40_000) -> str:
    """A one-GPU job whose engine is the `sleeper` stand-in; the dispatcher places it like any other."""
    job_id = new_id("job")
    await store.insert_job(
        pool,
        job_id=job_id,
        owner_id=owner_id,
        kind="train",
        priority=0,
        gpu_count=1,
        request={"base_model": "none"},
        config={},
        config_yaml="stage: sft\n",
        stages=[{"name": "train", "command": ["sleeper"], "config_yaml": "stage: sft\n"}],
        output_dir=str(tmp_path / job_id),
        estimate={"per_gpu_mb": per_gpu_mb},
    )
    return job_id


async def job_row(pool, job_id: str):
    return await pool.fetchrow(
        "SELECT state, agent_id, gpu_ids, started_at, finished_at FROM jobs WHERE id = $1", job_id
    )


HUGE_GPU_MB = 200_000  # only the agents registered here have GPUs this large
PRIORITY = 77  # above anything other tests leave in the shared queue


async def user(pool, name: str) -> str:
    from services.auth.store import insert_user

    user_id = new_id("usr")
    await insert_user(pool, user_id=user_id, username=f"{name}-{user_id[-6:]}", password_hash="!test", role="user")
    return user_id


async def agent_row(pool, gpus: int) -> str:
    """A registered agent with big GPUs that nothing else fits on (no process: nothing consumes its dispatches)."""
    agent_id = new_id("agt")
    await pool.execute(
        "INSERT INTO agents (id, hostname, gpus, cpu_slots) VALUES ($1, 'queue-test', $2, 0)",
        agent_id,
        [{"index": i, "name": "big", "memory_total_mb": HUGE_GPU_MB} for i in range(gpus)],
    )
    return agent_id


async def pending_job(
    pool,
    owner_id: str,
    tmp_path,
    *,
    priority: int = PRIORITY,
    gpus: int = 1,
    kind: str = "train",
    stages: list | None = None,
    retries: int | None = None,
) -> str:
    job_id = new_id("job")
    stages = stages or [{"name": "train", "command": ["sleeper"], "config_yaml": "stage: sft\n"}]
    await store.insert_job(
        pool,
        job_id=job_id,
        owner_id=owner_id,
        kind=kind,
        priority=priority,
        gpu_count=gpus,
        request={"base_model": "none", **({} if retries is None else {"retries": retries})},
        config={},
        config_yaml="stage: sft\n",
        stages=stages,
        output_dir=str(tmp_path / job_id),
        estimate={"per_gpu_mb": HUGE_GPU_MB - 1000},
    )
    return job_id
