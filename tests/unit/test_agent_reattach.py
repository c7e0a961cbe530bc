"""What an agent keeps to pick its jobs up after a restart, and what it decides on start, without NATS or Docker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from services.agent import progress, reattach
from services.agent.logs import LogShipper
from services.agent.runner import Runner
from services.agent.runtimes.base import Reattachable
from services.agent.runtimes.process import ProcessRuntime
from services.agent.savedjob import SavedJob, count_lines
from services.common import contracts
from services.common.settings import StoragePaths

from .helpers import FakeJetStream, FakeRuntime, found

pytestmark = pytest.mark.unit


def order_of(job_id: str, stages: int = 1) -> contracts.JobDispatched:
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n")
    return contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=(stage,) * stages,
        output_dir="/o",
        gpu_ids=(1,),
        dispatched_at=datetime.now(UTC),
    )


async def test_a_shipper_numbers_on_and_cuts_what_was_never_shipped(tmp_path):
    log_file = tmp_path / "job_1.log"
    log_file.write_bytes(b"[platform] start\none\ntwo, written but never shipped\n")
    shipped = []
    js = FakeJetStream()
    shipper = LogShipper(
        js,
        "job_1",
        log_file,
        agent_id="gpu-1",
        attempt=3,
        seq=2,
        keep_bytes=len(b"[platform] start\none\n"),
        on_shipped=lambda *args: shipped.append(args),
    )
    shipper.add("stdout", "two", {"at": 2})
    shipper.add("system", "a note")  # no mark: the last mark stands
    await shipper.close()
    assert log_file.read_bytes() == b"[platform] start\none\ntwo\n[platform] a note\n"
    [(subject, batch)] = js.published
    assert subject == "job.logs.gpu-1.job_1", "its own ingest subject, never logs.<job>"
    assert [(line.seq, line.text) for line in batch.lines] == [(3, "two"), (4, "a note")]
    assert batch.attempt == 3, "the relay copies only the job's current attempt"
    assert shipped == [(4, log_file.stat().st_size, {"at": 2})]


async def test_closing_lets_a_batch_being_sent_finish_so_the_mark_keeps_up_with_the_numbers(tmp_path):
    class SlowJetStream(FakeJetStream):
        async def publish(self, subject, data, **_):
            await asyncio.sleep(0.05)
            await super().publish(subject, data)

    shipped = []
    js = SlowJetStream()
    shipper = LogShipper(
        js, "job_1", tmp_path / "job_1.log", agent_id="gpu-1", on_shipped=lambda *args: shipped.append(args)
    )
    for i in range(5):
        shipper.add("stdout", str(i), {"line": i})
    await asyncio.sleep(0.12)  # the flusher is sending them now
    shipper.add("stdout", "5", {"line": 5})
    await shipper.close()
    assert [line.seq for _, batch in js.published for line in batch.lines] == [1, 2, 3, 4, 5, 6]
    seq, _, mark = shipped[-1]
    assert (seq, mark) == (6, {"line": 5})


async def test_a_fresh_shipper_appends_and_starts_at_one(tmp_path):
    log_file = tmp_path / "job_1.log"
    log_file.write_bytes(b"an earlier attempt\n")
    js = FakeJetStream()
    shipper = LogShipper(js, "job_1", log_file, agent_id="gpu-1")
    shipper.add("stderr", "ü\r")
    await shipper.close()
    assert log_file.read_bytes() == "an earlier attempt\nü\r\n".encode()
    assert [line.seq for line in js.published[0][1].lines] == [1]


def test_job_state_round_trip_and_forget(tmp_path):
    folder = tmp_path / "agents" / "a1"
    state = SavedJob.begin(folder, order_of("job_1", stages=2))
    state.shipped(12, 340, {"container": "c1", "stdout": [5, 1], "stderr": [0, 0]})
    state.progress_read(99)
    state.mark_started()
    loaded = SavedJob.load(folder, "job_1")
    assert loaded.order == state.order and len(loaded.order.stages) == 2
    assert (loaded.cursor.seq, loaded.cursor.log_bytes, loaded.cursor.progress_bytes, loaded.cursor.started) == (
        12,
        340,
        99,
        True,
    )
    assert loaded.cursor.engine["stdout"] == [5, 1]
    assert SavedJob.saved_jobs(folder) == ["job_1"]
    loaded.forget()
    assert SavedJob.load(folder, "job_1") is None and SavedJob.saved_jobs(folder) == []
    assert not list(folder.iterdir())


def test_without_a_folder_nothing_is_written(tmp_path):
    state = SavedJob.begin(None, order_of("job_1"))
    state.shipped(1, 10, None)
    state.mark_started()
    state.forget()
    assert state.cursor.started and not list(tmp_path.iterdir())


def test_a_broken_state_is_no_state(tmp_path):
    (tmp_path / "job_1.order").write_bytes(b"{not json")
    (tmp_path / "job_1.cursor").write_bytes(b"{}")
    assert SavedJob.load(tmp_path, "job_1") is None and SavedJob.load(tmp_path, "job_2") is None
    assert count_lines(tmp_path / "missing.log") == (0, 0)
    (tmp_path / "x.log").write_bytes(b"a\nb\n")
    assert count_lines(tmp_path / "x.log") == (2, 4)


async def test_progress_follows_from_an_offset_and_says_how_far_it_read(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    rows = [json.dumps({"current_steps": step, "total_steps": 3}) + "\n" for step in (1, 2, 3)]
    path.write_text("".join(rows) + '{"current_st')  # the engine is writing line 4
    seen, moved = [], []

    async def publish(event):
        seen.append(event.step)

    stopped = asyncio.Event()
    stopped.set()
    await progress.follow("job_1", path, publish, stopped, start=len(rows[0]), moved=moved.append)
    assert seen == [2, 3] and moved == [len("".join(rows))]
    path.write_text(rows[0])  # shorter than the offset: a new run wrote it
    seen.clear()
    await progress.follow("job_1", path, publish, stopped, start=len("".join(rows)))
    assert seen == [1]


async def test_on_start_each_leftover_gets_what_it_needs(tmp_path):
    storage = StoragePaths(base=tmp_path, logs=tmp_path / "logs", hf_cache=tmp_path / "hf")
    storage.ensure()
    folder = tmp_path / "state" / "agents" / "a1"
    running = SavedJob.begin(folder, order_of("job_run", stages=2))
    running.shipped(7, 70, {"container": "c-job_run", "stdout": [1, 1], "stderr": [0, 0]})
    SavedJob.begin(folder, order_of("job_done_unreported")).mark_started()
    SavedJob.begin(folder, order_of("job_gone")).mark_started()
    SavedJob.begin(folder, order_of("job_never_started"))
    (storage.logs / "job_old.log").write_bytes(b"one\ntwo\nthree\n")
    runtime = FakeRuntime(
        [
            found("job_run", stage=1),
            found("job_done_unreported", running=False),
            found("job_reported", running=False),
            found("job_old"),
            found("dep_1", kind="deploy"),
        ]
    )
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
        go_on=lambda state, resume: resumed.append((state, resume)),
    )
    await reattach.pick_up(runner)

    by_job = {state.order.job_id: (state, resume) for state, resume in resumed}
    assert sorted(by_job) == ["job_done_unreported", "job_old", "job_run"]  # job_reported: nothing to say
    state, resume = by_job["job_run"]
    assert resume.stage == 1 and state.cursor.seq == 7 and "still running" in resume.note
    assert ("job_run", {"container": "c-job_run", "stdout": [1, 1], "stderr": [0, 0]}) in runtime.attached
    assert "exited meanwhile" in by_job["job_done_unreported"][1].note
    old, _ = by_job["job_old"]  # started by an agent before saved states: numbered on from its log file
    assert (old.cursor.seq, old.cursor.log_bytes) == (3, 14)
    assert (old.order.gpu_ids, old.order.output_dir) == ((0,), "/o/job_old")
    assert dict(runtime.attached)["job_old"]["since"] > 0
    assert runtime.stopped == ["dep_1"]
    failed = {e.job_id: e.reason for e in events if isinstance(e, contracts.JobFinished)}
    assert failed == {"dep_1": "agent_restarted", "job_gone": "container_lost"}
    assert SavedJob.saved_jobs(folder) == ["job_done_unreported", "job_run"]  # reported and never-started forgotten
    assert (storage.logs / "dep_1.log").read_text().startswith("[platform] job failed: the agent restarted")


def test_a_runtime_whose_engines_die_with_the_agent_picks_nothing_up(tmp_path):
    storage = StoragePaths(base=tmp_path, logs=tmp_path / "logs", hf_cache=tmp_path / "hf")
    process = Runner(
        nc=None, js=None, agent_id="a1", runtime=ProcessRuntime(tmp_path / "bin"), storage=storage, engine_env={}
    )
    assert not isinstance(process.runtime, Reattachable)
    assert (process.reattachable, process.keeps_engines, process.state_dir) == (None, False, None)
    found_again = Runner(nc=None, js=None, agent_id="a.1", runtime=FakeRuntime([]), storage=storage, engine_env={})
    assert found_again.reattachable is found_again.runtime and found_again.keeps_engines
    assert found_again.state_dir == storage.state / "agents" / "a_1"
    assert not found_again.state_dir.is_relative_to(storage.base), "the state is kept out of what jobs see"


async def test_a_runtime_that_cannot_list_its_engines_still_lets_the_agent_start(tmp_path):
    class Broken(FakeRuntime):
        async def find_own(self):
            raise ConnectionError("no Docker engine")

    runtime = Broken([])
    agent = reattach.Agent(
        runtime=runtime, state_dir=tmp_path, storage=None, agent_id="a1", js=None, publish=None, go_on=None
    )
    await reattach.pick_up(agent)  # logged, nothing raised
    assert runtime.attached == [] and runtime.stopped == []
