"""GET /api/jobs/{id}/artifacts zips what the job wrote in its own folder, never what a link in it points to."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile

import pytest

from services.scheduler.jobs import artifacts

from .helpers import job_on

pytestmark = pytest.mark.integration

AGENT = "artifacts-agent"


def plant_links(folder, victim) -> None:
    """What a malicious job leaves in its output: links to a system file, to another job's folder and file, a FIFO."""
    (folder / "checkpoint-1").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "checkpoint-1" / "trainer_state.json").write_text("{}")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder / "neighbour").symlink_to(victim)
    (folder / "checkpoint-1" / "stolen.json").symlink_to(victim / "secret.json")
    os.mkfifo(folder / "pipe")


def release_readers(fifo, seconds: float = 30) -> None:
    """Close the FIFO's write end as soon as something opened it for reading: a zip that follows it then gets an
    empty entry (the test fails on the names) instead of hanging the test for ever."""

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while no reader has it open
            except OSError:
                time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()


async def test_the_zip_holds_the_jobs_own_files_and_no_link(scheduler, people, pool, tmp_path):
    owner_id, owner = people["fleet-owner"]
    victim = tmp_path / "someone-elses-job"
    victim.mkdir()
    (victim / "secret.json").write_text('{"secret": "of another user"}')
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1, state="succeeded")
    plant_links(tmp_path / job_id, victim)
    release_readers(tmp_path / job_id / "pipe")

    r = await scheduler.get(f"/api/jobs/{job_id}/artifacts", headers=owner)
    assert r.status_code == 200, r.text
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(archive.namelist()) == [
        f"{job_id}/adapter_model.safetensors",
        f"{job_id}/checkpoint-1/trainer_state.json",
    ]
    assert archive.read(f"{job_id}/adapter_model.safetensors") == b"weights"
    assert b"root:" not in r.content and b"another user" not in r.content


async def test_a_folder_of_links_only_has_no_artifacts(scheduler, people, pool, tmp_path):
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1, state="succeeded")
    (tmp_path / job_id).mkdir()
    (tmp_path / job_id / "passwd").symlink_to("/etc/passwd")
    r = await scheduler.get(f"/api/jobs/{job_id}/artifacts", headers=owner)
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_artifacts", r.text


def test_a_file_swapped_for_a_link_after_the_listing_is_not_followed(tmp_path):
    """The job still runs while its zip streams: a file listed as its own, then replaced by a link, is left empty."""
    folder = tmp_path / "job"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "log.txt").write_text("mine")
    (folder / "model.bin").write_text("mine too")
    files = artifacts.own_files(folder)
    assert files == [("model.bin",), ("sub", "log.txt")]
    (folder / "model.bin").unlink()
    (folder / "model.bin").symlink_to("/etc/passwd")
    (folder / "sub").rename(folder / "real-sub")
    (folder / "sub").symlink_to("/etc")
    body = b"".join(artifacts.artifacts_zip(folder, "job", files))
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.read("job/model.bin") == b"" and archive.read("job/sub/log.txt") == b""
    assert b"root:" not in body
