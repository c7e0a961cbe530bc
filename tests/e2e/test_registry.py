"""The registry through the whole platform: a real tiny LoRA training registers its adapter, with lineage."""

import pytest

from .helpers import TRAIN, admin_token, login, registered, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_a_trained_adapter_appears_with_its_lineage(gw, stack, tiny_model):
    owner_name = unique("registry-owner")
    owner = await login(gw, stack.invite_code, owner_name)
    r = await gw.post("/api/jobs", json={**TRAIN, "max_steps": 2, "save_steps": 2}, headers=owner)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, owner, r.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job["message"]

    adapter = await registered(gw, owner, job["id"])
    assert adapter["kind"] == "lora" and adapter["base_model"] == tiny_model and adapter["owner"] == owner_name
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
    other = await login(gw, stack.invite_code, unique("registry-other"))
    assert (await gw.get(f"/api/models/{adapter['id']}", headers=other)).status_code == 404
    assert (await gw.get(f"/api/models/{adapter['id']}/lineage", headers=other)).status_code == 404
    assert (await gw.patch(f"/api/models/{adapter['id']}", json={"name": "mine"}, headers=other)).status_code == 404
    listing = (await gw.get("/api/models", headers=other, params={"limit": 200})).json()
    assert adapter["id"] not in [m["id"] for m in listing["items"]]
    theirs = (await gw.get(f"/api/models/{preset_id}/lineage", headers=other)).json()
    assert adapter["id"] not in [d["id"] for d in theirs["descendants"]]
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": adapter["name"]}, headers=other)
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "unknown_model",
        "field": "base_model",
        "message": f"model {adapter['name']!r} is not a preset or one of your models",
    }

    # The owner renames it; the lineage follows the id, not the name.
    new_name = unique("my-first-adapter")
    r = await gw.patch(f"/api/models/{adapter['id']}", json={"name": new_name}, headers=owner)
    assert r.status_code == 200 and r.json()["name"] == new_name


async def test_a_retired_preset_is_refused_for_new_jobs(gw, stack, tiny_model):
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    user = await login(gw, stack.invite_code, unique("registry-retired"))
    tiny = (await gw.get("/api/models", headers=user, params={"q": tiny_model, "source": "preset"})).json()["items"]
    path = next(m["path"] for m in tiny if m["name"] == tiny_model)
    name = unique("retire-me")
    r = await gw.post("/api/models", json={"name": name, "path": path, "parameter_count": 1000}, headers=admin)
    assert r.status_code == 201, r.text
    preset = r.json()
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": name, "max_steps": 1}, headers=user)
    assert r.status_code == 201, r.text
    await gw.post(f"/api/jobs/{r.json()['id']}/cancel", headers=user)

    r = await gw.patch(f"/api/models/{preset['id']}", json={"retired": True}, headers=admin)
    assert r.status_code == 200 and r.json()["retired_at"]
    r = await gw.post("/api/jobs", json={**TRAIN, "base_model": name}, headers=user)
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_retired", r.text
    assert r.json()["error"]["field"] == "base_model"
    # Still there for what already used it.
    assert (await gw.get(f"/api/models/{preset['id']}", headers=user)).json()["retired_at"]
    assert (await gw.patch(f"/api/models/{preset['id']}", json={"retired": False}, headers=user)).status_code == 403
