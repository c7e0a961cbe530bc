"""Message families round-trip by their tag; subjects keep the names the product owner gave."""

from datetime import UTC, datetime

import msgspec
import pytest

from services.common import contracts
from services.common.contracts import STREAMS, Subjects

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "message",
    [
        contracts.JobSubmitted(job_id="job_1", kind="train", owner_id="usr_1", priority=3, submitted_at=NOW),
        contracts.AgentHeartbeat(
            agent_id="a1",
            hostname="h",
            sent_at=NOW,
            cpu_slots=2,
            gpus=(contracts.GpuStatus(index=0, name="A10", memory_total_mb=24000),),
        ),
        contracts.LogBatch(job_id="job_1", lines=(contracts.LogLine(seq=1, stream="stdout", at=NOW, text="loss 1.0"),)),
        contracts.SessionRevoked(session_id="s1", expires_at=NOW),
        contracts.UserRevoked(user_id="usr_1", generation=2, reason="disabled"),
    ],
)
def test_messages_round_trip_by_tag(message):
    assert contracts.decode(contracts.encode(message)) == message


def test_unknown_tag_is_refused():
    with pytest.raises(msgspec.ValidationError):
        contracts.decode(b'{"type": "nope"}')


def test_fixed_subject_names():
    assert Subjects.JOB_SUBMITTED == "job.submitted"
    assert Subjects.agent_heartbeat("gpu-1") == "agent.heartbeat.gpu-1"
    assert Subjects.logs("job_9") == "logs.job_9"


def test_streams_do_not_overlap():
    """A work-queue stream refuses overlapping subjects: each subject belongs to one stream."""
    roots = [subject.split(".")[0] + "." + subject.split(".")[1] for s in STREAMS for subject in s.subjects]
    assert len(roots) == len(set(roots))
    assert len({s.name for s in STREAMS}) == len(STREAMS)
