"""Job events name their sender and attempt: the subject an agent publishes on, what its NATS user may publish, what
the scheduler accepts (services/scheduler/jobs/events.py), and that the agent stamps every event with the dispatch's
attempt. No servers; the same rules against real NATS and Postgres are in tests/integration/scheduler."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from services.agent import reattach
from services.agent.runner import Runner, RunningJob
from services.agent.runtimes.base import ExitInfo
from services.agent.savedjob import SavedJob
from services.agent.serving import ModelServer
from services.common import contracts, nats_auth
from services.common.consumers import Ack, Delivery
from services.common.contracts import STREAMS, Subjects
from services.scheduler.jobs.events import refusal
from services.scheduler.jobs.store import Assignment

from .helpers import FakeJetStream, FakeRuntime, OneRunRuntime, found, matches, storage_in

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_job_event_subject_names_the_agent_then_the_job():
    subject = Subjects.job_status("gpu-1", "job_9")
    assert subject == "job.status.gpu-1.job_9"
    assert Subjects.job_status_sender(subject, "job_9") == "gpu-1"
    assert matches(Subjects.job_status_of("job_9"), subject) and not matches(Subjects.job_status_of("job_8"), subject)
    [events] = [s for s in STREAMS if s.name == "JOB_EVENTS"]
    assert any(matches(filter_, subject) for filter_ in events.subjects), "the stream still holds it"
    assert matches(Subjects.JOB_STATUS_ALL, subject), "the consumers' filter still takes it"


@pytest.mark.parametrize(
    "subject",
    [
        "job.status.job_9",  # the old form: no agent
        "job.status.gpu-1.job_8",  # another job
        "job.status.gpu.1.job_9",  # an agent id is one token
        "job.status..job_9",
        "job.statusx.gpu-1.job_9",
        "logs.gpu-1.job_9",
    ],
)
def test_a_subject_that_is_not_an_agents_for_this_job_names_no_sender(subject):
    assert Subjects.job_status_sender(subject, "job_9") is None


def test_an_agent_may_publish_events_only_as_itself():
    allowed = nats_auth.agent_permissions("gpu-1")["publish"]["allow"]
    assert any(matches(p, Subjects.job_status("gpu-1", "job_9")) for p in allowed)
    for forged in (Subjects.job_status("gpu-2", "job_9"), "job.status.job_9", "job.status.gpu-10.job_9"):
        assert not any(matches(p, forged) for p in allowed), forged


def finished(agent_id: str = "a", attempt: int = 2) -> contracts.JobFinished:
    return contracts.JobFinished(job_id="job_1", agent_id=agent_id, state="succeeded", attempt=attempt, at=NOW)


def progressed(attempt: int = 2) -> contracts.JobProgressed:
    return contracts.JobProgressed(job_id="job_1", step=3, total_steps=10, attempt=attempt, at=NOW)


JOB = Assignment(agent_id="a", attempt=2)


def test_the_jobs_agent_for_its_attempt_is_heard():
    assert refusal(finished(), "a", JOB) is None
    assert refusal(progressed(), "a", JOB) is None
    usage = contracts.DeploymentUsage(job_id="job_1", requests=1, tokens=2, last_request_at=NOW, attempt=2)
    assert refusal(usage, "a", JOB) is None


@pytest.mark.parametrize(
    "event, sender, job, why",
    [
        (finished("b"), "b", JOB, "not on this agent"),  # another agent
        (progressed(), "b", JOB, "not on this agent"),
        (finished("a"), "b", JOB, "not on this agent"),  # another agent claiming the job's agent
        (finished("b"), "a", JOB, "claims to come from agent b"),  # the right subject, another agent in the body
        (finished(attempt=1), "a", JOB, "attempt 1"),  # the run before, on the same agent
        (progressed(attempt=1), "a", JOB, "attempt 1"),
        (finished(attempt=0), "a", JOB, "attempt 0"),  # an event that does not say
        (finished(), "a", Assignment(agent_id=None, attempt=2), "none"),  # re-queued: on no agent now
        (finished(), "a", None, "no such job"),
        (finished(), None, JOB, "subject"),
    ],
)
def test_anything_else_is_refused_saying_why(event, sender, job, why):
    reason = refusal(event, sender, job)
    assert reason is not None and why in reason


async def test_every_event_of_a_run_goes_on_the_agents_subject_with_the_dispatchs_attempt(tmp_path):
    js, runtime = FakeJetStream(), OneRunRuntime()
    runner = Runner(nc=None, js=js, agent_id="gpu-1", runtime=runtime, storage=storage_in(tmp_path), engine_env={})
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n")
    order = contracts.JobDispatched(
        job_id="job_1", kind="train", stages=(stage,), output_dir=str(tmp_path / "out"), attempt=3, dispatched_at=NOW
    )
    job = RunningJob(order.job_id, order.kind, saved=SavedJob.begin(None, order))
    await runner._run(order, job)

    events = [(subject, event) for subject, event in js.published if not isinstance(event, contracts.LogBatch)]
    assert [type(e).__name__ for _, e in events] == ["JobStarted", "JobProgressed", "JobFinished"]
    assert {subject for subject, _ in events} == {"job.status.gpu-1.job_1"}
    assert {e.attempt for _, e in events} == {3}
    assert runtime.specs[0].attempt == 3, "a container is labelled with it (re-attached jobs report it)"


class HeldEngine:
    """Runs until stopped."""

    def __init__(self):
        self.stopped = asyncio.Event()

    async def lines(self):
        yield "stdout", "working"
        await self.stopped.wait()

    async def wait(self):
        return ExitInfo(exit_code=143)

    async def stop(self, grace_s):
        self.stopped.set()


async def test_a_newer_attempt_dispatched_to_the_same_agent_replaces_the_old_run(tmp_path):
    """The scheduler re-queued the job (it had not heard from this agent) and dispatched it here again: it now
    hears only attempt 2, so attempt 1 stops unreported and attempt 2 runs and reports."""
    js, held = FakeJetStream(), HeldEngine()

    class Runtime(OneRunRuntime):
        async def start(self, spec):
            return held if spec.attempt == 1 else await super().start(spec)

    runner = Runner(nc=None, js=js, agent_id="gpu-1", runtime=Runtime(), storage=storage_in(tmp_path), engine_env={})
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n")
    orders = [
        contracts.JobDispatched(
            job_id="job_1",
            kind="train",
            stages=(stage,),
            output_dir=str(tmp_path / "o"),
            attempt=attempt,
            dispatched_at=NOW,
        )
        for attempt in (1, 2)
    ]
    delivery = Delivery(subject="job.dispatch.gpu-1", num_delivered=1)
    outcomes = [
        await runner.on_dispatch(order, delivery)  # the second, a redelivery of the attempt it runs: only acked
        for order in (orders[0], orders[0], orders[1])
    ]
    assert held.stopped.is_set() and outcomes == [Ack(), Ack(), Ack()]
    await runner.jobs["job_1"].task

    events = [(type(e).__name__, e.attempt) for subject, e in js.published if not isinstance(e, contracts.LogBatch)]
    assert events == [("JobStarted", 1), ("JobStarted", 2), ("JobProgressed", 2), ("JobFinished", 2)]
    assert "job_1" not in runner.jobs


async def test_a_deployments_reports_carry_the_attempt(tmp_path):
    sent = []

    async def publish(event, must_arrive=False):
        sent.append(event)

    server = ModelServer(
        nc=None,
        deployment_id="dep_1",
        agent_id="gpu-1",
        publish=publish,
        note=lambda _: None,
        options=contracts.ServeOptions(startup_timeout_s=1, idle_timeout_s=1),
        attempt=4,
    )
    server.usage.count("u1", None, 3, 7)
    server.usage.count("u1", None, 1, 0)
    await server._report_usage()
    await server._http.aclose()
    assert [(type(e).__name__, e.attempt) for e in sent] == [("DeploymentUsage", 4)]


async def test_a_restarted_agent_reports_with_the_saved_or_labelled_attempt(tmp_path):
    storage = storage_in(tmp_path)
    folder = tmp_path / "state"
    stage = contracts.EngineStage(name="train", command=("x",), config_yaml="")
    order = contracts.JobDispatched(
        job_id="job_gone", kind="train", stages=(stage,), output_dir="/o", attempt=5, dispatched_at=NOW
    )
    SavedJob.begin(folder, order).mark_started()
    runtime = FakeRuntime([replace(found("dep_1", kind="deploy"), attempt=6), replace(found("job_old"), attempt=7)])
    events, resumed = [], []

    async def publish(event, must_arrive=False):
        events.append(event)

    runner = SimpleNamespace(
        runtime=runtime,
        state_dir=folder,
        storage=storage,
        agent_id="a1",
        js=FakeJetStream(),
        publish=publish,
        go_on=lambda state, resume: resumed.append(state),
    )
    await reattach.pick_up(runner)
    assert {e.job_id: e.attempt for e in events} == {"job_gone": 5, "dep_1": 6}
    assert [(s.order.job_id, s.order.attempt) for s in resumed] == [("job_old", 7)]
