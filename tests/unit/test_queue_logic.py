"""The queue's pure rules: GPU quotas, wait reasons, and how a job's stages resume from a checkpoint."""

from pathlib import Path

import pytest
import yaml

from services.scheduler.jobs import queue, recovery

pytestmark = pytest.mark.unit

TRAIN = {
    "name": "train",
    "command": ["llamafactory-cli", "train"],
    "config_yaml": yaml.safe_dump({"stage": "sft", "overwrite_output_dir": True, "output_dir": "/o/job"}),
}


def test_a_gpu_quota_holds_back_only_gpu_jobs_beyond_it():
    quota = queue.Quota(max_gpus=2, max_queued=10, max_deployments=1, max_priority=0, max_run_h=24)
    assert queue.over_gpu_quota(quota, held=1, gpu_count=1) is None
    assert "2 of 2" in queue.over_gpu_quota(quota, held=2, gpu_count=1)
    assert queue.over_gpu_quota(quota, held=2, gpu_count=0) is None, "CPU jobs hold no GPU"
    assert (
        queue.over_gpu_quota(
            queue.Quota(max_gpus=None, max_queued=1, max_deployments=1, max_priority=0, max_run_h=24), 99, 8
        )
        is None
    )
    assert "CPU slot" in queue.no_room(0, 0) and "2 free GPU(s) with 9000 MB" in queue.no_room(2, 9000)


def test_the_newest_complete_checkpoint_is_picked(tmp_path: Path):
    assert recovery.latest_checkpoint(str(tmp_path)) is None and recovery.latest_checkpoint(None) is None
    for step, complete in ((3, True), (12, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert recovery.latest_checkpoint(str(tmp_path)) == (tmp_path / "checkpoint-12", 12)


def test_resuming_rewrites_only_the_training_stage():
    other = {"name": "merge", "command": ["llamafactory-cli", "export"], "config_yaml": "export_dir: /o/e\n"}
    stages, config, text = recovery.with_checkpoint([TRAIN, other], Path("/o/job/checkpoint-6"))
    first = yaml.safe_load(stages[0]["config_yaml"])
    assert first["resume_from_checkpoint"] == "/o/job/checkpoint-6" and first["overwrite_output_dir"] is False
    assert yaml.safe_load(stages[1]["config_yaml"]) == {"export_dir": "/o/e"} and config == {"export_dir": "/o/e"}
    assert text.startswith("# stage 1 of 2: train")
    again, config, _ = recovery.with_checkpoint(stages[:1], None)
    back = yaml.safe_load(again[0]["config_yaml"])
    assert "resume_from_checkpoint" not in back and back["overwrite_output_dir"] is True and config == back
