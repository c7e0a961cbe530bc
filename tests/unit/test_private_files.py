"""What the platform writes about jobs and itself is its own user's only (issue 14, item 6): job logs, agents' saved
jobs and NATS users are 0600 in 0700 folders, whatever the umask, and files an older version left are narrowed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.agent.logs import LogShipper
from services.agent.savedjob import SavedJob
from services.common import contracts, nats_auth
from services.common.private import open_private, private_folder, write_private

from .helpers import FakeJetStream

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The loosest umask: modes must come from the code, not from the shell that started it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def order() -> contracts.JobDispatched:
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n")
    return contracts.JobDispatched(
        job_id="job_1", kind="train", stages=(stage,), output_dir="/o", gpu_ids=(), dispatched_at=datetime.now(UTC)
    )


async def test_a_job_log_is_its_owners_only(tmp_path):
    old = tmp_path / "job_0.log"
    old.write_bytes(b"an older version's log\n")
    old.chmod(0o644)
    for path in (tmp_path / "job_1.log", old):
        shipper = LogShipper(FakeJetStream(), path.stem, path, agent_id="gpu-1")
        shipper.add("stdout", "secret-ish output")
        await shipper.close()
        assert mode(path) == 0o600, path


def test_saved_jobs_are_private(tmp_path):
    folder = tmp_path / "state" / "agents" / "gpu-1"
    saved = SavedJob.begin(folder, order())
    saved.save()
    assert mode(folder) == 0o700
    assert {path.name: mode(path) for path in folder.iterdir()} == {"job_1.order": 0o600, "job_1.cursor": 0o600}


def test_nats_users_are_written_private_from_the_first_byte(tmp_path):
    path = nats_auth.write_config(tmp_path / "nats" / "auth.conf", "pw", {"a1": "pw2"})
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    assert not list(path.parent.glob("*.tmp"))


def test_the_helpers_narrow_what_exists(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir(mode=0o755)
    assert mode(private_folder(folder)) == 0o700
    wide = folder / "f"
    wide.write_bytes(b"x")
    wide.chmod(0o666)
    with open_private(wide) as handle:
        handle.write(b"y")
    assert mode(wide) == 0o600 and wide.read_bytes() == b"xy"
    write_private(folder / "g", b"z")
    assert mode(folder / "g") == 0o600
