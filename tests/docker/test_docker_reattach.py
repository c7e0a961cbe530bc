"""An agent restart with the docker runtime: the stopped runner leaves its containers running, the next
runner with the same agent id re-attaches to them (logs, progress, cancel, the final event), over a real
NATS and a real Docker engine; the log lines reach LOGS through the scheduler's relay (with a real Postgres), as
in production, so "without a gap or a repeat" is checked where viewers read."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from services.agent.runner import Runner
from services.common import contracts
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.common.contracts import Subjects

from .helpers import config_of, dispatch, events_of, lora_spec, new_job, python_spec, until_finished

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENGINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
COUNT_FOREVER = "import itertools, time\nfor i in itertools.count():\n    print(i, flush=True)\n    time.sleep(0.01)"


@pytest.fixture
async def bus(nats_server):
    """The test's own connection (events, dispatches, the LOGS stream)."""
    nc = await connect_bus(nats_server.url, "docker-reattach-test")
    js = nc.jetstream()
    await ensure_streams(js)
    yield nc, js
    await close_bus(nc)


@pytest.fixture
async def agents(nats_server, make_runtime, storage, docker_client):
    """Starts runners of one agent, each with its own NATS connection and runtime, as restarts of one
    agent process would; its own agent id, so no other test's containers are found. Every container
    of that agent is removed at the end (a stopped runner leaves them running)."""
    agent_id = f"reattach-{uuid.uuid4().hex[:8]}"
    started: list[tuple[Runner, object]] = []

    async def start() -> Runner:
        nc = await connect_bus(nats_server.url, f"agent-{agent_id}")
        runner = Runner(
            nc=nc,
            js=nc.jetstream(),
            agent_id=agent_id,
            runtime=make_runtime(agent_id=agent_id),
            storage=storage,
            engine_env=ENGINE_ENV,
        )
        await runner.start()
        started.append((runner, nc))
        return runner

    async def stop(runner: Runner) -> None:
        """Stop a runner as the agent's shutdown does: the runner, then its NATS connection."""
        nc = next(nc for r, nc in started if r is runner)
        await runner.stop()
        if nc.is_connected:
            await close_bus(nc)

    start.stop = stop
    start.agent_id = agent_id
    yield start
    for runner, nc in started:
        if not nc.is_closed:
            await runner.stop()
            await close_bus(nc)
    for container in docker_client.containers.list(all=True, filters={"label": f"llmct.agent={agent_id}"}):
        container.remove(force=True)


def containers_of(docker_client, job_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"llmct.job={job_id}"})


async def shipped_lines(js, job_id: str, log_file) -> list[contracts.LogLine]:
    """Every log line of the job in the LOGS stream, as a viewer replaying it gets them, once the relay has copied
    as many as the log file holds (or 30 s have passed)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        lines = await _stored_lines(js, job_id)
        if len(lines) >= log_file.read_bytes().count(b"\n") or asyncio.get_running_loop().time() > deadline:
            return lines
        await asyncio.sleep(0.2)


async def _stored_lines(js, job_id: str) -> list[contracts.LogLine]:
    sub = await js.subscribe(Subjects.logs(job_id), ordered_consumer=True)
    lines: list[contracts.LogLine] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1)
            except Exception:  # noqa: BLE001 - nats' timeout: the stream has nothing more
                return lines
            lines.extend(contracts.decode(msg.data).lines)
    finally:
        await sub.unsubscribe()


def assert_one_unbroken_log(lines: list[contracts.LogLine], log_file) -> None:
    """Numbered 1..n without a gap or a repeat, and the log file holds exactly the same lines."""
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    expected = "".join(f"[platform] {line.text}\n" if line.stream == "system" else f"{line.text}\n" for line in lines)
    assert log_file.read_bytes().decode() == expected  # not read_text(): tqdm lines hold \r


async def wait_for(predicate, timeout: float = 60, every: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := predicate()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(every)
    return result


async def test_a_restarted_agent_goes_on_with_its_running_training(agents, bus, storage, docker_client, log_relay):
    nc, js = bus
    job_id = new_job()
    await log_relay(job_id, agents.agent_id)
    steps = 600
    spec = lora_spec(storage, job_id, max_steps=steps, save_steps=100_000)
    queue = await events_of(nc, job_id)
    first = await agents()
    await dispatch(js, agents.agent_id, job_id, config_of(spec), spec.output_dir)
    events = []
    while not (
        isinstance(event := await asyncio.wait_for(queue.get(), 300), contracts.JobProgressed) and event.step >= 20
    ):
        assert not isinstance(event, contracts.JobFinished), (event.message, event.last_lines)
        events.append(event)
    events.append(event)

    await agents.stop(first)  # as on SIGTERM: the container goes on
    [container] = containers_of(docker_client, job_id)
    assert container.status == "running"
    await asyncio.sleep(1.5)  # lines and steps the old agent never saw

    second = await agents()
    assert job_id in second.jobs  # picked up before the dispatch consumer runs
    await dispatch(js, agents.agent_id, job_id, config_of(spec), spec.output_dir)  # a redelivery: only acked
    events += await until_finished(queue)
    await asyncio.sleep(1)
    assert queue.empty(), [type(e).__name__ for e in queue._queue]  # nothing after the one JobFinished

    finished = events[-1]
    assert (finished.state, finished.exit_code) == ("succeeded", 0), (finished.message, finished.last_lines)
    assert finished.metrics["train_loss"] > 0
    assert sum(isinstance(e, contracts.JobStarted) for e in events) == 1
    assert sum(isinstance(e, contracts.JobFinished) for e in events) == 1
    reported = [e.step for e in events if isinstance(e, contracts.JobProgressed)]
    assert set(reported) == set(range(1, steps + 1))
    assert len(reported) <= steps + 1  # the engine repeats its last step in its summary; nothing else twice
    assert [c.id for c in containers_of(docker_client, job_id)] in ([container.id], [])  # never a second one

    lines = await shipped_lines(js, job_id, storage.logs / f"{job_id}.log")
    assert_one_unbroken_log(lines, storage.logs / f"{job_id}.log")
    texts = [line.text for line in lines]
    assert any("re-attached to container" in t for t in texts) and texts[-1] == "job succeeded"
    # The trainer prints one dict per logged step: each exactly once, across the restart.
    logged = [t for t in texts if re.match(r"^\{'loss': ", t)]
    assert len(logged) == steps, len(logged)


async def test_a_re_attached_job_can_be_cancelled_and_its_output_is_unbroken(
    agents, bus, storage, docker_client, log_relay
):
    nc, js = bus
    job_id = new_job()
    await log_relay(job_id, agents.agent_id)
    queue = await events_of(nc, job_id)
    first = await agents()
    await dispatch(
        js,
        agents.agent_id,
        job_id,
        {},
        storage.output / job_id,
        kind="eval",
        commands=(("python", "-c", COUNT_FOREVER),),
    )
    assert isinstance(await asyncio.wait_for(queue.get(), 60), contracts.JobStarted)
    log_file = storage.logs / f"{job_id}.log"
    await wait_for(lambda: log_file.exists() and log_file.read_text().count("\n") > 20)
    await agents.stop(first)
    await asyncio.sleep(0.5)

    second = await agents()
    await asyncio.sleep(0.5)
    asked = asyncio.get_running_loop().time()
    await nc.publish(Subjects.job_cancel(job_id), contracts.encode(contracts.JobCancelRequested(job_id=job_id)))
    events = await until_finished(queue, 60)
    took = asyncio.get_running_loop().time() - asked
    finished = events[-1]
    assert (finished.state, finished.reason, finished.exit_code) == ("cancelled", "cancelled", 143)
    assert took < 10, f"a cancel took {took:.1f}s"
    assert not any(isinstance(e, contracts.JobStarted) for e in events)
    await wait_for(lambda: job_id not in second.jobs, 5)  # it forgets the job once JobFinished is out
    assert all(c.status == "exited" for c in containers_of(docker_client, job_id))

    lines = await shipped_lines(js, job_id, log_file)
    assert_one_unbroken_log(lines, log_file)
    counted = [int(line.text) for line in lines if line.stream == "stdout"]
    assert counted == list(range(len(counted))) and len(counted) > 100  # 0, 1, 2, ...: none lost, none twice


async def test_a_job_that_ended_while_no_agent_ran_is_reported_and_its_next_stage_runs(
    agents, bus, storage, docker_client, log_relay
):
    nc, js = bus
    job_id = new_job()
    await log_relay(job_id, agents.agent_id)
    queue = await events_of(nc, job_id)
    first = await agents()
    count = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.01)"
    await dispatch(
        js,
        agents.agent_id,
        job_id,
        {},
        storage.output / job_id,
        kind="export",
        commands=(("python", "-c", count), ("python", "-c", "print('stage two')")),
    )
    assert isinstance(await asyncio.wait_for(queue.get(), 60), contracts.JobStarted)
    await asyncio.sleep(0.5)
    await agents.stop(first)
    [container] = containers_of(docker_client, job_id)
    await wait_for(lambda: (container.reload(), container.status)[1] == "exited")

    await agents()
    finished = (await until_finished(queue, 60))[-1]
    assert (finished.state, finished.exit_code) == ("succeeded", 0), (finished.message, finished.last_lines)
    await asyncio.sleep(0.5)
    assert queue.empty()
    lines = await shipped_lines(js, job_id, storage.logs / f"{job_id}.log")
    assert_one_unbroken_log(lines, storage.logs / f"{job_id}.log")
    output = [line.text for line in lines if line.stream == "stdout"]
    assert output == [str(i) for i in range(300)] + ["stage two"]
    assert any("exited meanwhile" in line.text for line in lines)


async def test_a_deployment_found_after_a_restart_is_stopped_and_reported(
    agents, bus, storage, docker_client, make_runtime
):
    nc, js = bus
    job_id = new_job().replace("job_", "dep_")
    runtime = make_runtime(agent_id=agents.agent_id)
    run = await runtime.start(python_spec(storage, job_id, "import time; time.sleep(600)", kind="deploy"))
    assert run is not None  # a model server the last agent started, then died without stopping
    queue = await events_of(nc, job_id)

    runner = await agents()
    finished = await asyncio.wait_for(queue.get(), 30)
    assert isinstance(finished, contracts.JobFinished)
    assert (finished.state, finished.reason) == ("failed", "agent_restarted")
    assert job_id not in runner.jobs
    [container] = containers_of(docker_client, job_id)
    container.reload()
    assert container.status == "exited"
