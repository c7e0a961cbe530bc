"""Fleet logic without servers: heartbeat checks and averaging, views, steps, NATS permissions, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from llmct.launcher import process_env
from services.agent.app import free_slots
from services.agent.resources import read_gpus
from services.agent.runner import consumer_name
from services.agent.settings import AgentSettings
from services.common import contracts, nats_auth
from services.common.contracts import Buckets
from services.common.errors import ApiError
from services.common.settings import from_env
from services.scheduler.fleet.heartbeats import HeartbeatRecorder, beat_from, beat_row, engines_of
from services.scheduler.fleet.routes import AgentOut, GpuOut, choose_step, summarise
from services.scheduler.settings import FleetSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def beat(agent_id: str = "gpu-1", **fields) -> contracts.AgentHeartbeat:
    return contracts.AgentHeartbeat(agent_id=agent_id, hostname="h", sent_at=NOW, **fields)


def test_a_heartbeat_speaks_only_for_the_agent_its_subject_names():
    data = contracts.encode(beat("gpu-1"))
    assert beat_from("agent.heartbeat.gpu-1", data).agent_id == "gpu-1"
    assert beat_from("agent.heartbeat.gpu-2", data) is None
    assert beat_from("agent.heartbeat.gpu-1", b'{"type": "agent_heartbeat"}') is None


def test_samples_average_the_beats_of_a_period_and_skip_missing_readings():
    recorder = HeartbeatRecorder(sample_s=10)
    gpu = {"index": 0, "name": "A100", "memory_total_mb": 80_000}
    for cpu, util, temp in ((10.0, 50.0, 60.0), (30.0, 70.0, None)):
        recorder.add(
            "agent.heartbeat.gpu-1",
            contracts.encode(
                beat(
                    cpu_pct=cpu,
                    memory_total_mb=1000,
                    running_jobs=("j1",),
                    gpus=(contracts.GpuStatus(**gpu, utilization_pct=util, temperature_c=temp),),
                )
            ),
        )
    host, gpus = recorder.take_samples(NOW)
    assert host == [("gpu-1", NOW, 2, 20.0, 0.0, 1000.0, 1.0)]
    assert gpus == [("gpu-1", NOW, 0, 2, 60.0, 0.0, 80_000.0, 60.0, None)]
    assert recorder.take_samples(NOW) == ([], []), "the next period starts empty"


def agent(
    state: str, gpus: list[str | None], cpu_slots: int = 0, cpu_busy: int = 0, engines: tuple[str, ...] = ()
) -> AgentOut:
    return AgentOut(
        id="a",
        hostname="h",
        state=state,
        draining=state == "draining",
        version="",
        runtime="process",
        engines=list(engines),
        first_seen=NOW,
        last_seen=NOW,
        last_beat_at=None,
        offline_since=None,
        gpus=[GpuOut(index=i, name="H100", memory_total_mb=80_000, job_id=j) for i, j in enumerate(gpus)],
        cpu_slots=cpu_slots,
        cpu_slots_busy=cpu_busy,
        cpu_pct=0.0,
        memory_total_mb=0,
        memory_used_mb=0,
        jobs=[],
        running_jobs=[],
        running_deployments=[],
    )


def test_the_summary_counts_gpus_by_model_and_frees_only_where_work_may_go():
    summary = summarise(
        [
            agent("online", [None, "j1"], cpu_slots=2, cpu_busy=1),
            agent("draining", [None, "j2"], cpu_slots=1),
            agent("offline", [None, None]),
        ]
    )
    assert summary.agents_online == 2
    [h100] = summary.gpus
    assert (h100.total, h100.free, h100.busy) == (4, 1, 2)
    assert (summary.cpu_slots_total, summary.cpu_slots_free) == (3, 1)


def test_the_summary_names_the_engines_of_agents_that_take_work():
    summary = summarise(
        [
            agent("online", [], engines=("llamafactory",)),
            agent("draining", [], engines=("vllm", "llamafactory")),
            agent("offline", [], engines=("vllm",)),
        ]
    )
    assert summary.engines == ["llamafactory"]
    assert summarise([agent("online", [], engines=("vllm", "llamafactory"))]).engines == ["llamafactory", "vllm"]


def test_a_heartbeat_keeps_only_the_engines_the_platform_knows_and_a_new_one_wakes_placement():
    recorder = HeartbeatRecorder(sample_s=10)
    assert engines_of(beat(engines=("llamafactory", "vllm", "vllm", "sglang\x00"))) == ["vllm", "llamafactory"]
    assert beat_row(beat(engines=("vllm",)))[-1] == ["vllm"]
    assert recorder._placement_changed([beat()])
    assert not recorder._placement_changed([beat()])
    assert recorder._placement_changed([beat(engines=("vllm",))]), "an agent that now has vLLM may take a deployment"


def test_the_step_is_round_or_the_callers_within_limits():
    assert choose_step(3600, 10, None) == 30
    assert choose_step(600, 10, None) == 10
    assert choose_step(30 * 86_400, 10, None) == 6 * 3600
    assert choose_step(3600, 10, 5) == 5
    for bad in (0, 1):
        with pytest.raises(ApiError) as caught:
            choose_step(86_400, 10, bad)
        assert caught.value.field == "step"


def test_an_agent_may_publish_only_on_its_own_subjects():
    perms = nats_auth.agent_permissions("gpu-1")
    publish, subscribe = perms["publish"]["allow"], perms["subscribe"]["allow"]
    assert "agent.heartbeat.gpu-1" in publish and not any(
        s.startswith("agent.heartbeat.") and s.endswith(">") for s in publish
    )
    assert "job.status.gpu-1.>" in publish and not any(
        s.startswith("job.status.") and s != "job.status.gpu-1.>" for s in publish
    ), "job events only as itself"
    assert "$JS.API.CONSUMER.CREATE.DISPATCH.agent-gpu-1.job.dispatch.gpu-1" in publish
    assert not any(
        verb in s for s in publish for verb in ("STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.MSG.DELETE")
    ), "an agent never creates or changes a stream"
    streams = {s.rsplit(".", 1)[1] for s in publish if ".STREAM." in s}
    assert streams == {f"OBJ_{bucket}" for bucket in Buckets.ALL}, "only the buckets' streams, to read objects"
    purged = {s for s in publish if "STREAM.PURGE" in s}
    assert purged == {f"$JS.API.STREAM.PURGE.OBJ_{b}" for b in (Buckets.OUTPUTS, Buckets.CHECKPOINTS)}
    assert not any(s.startswith((f"$O.{Buckets.DATASETS}", f"$O.{Buckets.MODELS}")) for s in publish), "read only"
    assert "deploy.gpu-1.>" in subscribe and "_INBOX.agent-gpu-1.>" in subscribe and "_INBOX.>" not in subscribe
    assert not any(s.startswith("job.dispatch") for s in subscribe)
    assert nats_auth.agent_consumer("gpu-1") == consumer_name("gpu-1")


@pytest.mark.parametrize("bad", ["a.b", "a b", "*", ">", "", "x" * 65])
def test_an_agent_id_must_be_one_subject_token(bad):
    with pytest.raises(nats_auth.BadAgentId):
        nats_auth.check_agent_id(bad)


def test_the_authorization_block_has_the_services_and_each_agent():
    users = nats_auth.authorization("svc-pw", {"b": "pw-b", "a": "pw-a"})["authorization"]["users"]
    assert [u["user"] for u in users] == [nats_auth.SERVICE_USER, "agent-a", "agent-b"]
    assert "permissions" not in users[0]


def test_free_slots_count_gpus_no_job_holds():
    gpus = tuple(contracts.GpuStatus(index=i, name="g", memory_total_mb=1) for i in range(4))
    jobs = [SimpleNamespace(gpu_ids=(0, 1)), SimpleNamespace(gpu_ids=())]
    assert free_slots(jobs, gpus, 2) == (2, 1)


def test_simulated_gpus_are_reported_when_asked():
    settings = AgentSettings.from_env({"LLMCT_SIMULATED_GPUS": "2", "LLMCT_SIMULATED_GPU_MEMORY_MB": "1000"})
    gpus = read_gpus(settings.simulated_gpus, settings.simulated_gpu_memory_mb)
    assert [(g.index, g.memory_total_mb) for g in gpus] == [(0, 1000), (1, 1000)]


def test_without_a_driver_there_are_no_gpus():
    assert isinstance(read_gpus(), tuple)  # NVML missing here: an empty tuple, never an exception


def test_the_local_agent_gets_its_own_nats_user_and_no_platform_secrets():
    env = {
        "NATS_URL": "nats://svc:secret@127.0.0.1:4222",
        "NATS_USER": "svc",
        "DATABASE_URL": "postgresql://x",
        "LLMCT_SECRET_KEY": "k",
        "LLMCT_SECRETS_KEY": "users-secrets-key",
        "LLMCT_AGENT_NATS_USER": "agent-a",
        "LLMCT_AGENT_NATS_PASSWORD": "pw",
        "PATH": "/bin",
    }
    own = process_env("agent", env)
    assert own == {"NATS_URL": "nats://127.0.0.1:4222", "NATS_USER": "agent-a", "NATS_PASSWORD": "pw", "PATH": "/bin"}
    assert process_env("scheduler", env) is env


def test_fleet_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMCT_AGENT_OFFLINE_S", "7")
    settings = from_env(FleetSettings)
    assert settings.offline_after_s == 7 and settings.remove_after_s == 86_400 and settings.sample_s == 10
