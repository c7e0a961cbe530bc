"""The registry through the whole platform: a real tiny LoRA training registers its adapter, with lineage."""

import asyncio

import pytest

from .helpers import admin_token, login, wait_for_state
from .test_training import TRAIN

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def registered(gw, headers, job_id: str, timeout: float = 30, source: str = "train") -> dict:
    """The model a job produced, once the registry has it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = (await gw.get("/api/models", headers=headers, params={"source": source, "q": job_id[-8:]})).json()
        found = [m for m in page["items"] if m["job_id"] == job_id]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id}'s output never appeared: {page}"
        await asyncio.sleep(0.5)


async def test_a_trained_adapter_appears_with_its_lineage(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, "registry-owner")
    r = await gw.post("/api/jobs", json={**TRAIN, "max_steps": 2, "save_steps": 2}, headers=owner)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, owner, r.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job["message"]

    adapter = await registered(gw, owner, job["id"])
    assert adapter["kind"] == "lora" and adapter["base_model"] == tiny_model and adapter["owner"] == "registry-owner"
    assert adapter["datasets"] == ["tiny_sft"] and adapter["path"] == job["config"]["output_dir"]
    assert adapter["details"]["dataset_keys"] == job["config"]["dataset"].split(",")
    assert adapter["size_bytes"] > 0 and adapter["details"]["adapter_parameter_count"] > 0
    assert adapter["visibility"] == "private" and adapter["usable_for"] == ["eval", "export", "deploy"]
    lineage = (await gw.get(f"/api/models/{adapter['id']}/lineage", headers=owner)).json()
    assert [a["name"] for a in lineage["ancestors"]] == [tiny_model]
    preset_id = lineage["ancestors"][0]["id"]
    down = (await gw.get(f"/api/models/{preset_id}/lineage", headers=owner)).json()
    assert adapter["id"] in [d["id"] for d in down["descendants"]]

    # An adapter is no base for training: the owner is told to export it first.
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": adapter["name"]}, headers=owner)
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_not_trainable", r.text
    assert r.json()["error"]["field"] == "base_model"

    # To anyone else it does not exist.
    other = await login(gw, stack.invite_code, "registry-other")
    assert (await gw.get(f"/api/models/{adapter['id']}", headers=other)).status_code == 404
    assert (await gw.get(f"/api/models/{adapter['id']}/lineage", headers=other)).status_code == 404
    assert (await gw.patch(f"/api/models/{adapter['id']}", json={"name": "mine"}, headers=other)).status_code == 404
    listing = (await gw.get("/api/models", headers=other, params={"limit": 200})).json()
    assert adapter["id"] not in [m["id"] for m in listing["items"]]
    theirs = (await gw.get(f"/api/models/{preset_id}/lineage", headers=other)).json()
    assert adapter["id"] not in [d["id"] for d in theirs["descendants"]]
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": adapter["name"]}, headers=other)
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "unknown_model", "field": "base_model",
        "message": f"model {adapter['name']!r} is not a preset or one of your models"}

    # The owner renames it; the lineage follows the id, not the name.
    r = await gw.patch(f"/api/models/{adapter['id']}", json={"name": "my-first-adapter"}, headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "my-first-adapter"


async def test_a_retired_preset_is_refused_for_new_jobs(gw, stack, tiny_model):
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    user = await login(gw, stack.invite_code, "registry-retired")
    tiny = (await gw.get("/api/models", headers=user, params={"q": tiny_model, "source": "preset"})).json()["items"]
    path = next(m["path"] for m in tiny if m["name"] == tiny_model)
    r = await gw.post("/api/models", json={"name": "retire-me", "path": path, "parameter_count": 1000}, headers=admin)
    assert r.status_code == 201, r.text
    preset = r.json()
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": "retire-me", "max_steps": 1}, headers=user)
    assert r.status_code == 201, r.text
    await gw.post(f"/api/jobs/{r.json()['id']}/cancel", headers=user)

    r = await gw.patch(f"/api/models/{preset['id']}", json={"retired": True}, headers=admin)
    assert r.status_code == 200 and r.json()["retired_at"]
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": "retire-me"}, headers=user)
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_retired", r.text
    assert r.json()["error"]["field"] == "base_model"
    # Still there for what already used it.
    assert (await gw.get(f"/api/models/{preset['id']}", headers=user)).json()["retired_at"]
    assert (await gw.patch(f"/api/models/{preset['id']}", json={"retired": False}, headers=user)).status_code == 403
