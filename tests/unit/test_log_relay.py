"""Job logs go through the scheduler's checked relay: the subjects and permissions, the agent's batches (its own
subject, the dispatch's attempt), the gate and its cache (services/scheduler/logs/gate.py), and the relay's lanes
(services/scheduler/logs/relay.py: order, duplicates, gaps, LOGS' expected last sequence) against a stand-in for
JetStream. The same against real NATS and Postgres is tests/integration/scheduler/test_log_relay.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from nats.js.errors import BadRequestError, NotFoundError

from services.agent import reattach
from services.agent.runner import Runner, RunningJob
from services.agent.savedjob import SavedJob
from services.common import contracts, nats_auth
from services.common.contracts import STREAMS, Subjects
from services.gateway.logs import follows
from services.scheduler.logs.gate import Assignments
from services.scheduler.logs.order import DUPLICATE, GAP, NEXT, Tip, placement, tip_of
from services.scheduler.logs.relay import EXPECT_LAST, LogRelay

from .helpers import FakeJetStream, FakeRuntime, OneRunRuntime, found, matches, storage_in

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# --- subjects, streams, permissions ------------------------------------------------------------


def test_an_agent_ships_on_a_subject_naming_itself_that_no_log_reader_sees():
    subject = Subjects.job_logs("gpu-1", "job_9")
    assert subject == "job.logs.gpu-1.job_9"
    assert Subjects.job_logs_sender(subject) == ("gpu-1", "job_9")
    streams = {s.name: s for s in STREAMS}
    assert any(matches(f, subject) for f in streams["LOG_INGEST"].subjects)
    assert not any(matches(f, subject) for f in streams["LOGS"].subjects), "viewers never see unchecked batches"
    assert not any(matches(f, Subjects.logs("job_9")) for f in streams["LOG_INGEST"].subjects)
    for other in STREAMS:  # one stream per subject: JetStream refuses overlapping ones
        if other.name != "LOG_INGEST":
            assert not any(matches(f, subject) for f in other.subjects), other.name


@pytest.mark.parametrize(
    "subject",
    [
        "job.logs.gpu-1",
        "job.logs.gpu-1.job_9.x",
        "job.logs..job_9",
        "logs.job_9",
        "job.status.gpu-1.job_9",
        "job.logsx.gpu-1.job_9",
    ],
)
def test_a_subject_that_is_not_an_ingest_subject_names_no_sender(subject):
    assert Subjects.job_logs_sender(subject) is None


def test_an_agent_may_ship_logs_only_as_itself_and_never_write_a_log_directly():
    allowed = nats_auth.agent_permissions("gpu-1")["publish"]["allow"]
    assert any(matches(p, Subjects.job_logs("gpu-1", "job_9")) for p in allowed)
    for forged in (
        Subjects.job_logs("gpu-2", "job_9"),
        Subjects.job_logs("gpu-10", "job_9"),
        Subjects.logs("job_9"),
        "logs.in.gpu-1.job_9",
    ):
        assert not any(matches(p, forged) for p in allowed), forged


def test_a_batch_from_before_attempts_decodes_with_attempt_zero():
    old = b'{"type":"log_batch","job_id":"j","lines":[[1,"stdout","2026-11-26T12:00:00Z","hi"]]}'
    batch = contracts.decode(old)
    assert isinstance(batch, contracts.LogBatch) and batch.attempt == 0


# --- the agent's side --------------------------------------------------------------------------


async def test_a_run_ships_its_lines_on_the_agents_subject_with_the_dispatchs_attempt(tmp_path):
    js = FakeJetStream()
    runner = Runner(
        nc=None, js=js, agent_id="gpu-1", runtime=OneRunRuntime(), storage=storage_in(tmp_path), engine_env={}
    )
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n")
    order = contracts.JobDispatched(
        job_id="job_1", kind="train", stages=(stage,), output_dir=str(tmp_path / "out"), attempt=3, dispatched_at=NOW
    )
    await runner._run(order, RunningJob(order.job_id, order.kind, saved=SavedJob.begin(None, order)))
    batches = [(subject, e) for subject, e in js.published if isinstance(e, contracts.LogBatch)]
    assert batches and {subject for subject, _ in batches} == {"job.logs.gpu-1.job_1"}
    assert {b.attempt for _, b in batches} == {3}
    assert "step 1" in [line.text for _, b in batches for line in b.lines]


async def test_a_restarted_agent_ships_a_lost_jobs_last_line_with_the_saved_attempt(tmp_path):
    folder = tmp_path / "state"
    stage = contracts.EngineStage(name="train", command=("x",), config_yaml="")
    order = contracts.JobDispatched(
        job_id="job_gone", kind="train", stages=(stage,), output_dir="/o", attempt=5, dispatched_at=NOW
    )
    SavedJob.begin(folder, order).mark_started()
    js = FakeJetStream()

    async def publish(event, must_arrive=False):
        pass

    runner = SimpleNamespace(
        runtime=FakeRuntime([replace(found("dep_1", kind="deploy"), attempt=6)]),
        state_dir=folder,
        storage=storage_in(tmp_path),
        agent_id="a1",
        js=js,
        publish=publish,
        go_on=lambda state, resume: None,
    )
    await reattach.pick_up(runner)
    shipped = {b.job_id: (subject, b.attempt) for subject, b in js.published}
    assert shipped == {"job_gone": ("job.logs.a1.job_gone", 5), "dep_1": ("job.logs.a1.dep_1", 6)}


# --- where a batch goes after the job's last one in LOGS ---------------------------------------


@pytest.mark.parametrize(
    "tip, batch, where",
    [
        (Tip(), (1, 1, 500), NEXT),  # the job's first lines
        (Tip(), (1, 501, 900), GAP),  # lines 1-500 are still on their way
        (Tip(7, 1, 500), (1, 501, 900), NEXT),
        (Tip(7, 1, 500), (1, 1, 500), DUPLICATE),  # a redelivery of what LOGS has
        (Tip(7, 1, 500), (1, 200, 300), DUPLICATE),
        (Tip(7, 1, 500), (1, 400, 600), NEXT),  # overlaps: relayed unchanged, viewers skip the lines they saw
        (Tip(7, 1, 500), (1, 502, 900), GAP),
        (Tip(7, 1, 500), (2, 1, 10), NEXT),  # a new attempt numbers from 1
        (Tip(7, 1, 500), (2, 11, 20), GAP),
        (Tip(7, 2, 10), (1, 501, 600), DUPLICATE),  # an older attempt after a newer one: never
        (Tip(7, 0, 500), (1, 501, 600), NEXT),  # stored before batches had attempts, then re-attached: numbered on
        (Tip(7, 0, 500), (1, 1, 10), NEXT),  # stored before, then a new run
        (Tip(7, 0, 500), (1, 300, 400), DUPLICATE),
    ],
)
def test_placement(tip, batch, where):
    assert placement(tip, *batch) == where


def test_the_tip_is_read_from_a_stored_batch_without_decoding_its_text():
    batch = contracts.LogBatch(
        job_id="j",
        attempt=3,
        lines=tuple(contracts.LogLine(seq=i, stream="stdout", at=NOW, text="x" * 100) for i in range(5, 505)),
    )
    assert tip_of(42, contracts.encode(batch)) == Tip(42, 3, 504)
    old = b'{"type":"log_batch","job_id":"j","lines":[[7,"stdout","2026-11-26T12:00:00Z","hi"]]}'
    assert tip_of(9, old) == Tip(9, 0, 7), "stored before batches had attempts"
    assert tip_of(10, b"not json") == Tip(10)


# --- the gate and its cache ---------------------------------------------------------------------


class Rows:
    """The jobs table as the gate reads it, counting reads."""

    def __init__(self, **jobs):
        self.jobs = dict(jobs)
        self.reads = 0

    async def read(self, job_id):
        self.reads += 1
        job = self.jobs.get(job_id)
        return None if job is None else {"agent_id": job[0], "attempt": job[1]}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def of(attempt):
    return SimpleNamespace(attempt=attempt)


async def test_the_gate_reads_a_job_once_for_many_batches():
    rows = Rows(job_1=("a", 2))
    gate = Assignments(rows.read, clock=Clock())
    for _ in range(1000):
        assert await gate.refusal("job_1", "a", of(2)) is None
    assert rows.reads == 1


async def test_the_gate_refuses_another_agent_an_old_attempt_and_unknown_jobs_from_the_cache():
    rows = Rows(job_1=("a", 2))
    gate = Assignments(rows.read, clock=Clock())
    assert "not on this agent" in await gate.refusal("job_1", "b", of(2))
    assert "attempt 1" in await gate.refusal("job_1", "a", of(1))
    assert "attempt 0" in await gate.refusal("job_1", "a", of(0))
    assert "no such job" in await gate.refusal("job_x", "a", of(1))
    assert rows.reads == 2, "refusals are cached too (job_1 once, job_x once)"


async def test_a_batch_of_a_newer_attempt_is_judged_on_a_fresh_read():
    """Dispatched again (attempt 3, to agent b) before the announcement reached the relay: b's first lines pass."""
    rows = Rows(job_1=("a", 2))
    gate = Assignments(rows.read, clock=Clock())
    assert await gate.refusal("job_1", "a", of(2)) is None
    rows.jobs["job_1"] = ("b", 3)
    assert await gate.refusal("job_1", "b", of(3)) is None
    assert "not on this agent" in await gate.refusal("job_1", "a", of(2)), "the old run is refused from then on"
    assert rows.reads == 2


async def test_a_forgotten_job_is_read_again_so_a_requeue_stops_its_old_agent_at_once():
    rows = Rows(job_1=("a", 2))
    gate = Assignments(rows.read, clock=Clock())
    assert await gate.refusal("job_1", "a", of(2)) is None
    rows.jobs["job_1"] = (None, 2)  # re-queued: on no agent, same attempt until the next dispatch
    assert await gate.refusal("job_1", "a", of(2)) is None, "the cache still says a until it hears of the change"
    gate.forget("job_1")
    assert "it is on none" in await gate.refusal("job_1", "a", of(2))
    rows.jobs["job_1"] = ("a", 3)
    gate.clear()
    assert "attempt 2" in await gate.refusal("job_1", "a", of(2))
    assert rows.reads == 3


async def test_an_entry_is_read_again_when_it_is_old():
    rows, clock = Rows(job_1=("a", 2)), Clock()
    gate = Assignments(rows.read, clock=clock, ttl_s=30)
    await gate.refusal("job_1", "a", of(2))
    clock.now += 29
    await gate.refusal("job_1", "a", of(2))
    assert rows.reads == 1
    clock.now += 2
    rows.jobs["job_1"] = (None, 2)
    assert await gate.refusal("job_1", "a", of(2)) is not None
    assert rows.reads == 2


async def test_an_agent_cannot_make_the_gate_read_more_than_its_share():
    rows, clock = Rows(job_1=("a", 2)), Clock()
    gate = Assignments(rows.read, clock=clock, reads_per_s=5)
    for i in range(50):  # made-up jobs, and made-up newer attempts of a real one
        await gate.refusal(f"job_fake_{i}", "evil", of(1))
        await gate.refusal("job_1", "evil", of(100 + i))
    assert rows.reads == 5
    assert await gate.refusal("job_1", "a", of(2)) is None, "another agent's share is its own"
    refused = await gate.refusal("job_fake_99", "evil", of(1))
    assert "look-ups" in refused
    clock.now += 1
    assert "no such job" in await gate.refusal("job_fake_99", "evil", of(1)), "a second later it may read again"


async def test_the_cache_keeps_only_the_newest_entries():
    rows = Rows(**{f"job_{i}": ("a", 1) for i in range(10)})
    gate = Assignments(rows.read, clock=Clock(), max_entries=4)
    for i in range(10):
        await gate.refusal(f"job_{i}", "a", of(1))
    assert len(gate._entries) == 4 and list(gate._entries) == ["job_6", "job_7", "job_8", "job_9"]


# --- the relay's lanes, against a stand-in for JetStream ----------------------------------------


class FakeLogs:
    """LOGS as the relay uses it: publish with an expected last subject sequence, read the last message."""

    def __init__(self):
        self.stored: list[tuple[int, str, bytes]] = []
        self.fail_next = 0

    def last(self, subject):
        return max(((seq, data) for seq, s, data in self.stored if s == subject), default=None)

    async def publish(self, subject, data, timeout=None, headers=None):
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise TimeoutError("nats: timeout")
        last = self.last(subject)
        if int(headers[EXPECT_LAST]) != (last[0] if last else 0):
            raise BadRequestError(code=400, err_code=10071, description=f"wrong last sequence: {last}")
        self.stored.append((len(self.stored) + 1, subject, data))
        return SimpleNamespace(seq=len(self.stored))

    async def get_last_msg(self, stream, subject):
        last = self.last(subject)
        if last is None:
            raise NotFoundError(code=404, err_code=10037, description="no message found")
        return SimpleNamespace(seq=last[0], data=last[1])

    def lines(self, job_id):
        return [
            line.seq
            for _, s, data in self.stored
            if s == Subjects.logs(job_id)
            for line in contracts.decode(data).lines
        ]


class FakeMsg:
    def __init__(self, agent_id, job_id, attempt, first, last, subject=None):
        lines = tuple(
            contracts.LogLine(seq=i, stream="stdout", at=NOW, text=f"line {i}") for i in range(first, last + 1)
        )
        self.subject = subject or Subjects.job_logs(agent_id, job_id)
        self.data = contracts.encode(contracts.LogBatch(job_id=job_id, attempt=attempt, lines=lines))
        self.acked = self.termed = False

    async def ack(self):
        self.acked = True

    async def term(self):
        self.termed = True

    async def in_progress(self):
        pass


@pytest.fixture
async def relay():
    logs = FakeLogs()
    rows = Rows(job_1=("a", 2), job_2=("b", 1))
    relay = LogRelay(nc=None, js=logs, gate=Assignments(rows.read), hold_s=0.6)
    relay.logs, relay.rows = logs, rows
    yield relay
    await relay.stop()


async def settled(relay, *msgs, timeout=3.0):
    async def all_done():
        while not all(m.acked or m.termed for m in msgs):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_done(), timeout)


async def test_the_right_agents_batches_are_relayed_unchanged_and_in_order(relay):
    msgs = [FakeMsg("a", "job_1", 2, 1 + 100 * i, 100 * (i + 1)) for i in range(5)]
    for msg in msgs:
        await relay.take(msg)
    await settled(relay, *msgs)
    assert relay.logs.lines("job_1") == list(range(1, 501))
    assert [data for _, _, data in relay.logs.stored] == [m.data for m in msgs], "the bytes as shipped"
    assert relay.rows.reads == 1


async def test_another_agents_an_old_attempts_and_malformed_batches_are_dropped_and_acked(relay, caplog):
    good = FakeMsg("a", "job_1", 2, 1, 10)
    bad = [
        FakeMsg("b", "job_1", 2, 11, 20),  # the other agent, for the job of a
        FakeMsg("a", "job_1", 1, 1, 10),  # the job's agent, an attempt it no longer runs
        FakeMsg("a", "job_2", 1, 1, 10),
    ]  # a job that is b's
    wrong_job = FakeMsg("a", "job_1", 2, 11, 20, subject=Subjects.job_logs("a", "job_2"))
    for msg in [*bad, good, wrong_job]:
        await relay.take(msg)
    await settled(relay, good, wrong_job, *bad)
    assert relay.logs.lines("job_1") == list(range(1, 11)) and relay.logs.lines("job_2") == []
    assert all(m.acked for m in bad) and wrong_job.termed
    assert relay.counts["refused"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "services.scheduler.logs.relay"]
    assert any("from agent b for job job_1" in w and "not on this agent" in w for w in warnings), warnings


async def test_warnings_about_one_agent_are_limited(relay, caplog):
    msgs = [FakeMsg("b", "job_1", 2, i, i) for i in range(1, 51)]
    for msg in msgs:
        await relay.take(msg)
    await settled(relay, *msgs)
    warnings = [r for r in caplog.records if r.name == "services.scheduler.logs.relay"]
    assert len(warnings) == 1 and relay.counts["refused"] == 50


async def test_a_redelivered_batch_is_dropped(relay):
    first, again, second = (
        FakeMsg("a", "job_1", 2, 1, 10),
        FakeMsg("a", "job_1", 2, 1, 10),
        FakeMsg("a", "job_1", 2, 11, 20),
    )
    await relay.take(first)
    await settled(relay, first)
    await relay.take(again)
    await relay.take(second)
    await settled(relay, again, second)
    assert relay.logs.lines("job_1") == list(range(1, 21)) and relay.counts["duplicates"] == 1


async def test_a_batch_after_a_gap_waits_for_the_ones_before_it(relay):
    """A relay died holding lines 1-20; the next gets 21-30 first, and 1-20 again only after JetStream's ack wait."""
    later = FakeMsg("a", "job_1", 2, 21, 30)
    await relay.take(later)
    await asyncio.sleep(0.2)
    assert relay.logs.stored == [] and not later.acked
    earlier = [FakeMsg("a", "job_1", 2, 1, 10), FakeMsg("a", "job_1", 2, 11, 20)]
    for msg in earlier:
        await relay.take(msg)
    await settled(relay, later, *earlier)
    assert relay.logs.lines("job_1") == list(range(1, 31)) and relay.counts["gaps"] == 0


async def test_a_gap_that_is_never_filled_holds_the_lines_after_it_only_a_while(relay):
    msgs = [FakeMsg("a", "job_1", 2, 1, 10), FakeMsg("a", "job_1", 2, 21, 30), FakeMsg("a", "job_1", 2, 31, 40)]
    for msg in msgs:
        await relay.take(msg)
    await settled(relay, msgs[0])
    await asyncio.sleep(0.3)
    assert relay.logs.lines("job_1") == list(range(1, 11)), "held"
    await settled(relay, *msgs)
    assert relay.logs.lines("job_1") == [*range(1, 11), *range(21, 41)] and relay.counts["gaps"] == 1


async def test_a_batch_lands_only_right_after_the_one_it_was_placed_after(relay):
    """Another relay (another scheduler) stored lines 11-20 meanwhile: the publish is refused, the tip read again,
    and what LOGS already has is not stored twice."""
    await relay.take(first := FakeMsg("a", "job_1", 2, 1, 10))
    await settled(relay, first)
    other = FakeMsg("a", "job_1", 2, 11, 20)
    relay.logs.stored.append((len(relay.logs.stored) + 1, Subjects.logs("job_1"), other.data))
    mine = [FakeMsg("a", "job_1", 2, 11, 20), FakeMsg("a", "job_1", 2, 21, 30)]
    for msg in mine:
        await relay.take(msg)
    await settled(relay, *mine)
    assert relay.logs.lines("job_1") == list(range(1, 31))


async def test_a_publish_that_fails_is_retried_and_nothing_after_it_overtakes_it(relay):
    relay.logs.fail_next = 3
    msgs = [FakeMsg("a", "job_1", 2, 1 + 10 * i, 10 * (i + 1)) for i in range(3)]
    for msg in msgs:
        await relay.take(msg)
    await settled(relay, *msgs, timeout=5)
    assert relay.logs.lines("job_1") == list(range(1, 31))


async def test_one_jobs_held_lane_does_not_hold_another_job(relay):
    held = FakeMsg("a", "job_1", 2, 50, 60)
    other = FakeMsg("b", "job_2", 1, 1, 10)
    await relay.take(held)
    await relay.take(other)
    await settled(relay, other, timeout=0.4)
    assert relay.logs.lines("job_2") == list(range(1, 11)) and not held.acked
    await settled(relay, held)


async def test_a_state_change_announced_makes_the_gate_read_the_job_again(relay):
    await relay.take(first := FakeMsg("a", "job_1", 2, 1, 10))
    await settled(relay, first)
    relay.rows.jobs["job_1"] = (None, 2)  # re-queued
    change = contracts.JobChanged(job_id="job_1", state="pending", at=NOW)
    await relay._on_change(SimpleNamespace(data=contracts.encode(change)))
    await relay.take(late := FakeMsg("a", "job_1", 2, 11, 20))
    await settled(relay, late)
    assert relay.logs.lines("job_1") == list(range(1, 11))


async def test_a_progress_point_announced_keeps_the_cache(relay):
    await relay.take(first := FakeMsg("a", "job_1", 2, 1, 10))
    await settled(relay, first)
    point = contracts.JobChanged(job_id="job_1", state="running", at=NOW, progress={"step": 1})
    await relay._on_change(SimpleNamespace(data=contracts.encode(point)))
    await relay.take(second := FakeMsg("a", "job_1", 2, 11, 20))
    await settled(relay, second)
    assert relay.rows.reads == 1


def _batch(attempt: int, first: int, last: int) -> contracts.LogBatch:
    lines = tuple(contracts.LogLine(seq=i, stream="stdout", at=NOW, text="x") for i in range(first, last + 1))
    return contracts.LogBatch(job_id="j", attempt=attempt, lines=lines)


@pytest.mark.parametrize(
    ("attempt", "first", "after", "follows_it"),
    [
        (1, 1, (0, 0), True),  # the first line
        (1, 6, (1, 5), True),  # the next line
        (2, 1, (1, 300), True),  # the first line of a later attempt
        (1, 8, (1, 5), False),  # lines 6 and 7 were missed live (a gateway whose NATS node went)
        (2, 2, (1, 300), False),  # the new attempt's first line was missed
        (3, 1, (1, 300), True),
        (1, 3, (1, 5), False),  # an overlap is no gap but not a follower either: only its unseen lines go out
    ],
)
def test_a_live_batch_after_a_gap_is_told_apart(attempt, first, after, follows_it):
    assert follows(_batch(attempt, first, first + 4), after) is follows_it
