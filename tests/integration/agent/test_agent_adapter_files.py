"""An adapter a deployment loads at run time in `objects` storage mode (services/agent/objectsmode.py,
StoredAdapters): its files come from the store into the cache like a job's inputs, at its folder under the agent's
own base, held while the engine holds it; a missing object is a load failure that names it."""

from __future__ import annotations

import pytest

from services.agent.adapters import AdapterLoadFailed
from services.agent.objectsmode import ObjectsStorage, StoredAdapters
from services.common import objects
from services.common.contracts import AdapterRef

from .helpers import Notes, stored_input

pytestmark = pytest.mark.integration


async def test_an_adapters_files_are_fetched_into_the_agents_base_and_go_when_it_is_unloaded(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "output/job_a1/adapter_model.safetensors", size=4096)
    notes = Notes()
    adapters = StoredAdapters(ObjectsStorage(js, base, cache), "dep_1", "/control/cloud-llm", notes)
    ref = AdapterRef(name="alice/a1", adapter_path="/control/cloud-llm/output/job_a1", inputs=[item])

    folder = await adapters.bring(ref)
    assert folder == str(base / "output" / "job_a1"), "the control plane's path read under the agent's base"
    assert objects.file_sha256(base / item.path) == item.sha256
    assert cache.entries[item.sha256].holders == {"dep_1/adapter/alice/a1"}
    await adapters.release(ref)
    assert not (base / item.path).exists() and not cache.entries[item.sha256].holders


async def test_an_adapter_whose_files_are_not_in_the_store_fails_to_load_naming_them(js, make_cache, tmp_path):
    item = await stored_input(js, tmp_path, "output/job_gone/adapter_model.safetensors", size=1024)
    missing = AdapterRef(
        name="a2",
        adapter_path="/c/output/job_gone",
        inputs=[type(item)(bucket=item.bucket, name="no-such-object", sha256="0" * 64, size=1, path=item.path)],
    )
    adapters = StoredAdapters(ObjectsStorage(js, tmp_path / "base", make_cache()), "dep_2", "/c", Notes())
    with pytest.raises(AdapterLoadFailed, match="no-such-object"):
        await adapters.bring(missing)
