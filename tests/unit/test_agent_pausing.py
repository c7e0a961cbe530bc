"""The pause's files in a job's output folder (services/agent/pausing.py): the job owns that folder, so the agent
never writes through a link it left there and reads the engine's answer as the job's word."""

from __future__ import annotations

import json

import pytest

from services.agent import pausing

pytestmark = pytest.mark.unit


def test_asking_makes_the_file_and_never_writes_through_a_link_the_job_left(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    assert pausing.ask(output) and (output / pausing.PAUSE_FILE).is_file()
    pausing.clear(output)
    agents_file = tmp_path / "agent-secret"
    agents_file.write_text("keep")
    (output / pausing.PAUSE_FILE).symlink_to(agents_file)
    assert pausing.ask(output), "there already: the engine sees it (a link is only a name)"
    assert agents_file.read_text() == "keep"
    pausing.clear(output)
    assert not (output / pausing.PAUSE_FILE).is_symlink() and agents_file.read_text() == "keep"


@pytest.mark.parametrize(
    "text, step",
    [
        (json.dumps({"step": 42, "checkpoint": "/x/checkpoint-42"}), 42),
        (json.dumps({"step": -1}), None),
        (json.dumps({"step": True}), None),
        (json.dumps({"step": "42"}), None),
        (json.dumps([42]), None),
        ("{" + " " * 10_000 + '"step": 3}', None),  # more than 4 KiB: not read whole, not JSON
        ("not json", None),
    ],
)
def test_the_paused_file_gives_only_a_plain_step(tmp_path, text, step):
    (tmp_path / pausing.PAUSED_FILE).write_text(text)
    assert pausing.paused_step(tmp_path) == step


def test_a_paused_file_that_is_a_link_is_not_read(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"step": 7}))
    output = tmp_path / "out"
    output.mkdir()
    (output / pausing.PAUSED_FILE).symlink_to(target)
    assert pausing.paused_step(output) is None
    assert pausing.paused_step(tmp_path / "none") is None
