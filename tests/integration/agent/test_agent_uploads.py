"""A job's checkpoints and outputs into the store (services/agent/uploads.py, `objects` storage mode) against a
real nats-server: a checkpoint goes once whole (trainer state read, its files settled) with its trainer state last,
an unfinished one waits, one the trainer rotates out goes from the bucket once a newer one is there, and links a
job leaves in its folder are never followed."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from services.agent import uploads
from services.common import objects, storage
from services.common.contracts import Buckets
from tests.helpers import unique

from .helpers import Notes

pytestmark = pytest.mark.integration


def checkpoint(output, step: int, state: bool = True, age_s: float = 10.0) -> None:
    """A checkpoint folder as the trainer leaves it, its files written `age_s` ago."""
    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(2000))
    (folder / "tokenizer_config.json").write_text("{}")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    past = time.time() - age_s
    for path in folder.iterdir():
        os.utime(path, (past, past))


async def in_bucket(js, bucket: str, name: str) -> bool:
    try:
        await objects.describe(js, bucket, name)
    except objects.ObjectMissing:
        return False
    return True


async def test_checkpoints_go_whole_and_follow_the_trainers_rotation(js, tmp_path):
    job_id, output = unique("job"), tmp_path / "output"
    notes = Notes()
    uploader = uploads.Checkpoints(js, job_id, output, notes)
    checkpoint(output, 5)
    checkpoint(output, 10, state=False)  # still being written: no trainer state yet
    checkpoint(output, 15, age_s=0)  # its trainer state just written: LLaMA-Factory's callbacks may add files
    await uploader.sweep(final=False)
    assert uploader.done == {"checkpoint-5"} and notes == ["checkpoint-5 uploaded: 3 files, 0.0 MB"]
    name = lambda step, relative: Buckets.checkpoint_object(job_id, f"checkpoint-{step}", relative)
    assert await in_bucket(js, Buckets.CHECKPOINTS, name(5, "trainer_state.json"))
    assert await in_bucket(js, Buckets.CHECKPOINTS, name(5, "tokenizer_config.json"))

    await uploader.sweep(final=True)  # the engine exited: what is whole goes
    assert uploader.done == {"checkpoint-5", "checkpoint-15"}
    assert not await in_bucket(js, Buckets.CHECKPOINTS, name(10, "adapter_model.safetensors"))

    shutil.rmtree(output / "checkpoint-5")  # save_total_limit: the trainer deleted it
    await uploader.sweep(final=False)
    assert not await in_bucket(js, Buckets.CHECKPOINTS, name(5, "trainer_state.json"))
    assert not await in_bucket(js, Buckets.CHECKPOINTS, name(5, "adapter_model.safetensors"))
    assert notes.saying("checkpoint-5, deleted by the trainer, removed from the store")
    shutil.rmtree(output / "checkpoint-15")
    await uploader.sweep(final=True)
    assert await in_bucket(js, Buckets.CHECKPOINTS, name(15, "trainer_state.json")), "the newest always stays"


async def test_links_a_job_leaves_are_never_followed(js, tmp_path):
    job_id, output = unique("job"), tmp_path / "output"
    secret = tmp_path / "agent-secret"
    secret.write_text("the agent's own file")
    checkpoint(output, 1)
    (output / "checkpoint-1" / "stolen.bin").symlink_to(secret)
    (output / "results.json").write_text("{}")
    (output / "stolen.txt").symlink_to(secret)
    (output / "folder").symlink_to(tmp_path)  # a folder link: its files are outside too

    await uploads.Checkpoints(js, job_id, output, Notes()).sweep(final=True)
    count, _ = await uploads.upload_outputs(js, job_id, output)
    assert count == 1 and await in_bucket(js, Buckets.OUTPUTS, Buckets.job_object(job_id, "results.json"))
    for bucket, name in (
        (Buckets.CHECKPOINTS, Buckets.checkpoint_object(job_id, "checkpoint-1", "stolen.bin")),
        (Buckets.OUTPUTS, Buckets.job_object(job_id, "stolen.txt")),
        (Buckets.OUTPUTS, Buckets.job_object(job_id, "folder/agent-secret")),
        (Buckets.OUTPUTS, Buckets.job_object(job_id, "checkpoint-1/trainer_state.json")),
    ):
        assert not await in_bucket(js, bucket, name), name

    with pytest.raises(FileNotFoundError):  # swapped for a link after the folder was read
        uploads.open_inside(output / "stolen.txt", output)
    with pytest.raises(FileNotFoundError):  # reached through a folder link
        uploads.open_inside(output / "folder" / "agent-secret", output)


async def test_the_newest_whole_checkpoint_in_the_store_is_what_a_resume_gets(js, tmp_path):
    job_id, output = unique("job"), tmp_path / "output"
    assert await storage.stored_checkpoint(js, job_id, f"output/{job_id}") is None
    checkpoint(output, 5)
    checkpoint(output, 10)
    await uploads.Checkpoints(js, job_id, output, Notes()).sweep(final=True)
    partial = output / "checkpoint-15" / "adapter_model.safetensors"  # its upload broke off before its trainer state
    partial.parent.mkdir()
    partial.write_bytes(b"half")
    await objects.put_file(
        js, Buckets.CHECKPOINTS, Buckets.checkpoint_object(job_id, "checkpoint-15", partial.name), partial
    )

    step, inputs = await storage.stored_checkpoint(js, job_id, f"output/{job_id}") or (0, ())
    assert step == 10
    assert [item.path for item in inputs] == [
        f"output/{job_id}/checkpoint-10/{name}"
        for name in ("adapter_model.safetensors", "tokenizer_config.json", "trainer_state.json")
    ]
    state = next(item for item in inputs if item.path.endswith("trainer_state.json"))
    assert state.sha256 == objects.file_sha256(output / "checkpoint-10" / "trainer_state.json")
    assert await storage.stored_checkpoint(js, unique("job"), "output/x") is None, "another job's are not its"
