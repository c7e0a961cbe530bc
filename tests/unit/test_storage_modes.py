"""The storage modes' shared part (services/common/storage.py): a dispatch rendered under the control plane's base
is read under the agent's own in `objects` mode, and only whole leading folders move; an old dispatch (before
issue 15's fields) still decodes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml

from services.common import contracts, storage

pytestmark = pytest.mark.unit


def test_only_a_whole_leading_folder_moves():
    assert storage.rebase("/srv/llm/data/a.jsonl", "/srv/llm", "/gpu/base") == "/gpu/base/data/a.jsonl"
    assert storage.rebase("/srv/llm", "/srv/llm/", "/gpu/base") == "/gpu/base"
    assert storage.rebase("/srv/llm2/data", "/srv/llm", "/gpu/base") == "/srv/llm2/data"
    assert storage.rebase("Qwen/Qwen2.5-0.5B", "/srv/llm", "/gpu/base") == "Qwen/Qwen2.5-0.5B"
    assert storage.rebase("/srv/llm/x", "", "/gpu/base") == "/srv/llm/x"


def test_an_order_is_read_under_the_agents_base():
    config = {"model_name_or_path": "/srv/llm/models/tiny", "dataset_dir": "/srv/llm/data", "lora_target": "all"}
    config["eval"] = ["/srv/llm/evaluation/x", 3]
    order = contracts.JobDispatched(
        job_id="job_1",
        kind="train",
        stages=(
            contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml=yaml.dump(config)),
        ),
        output_dir="/srv/llm/output/job_1",
        dispatched_at=datetime.now(UTC),
        storage_base="/srv/llm",
    )
    moved = storage.localize(order, Path("/gpu/base"))
    assert moved.output_dir == "/gpu/base/output/job_1"
    assert yaml.safe_load(moved.stages[0].config_yaml) == {
        "model_name_or_path": "/gpu/base/models/tiny",
        "dataset_dir": "/gpu/base/data",
        "lora_target": "all",
        "eval": ["/gpu/base/evaluation/x", 3],
    }
    unmoved = msgspec.structs.replace(order, storage_base="")
    assert storage.localize(unmoved, Path("/gpu/base")) is unmoved, "shared mode: as sent"


def test_a_dispatch_from_before_the_storage_fields_still_decodes():
    old = (
        b'{"type":"job_dispatched","job_id":"job_1","kind":"train","stages":[],"output_dir":"/o",'
        b'"dispatched_at":"2026-01-01T00:00:00Z"}'
    )
    order = contracts.decode(old)
    assert isinstance(order, contracts.JobDispatched)
    assert (order.inputs, order.files, order.storage_base) == ((), (), "")
