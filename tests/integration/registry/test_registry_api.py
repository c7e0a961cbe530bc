"""/api/models over the real store: who sees what, sorting and filtering, presets, edits, lineage, deletion."""

import pytest

from services.common.security import new_id
from tests.helpers import assert_error

from .helpers import make_job, make_output, make_preset, make_user, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def alice(pool, settings):
    return await make_user(pool, settings)


@pytest.fixture
async def bob(pool, settings):
    return await make_user(pool, settings)


@pytest.fixture
async def admin(pool, settings):
    return await make_user(pool, settings, role="admin")


async def ids(client, headers, **params) -> list[str]:
    r = await client.get("/api/models", headers=headers, params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


async def test_reference_presets_are_loaded_at_start(client, alice):
    _, headers = alice
    r = await client.get("/api/models", headers=headers, params={"source": "preset", "q": "Qwen2.5-7B-Instruct"})
    [qwen] = r.json()["items"]
    assert qwen["hf_path"] == "Qwen/Qwen2.5-7B-Instruct" and qwen["ms_path"] == "Qwen/Qwen2.5-7B-Instruct"
    assert qwen["kind"] == "base" and qwen["visibility"] == "public" and qwen["template"] == "qwen"
    assert qwen["parameter_count"] > 7e9 and qwen["usable_for"] == ["train", "eval", "export", "deploy"]


async def test_callers_see_their_own_and_the_presets_admins_see_all(client, pool, alice, bob, admin):
    (alice_id, alice_h), (bob_id, _), (_, admin_h) = alice, bob, admin
    preset_id, _ = await make_preset(pool)
    mine, _ = await make_output(pool, alice_id, preset_id)
    theirs, _ = await make_output(pool, bob_id, preset_id)
    seen = await ids(client, alice_h, sort="created_at")
    assert mine in seen and preset_id in seen and theirs not in seen
    assert {mine, theirs, preset_id} <= set(await ids(client, admin_h))
    assert_error(await client.get(f"/api/models/{theirs}", headers=alice_h), 404, "not_found")
    assert_error(await client.get(f"/api/models/{theirs}/lineage", headers=alice_h), 404, "not_found")
    assert_error(await client.get("/api/models/mdl_missing", headers=alice_h), 404, "not_found")
    detail = (await client.get(f"/api/models/{theirs}", headers=admin_h)).json()
    assert detail["owner_id"] == bob_id and detail["usable_for"] == []  # admins see, but use by the same rule
    assert (await client.get("/api/models")).status_code == 401


@pytest.mark.parametrize("sort", ["created_at", "updated_at", "name", "size_bytes", "parameter_count"])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_every_sort_works(client, pool, alice, sort, order):
    alice_id, headers = alice
    preset_id, _ = await make_preset(pool)
    await make_output(pool, alice_id, preset_id)
    await pool.execute("UPDATE models SET size_bytes = 10 WHERE owner_id = $1", alice_id)
    r = await client.get("/api/models", headers=headers, params={"sort": sort, "order": order})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    values = [m[sort] for m in items if m[sort] is not None]
    assert values == sorted(values, reverse=order == "desc")
    assert all(m[sort] is not None for m in items[: len(values)]), "unknown values sort last"


async def test_filters_search_and_pages(client, pool, alice):
    alice_id, headers = alice
    preset_id, _ = await make_preset(pool)
    tag = unique("find")
    lora, _ = await make_output(pool, alice_id, preset_id, kind="lora", name=f"{tag}-adapter")
    full, _ = await make_output(pool, alice_id, preset_id, kind="full", name=f"{tag}-full")
    export, _ = await make_output(pool, alice_id, full, kind="quantized", source="export", name=f"{tag}-q4")
    assert set(await ids(client, headers, q=tag)) == {lora, full, export}
    assert await ids(client, headers, q=tag, kind="lora") == [lora]
    assert await ids(client, headers, q=tag, source="export") == [export]
    assert await ids(client, headers, q=f"{tag}%") == [] and await ids(client, headers, q="_" * 40) == []
    page = (
        await client.get("/api/models", headers=headers, params={"q": tag, "limit": 2, "sort": "name", "order": "asc"})
    ).json()
    assert page["total"] == 3 and page["next_page"] == 2 and len(page["items"]) == 2
    rest = (
        await client.get(
            "/api/models", headers=headers, params={"q": tag, "limit": 2, "page": 2, "sort": "name", "order": "asc"}
        )
    ).json()
    assert rest["next_page"] is None and [m["id"] for m in rest["items"]] == [export]
    empty = (await client.get("/api/models", headers=headers, params={"q": tag, "page": 9})).json()
    assert empty["items"] == [] and empty["total"] == 3


@pytest.mark.parametrize(
    "params, field",
    [
        ({"sort": "password_hash"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"kind": "adapter"}, "kind"),
        ({"source": "job"}, "source"),
        ({"page": 0}, "page"),
        ({"limit": 1000}, "limit"),
        ({"retired": "maybe"}, "retired"),
        ({"q": "x" * 200}, "q"),
    ],
)
async def test_bad_list_parameters_name_the_parameter(client, alice, params, field):
    assert_error(await client.get("/api/models", headers=alice[1], params=params), 422, "invalid_field", field)


async def test_admins_create_presets(client, alice, admin):
    name = unique("Org-Model")
    body = {"name": name, "hf_path": "org/model-7b", "parameter_count": 7_000_000_000, "template": "qwen"}
    assert_error(await client.post("/api/models", json=body, headers=alice[1]), 403, "forbidden")
    r = await client.post("/api/models", json=body, headers=admin[1])
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["source"] == "preset" and made["kind"] == "base" and made["hf_path"] == "org/model-7b"
    assert made["id"] in await ids(client, alice[1], q=name)
    assert_error(await client.post("/api/models", json=body, headers=admin[1]), 409, "name_taken", "name")


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"name": "no-source"}, "missing_location", "hf_path"),
        ({"name": "bad path", "hf_path": "a/b"}, "invalid_field", "name"),
        ({"name": "x", "hf_path": "not-a-hub-id"}, "invalid_field", "hf_path"),
        ({"name": "x", "hf_path": "https://evil/x"}, "invalid_field", "hf_path"),
        ({"name": "x", "path": "relative/dir"}, "invalid_field", "path"),
        ({"name": "x", "path": "/models/../etc"}, "invalid_field", "path"),
        ({"name": "x", "hf_path": "a/b", "parameter_count": 0}, "invalid_field", "parameter_count"),
        ({"name": "x", "hf_path": "a/b", "owner_id": "usr_1"}, "invalid_field", "owner_id"),
    ],
)
async def test_bad_presets_are_refused_naming_the_field(client, admin, body, code, field):
    assert_error(await client.post("/api/models", json=body, headers=admin[1]), 422, code, field)


async def test_preset_paths_must_lie_under_the_models_folder(client, pool, settings, admin, tmp_path):
    """An admin's preset path ends up in every job's YAML and container: none outside the models folder."""
    models = settings.storage.models
    models.mkdir(parents=True, exist_ok=True)
    inside = models / unique("inside")
    inside.mkdir()
    link_out = models / unique("link-to-etc")
    link_out.symlink_to("/etc")
    outside = tmp_path / "other-users-data"
    outside.mkdir()
    for path in ("/etc", str(outside), str(link_out), str(link_out / "ssh"), str(models) + "-evil/x"):
        body = {"name": unique("escape"), "path": path, "parameter_count": 1000}
        assert_error(await client.post("/api/models", json=body, headers=admin[1]), 422, "invalid_field", "path")
    r = await client.post(
        "/api/models", json={"name": unique("ok"), "path": str(inside), "parameter_count": 1000}, headers=admin[1]
    )
    assert r.status_code == 201, r.text
    preset_id = r.json()["id"]
    assert_error(
        await client.patch(f"/api/models/{preset_id}", json={"path": str(link_out)}, headers=admin[1]),
        422,
        "invalid_field",
        "path",
    )
    assert (await client.get(f"/api/models/{preset_id}", headers=admin[1])).json()["path"] == str(inside)


async def test_owners_rename_and_remark_their_models(client, pool, alice, bob):
    (alice_id, alice_h), (bob_id, bob_h) = alice, bob
    preset_id, preset_name = await make_preset(pool)
    model_id, _ = await make_output(pool, alice_id, preset_id)
    _, taken = await make_output(pool, alice_id, preset_id)
    new_name = unique("renamed")
    r = await client.patch(f"/api/models/{model_id}", json={"name": new_name, "remark": "best so far"}, headers=alice_h)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == new_name and r.json()["remark"] == "best so far"
    assert r.json()["updated_at"] > r.json()["created_at"]
    assert_error(
        await client.patch(f"/api/models/{model_id}", json={"name": taken}, headers=alice_h), 409, "name_taken", "name"
    )
    assert_error(
        await client.patch(f"/api/models/{model_id}", json={"name": preset_name}, headers=alice_h),
        409,
        "name_taken",
        "name",
    )
    assert_error(
        await client.patch(f"/api/models/{model_id}", json={"hf_path": "a/b"}, headers=alice_h),
        422,
        "preset_only",
        "hf_path",
    )
    assert_error(
        await client.patch(f"/api/models/{model_id}", json={"retired": True}, headers=alice_h),
        422,
        "preset_only",
        "retired",
    )
    assert_error(
        await client.patch(f"/api/models/{model_id}", json={"remark": "mine"}, headers=bob_h), 404, "not_found"
    )
    # Names are per owner: bob may use the name alice has.
    bobs, _ = await make_output(pool, bob_id, preset_id)
    assert (await client.patch(f"/api/models/{bobs}", json={"name": new_name}, headers=bob_h)).status_code == 200
    assert (await client.patch(f"/api/models/{model_id}", json={"remark": None}, headers=alice_h)).json()[
        "remark"
    ] is None


async def test_admins_edit_and_retire_presets(client, pool, alice, admin):
    preset_id, _ = await make_preset(pool)
    assert_error(
        await client.patch(f"/api/models/{preset_id}", json={"remark": "x"}, headers=alice[1]), 403, "admins_only"
    )
    r = await client.patch(
        f"/api/models/{preset_id}",
        json={"hf_path": "org/mirror", "retired": True, "template": "llama3"},
        headers=admin[1],
    )
    assert r.status_code == 200, r.text
    retired = r.json()
    assert retired["retired_at"] and retired["hf_path"] == "org/mirror" and retired["usable_for"] == []
    again = (await client.patch(f"/api/models/{preset_id}", json={"retired": True}, headers=admin[1])).json()
    assert again["retired_at"] == retired["retired_at"], "retiring twice keeps the first date"
    assert preset_id in await ids(client, alice[1], retired="true")
    assert preset_id not in await ids(client, alice[1], retired="false")
    assert_error(
        await client.patch(f"/api/models/{preset_id}", json={"path": None, "hf_path": None}, headers=admin[1]),
        422,
        "missing_location",
    )
    back = (await client.patch(f"/api/models/{preset_id}", json={"retired": False}, headers=admin[1])).json()
    assert back["retired_at"] is None and back["usable_for"][0] == "train"


async def test_lineage_both_ways(client, pool, alice, bob, admin):
    (alice_id, alice_h), (bob_id, _) = alice, bob
    preset_id, preset_name = await make_preset(pool)
    full, full_name = await make_output(pool, alice_id, preset_id, kind="full", datasets=("d1",))
    lora, _ = await make_output(pool, alice_id, full, kind="lora", datasets=("d2",))
    merged, _ = await make_output(pool, alice_id, lora, kind="full", source="export", datasets=("d2",))
    bobs, _ = await make_output(pool, bob_id, preset_id)

    up = (await client.get(f"/api/models/{merged}/lineage", headers=alice_h)).json()
    assert [(a["id"], a["depth"]) for a in up["ancestors"]] == [(lora, 1), (full, 2), (preset_id, 3)]
    assert up["model"]["base_model"] == up["ancestors"][0]["name"] and up["descendants"] == []

    down = (await client.get(f"/api/models/{preset_id}/lineage", headers=alice_h)).json()
    assert [(d["id"], d["depth"], d["base_model_id"]) for d in down["descendants"]] == [
        (full, 1, preset_id),
        (lora, 2, full),
        (merged, 3, lora),
    ]
    assert down["ancestors"] == [] and not down["descendants_truncated"]
    assert down["descendants"][1]["datasets"] == ["d2"]
    everyone = (await client.get(f"/api/models/{preset_id}/lineage", headers=admin[1])).json()
    assert bobs in [d["id"] for d in everyone["descendants"]]


async def test_delete_only_what_nothing_depends_on(client, pool, alice, bob, admin):
    (alice_id, alice_h), (_, bob_h) = alice, bob
    preset_id, preset_name = await make_preset(pool)
    full, full_name = await make_output(pool, alice_id, preset_id)
    lora, _ = await make_output(pool, alice_id, full, kind="lora")
    assert_error(await client.delete(f"/api/models/{full}", headers=alice_h), 409, "model_in_use")
    assert_error(await client.delete(f"/api/models/{lora}", headers=bob_h), 404, "not_found")
    assert (await client.delete(f"/api/models/{lora}", headers=alice_h)).status_code == 204
    assert_error(await client.get(f"/api/models/{lora}", headers=alice_h), 404, "not_found")
    assert lora not in await ids(client, alice_h)

    job = await make_job(pool, alice_id, state="running", request={"base_model": full_name}, config={})
    assert_error(await client.delete(f"/api/models/{full}", headers=alice_h), 409, "model_in_use")
    await pool.execute("UPDATE jobs SET state = 'failed' WHERE id = $1", job)
    assert (await client.delete(f"/api/models/{full}", headers=alice_h)).status_code == 204
    # The name is free again once its model is gone.
    again, _ = await make_output(pool, alice_id, preset_id, name=full_name)

    assert_error(await client.delete(f"/api/models/{preset_id}", headers=alice_h), 403, "admins_only")
    assert_error(await client.delete(f"/api/models/{preset_id}", headers=admin[1]), 409, "model_in_use")
    lone, _ = await make_preset(pool)
    assert (await client.delete(f"/api/models/{lone}", headers=admin[1])).status_code == 204


async def test_malformed_bodies(client, admin):
    r = await client.post("/api/models", content=b"{nope", headers={**admin[1], "content-type": "application/json"})
    assert_error(r, 400, "malformed_json")
    assert_error(
        await client.patch(f"/api/models/{new_id('mdl')}", json={"name": "ok"}, headers=admin[1]), 404, "not_found"
    )
    assert_error(
        await client.patch(f"/api/models/{new_id('mdl')}", json={"name": "no spaces"}, headers=admin[1]),
        422,
        "invalid_field",
        "name",
    )
