"""GET /api/jobs/{id}/artifacts zips what the job wrote in its own folder, never what a link in it points to."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile

import pytest

from services.common import archive, folders

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


async def zipped(layout: archive.Layout, start: int = 0, stop: int | None = None, crcs=None) -> bytes:
    """Bytes [start, stop) of an archive, read as a range request would (a fresh CRC cache: another process)."""
    stop = layout.size if stop is None else stop
    read = archive.reader(layout, crcs or archive.CrcCache())
    return b"".join([piece async for piece in read(start, stop - start)])


async def test_a_file_swapped_for_a_link_after_the_listing_is_not_followed(tmp_path):
    """The job still runs while its zip streams: a file listed as its own, then replaced by a link, ends the download
    (the client sees it broken, and a resume with If-Range starts over: the folder's ETag changed)."""
    folder = tmp_path / "job"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "log.txt").write_text("mine")
    (folder / "model.bin").write_text("mine too")
    files = folders.own_files(folder)
    assert files == [("model.bin",), ("sub", "log.txt")]
    layout = archive.plan(folder, "job", files)
    (folder / "model.bin").unlink()
    (folder / "model.bin").symlink_to("/etc/passwd")
    (folder / "sub").rename(folder / "real-sub")
    (folder / "sub").symlink_to("/etc")
    got: list[bytes] = []
    with pytest.raises(archive.ArchiveChanged):
        async for piece in archive.reader(layout, archive.CrcCache())(0, layout.size):
            got.append(piece)
    assert b"root:" not in b"".join(got)
    with pytest.raises(archive.ArchiveChanged):
        await zipped(layout, layout.central_at)  # the central directory needs every CRC: the link is not read either
    assert archive.plan(folder, "job", folders.own_files(folder)).etag != layout.etag


def output_folder(tmp_path):
    folder = tmp_path / "out"
    (folder / "checkpoint-6").mkdir(parents=True)
    (folder / "checkpoint-6" / "adapter_model.safetensors").write_bytes(os.urandom(3 * archive.READ_BYTES + 5))
    (folder / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6}')
    (folder / "empty.txt").write_bytes(b"")
    (folder / "résultats.json").write_text("{}")
    return folder


async def test_the_zip_is_known_before_it_is_read_and_any_cut_resumes(tmp_path):
    folder = output_folder(tmp_path)
    layout = archive.plan(folder, "job-1", folders.own_files(folder))
    body = await zipped(layout)
    assert len(body) == layout.size
    again = archive.plan(folder, "job-1", folders.own_files(folder))  # reading it moved atimes: not in the zip
    shape = [(m.name, m.offset, m.size, m.stat.st_ino, m.stat.st_mtime_ns) for m in layout.members]
    assert (again.etag, again.size) == (layout.etag, layout.size), "the same folder, the same zip"
    assert [(m.name, m.offset, m.size, m.stat.st_ino, m.stat.st_mtime_ns) for m in again.members] == shape
    zipped_files = zipfile.ZipFile(io.BytesIO(body))
    assert zipped_files.testzip() is None  # every CRC right
    for path in (p for p in folder.rglob("*") if p.is_file()):
        assert zipped_files.read(f"job-1/{path.relative_to(folder)}") == path.read_bytes()

    weights = next(m for m in layout.members if m.parts[-1] == "adapter_model.safetensors")
    cuts = {1, 29, weights.offset + 3, weights.data_at + 1, weights.data_at + archive.READ_BYTES + 7}
    cuts |= {weights.descriptor_at + 5, layout.central_at, layout.central_at + 50, layout.size - 30, layout.size - 1}
    for cut in sorted(cuts):
        assert await zipped(layout, 0, cut) + await zipped(layout, cut) == body, cut
    assert await zipped(layout, weights.data_at, weights.descriptor_at) == weights_bytes(folder)


def weights_bytes(folder) -> bytes:
    return (folder / "checkpoint-6" / "adapter_model.safetensors").read_bytes()


async def test_the_zip_answers_a_range_and_a_stale_if_range(scheduler, people, pool, tmp_path):
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1, state="succeeded")
    (tmp_path / job_id).rename(tmp_path / "gone") if (tmp_path / job_id).exists() else None
    output_folder(tmp_path).rename(tmp_path / job_id)
    whole = await scheduler.get(f"/api/jobs/{job_id}/artifacts", headers=owner)
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == len(whole.content)
    etag = whole.headers["etag"]
    cut = len(whole.content) // 2
    rest = await scheduler.get(
        f"/api/jobs/{job_id}/artifacts", headers={**owner, "Range": f"bytes={cut}-", "If-Range": etag}
    )
    assert rest.status_code == 206 and whole.content[:cut] + rest.content == whole.content
    (tmp_path / job_id / "more.txt").write_text("written since")
    stale = await scheduler.get(
        f"/api/jobs/{job_id}/artifacts", headers={**owner, "Range": f"bytes={cut}-", "If-Range": etag}
    )
    assert stale.status_code == 200 and f"{job_id}/more.txt" in zipfile.ZipFile(io.BytesIO(stale.content)).namelist()


async def test_one_output_file_is_reached_without_a_link_or_a_way_out(scheduler, people, pool, tmp_path):
    """Straight to the scheduler (the gateway already refuses encoded dot-segments): dot-segments are a 400, a link
    anywhere on the way a 404, and only the job's own file is sent."""
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1, state="succeeded")
    victim = tmp_path / "someone-elses-job"
    victim.mkdir()
    (victim / "secret.json").write_text('{"secret": "of another user"}')
    plant_links(tmp_path / job_id, victim)
    base = f"/api/jobs/{job_id}/artifacts"
    assert (await scheduler.get(f"{base}/adapter_model.safetensors", headers=owner)).content == b"weights"
    for escape in (
        "%2E%2E/someone-elses-job/secret.json",
        "checkpoint-1/%2E%2E/%2E%2E/x",
        "%2E/adapter_model.safetensors",
    ):
        r = await scheduler.get(f"{base}/{escape}", headers=owner)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path", (escape, r.text)
    for link in ("passwd", "neighbour/secret.json", "checkpoint-1/stolen.json", "pipe", "checkpoint-1"):
        r = await scheduler.get(f"{base}/{link}", headers=owner)
        assert r.status_code == 404 and b"root:" not in r.content and b"another user" not in r.content, link
