"""Who sees what, search and paging, previews, changes, downloads and deletes, and dataset_info.json after each."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from services.common.security import new_id
from tests.integration.datasets.helpers import (
    ALPACA,
    PAIRWISE,
    SHAREGPT,
    TEXT,
    as_json,
    as_jsonl,
    as_zip,
    assert_error,
    info_json,
    unique,
)

pytestmark = pytest.mark.integration


async def test_visibility(anonymous, alice, bob, admin, data_dir):
    mine = await alice.created(unique("mine"), "alpaca", "a.json", as_json(ALPACA))
    public = await admin.created(unique("shared"), "alpaca", "a.json", as_json(ALPACA), visibility="public")

    async def ids(api, **params):
        return {d["id"] for d in (await api.get(limit=200, **params)).json()["items"]}

    for api in (anonymous, alice, bob, admin):
        assert public["id"] in await ids(api, q=public["name"])
        assert (await api.get(f"/{public['id']}")).status_code == 200
    assert mine["id"] in await ids(alice, q=mine["name"])
    for api in (anonymous, bob, admin):  # someone else's private dataset looks like no dataset at all
        assert mine["id"] not in await ids(api, q=mine["name"])
        assert_error(await api.get(f"/{mine['id']}"), 404, "not_found")
        assert_error(await api.get(f"/{mine['id']}/preview"), 404, "not_found")
    assert (await anonymous.get(f"/{public['id']}")).json()["can_edit"] is False
    assert (await alice.get(f"/{public['id']}")).json()["can_edit"] is False
    assert (await admin.get(f"/{public['id']}")).json()["can_edit"] is True
    bad_token = type(anonymous)(anonymous.client, {"Authorization": "Bearer not-a-token"})
    assert_error(await bad_token.get(), 401, "unauthorized")  # a bad credential is not anonymous browsing


async def test_search_filters_and_pages(alice, admin):
    tag = unique("find")
    names = [f"{tag}-{i}" for i in range(5)]
    for name in names[:3]:
        await alice.created(name, "alpaca", "a.json", as_json(ALPACA))
    await alice.created(names[3], "text", "t.jsonl", as_jsonl(TEXT))
    await admin.created(names[4], "alpaca", "a.json", as_json(ALPACA), visibility="public")
    seen, cursor = [], None
    while True:
        page = (await alice.get(q=tag, limit=2, **({"cursor": cursor} if cursor else {}))).json()
        assert page["total"] == 5 and len(page["items"]) <= 2
        seen += [d["name"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == names
    assert [d["name"] for d in (await alice.get(q=tag, format="text")).json()["items"]] == [names[3]]
    assert [d["name"] for d in (await alice.get(q=tag, visibility="public")).json()["items"]] == [names[4]]
    assert (await alice.get(q=f"{tag}-%")).json()["total"] == 0  # LIKE wildcards are plain characters
    assert_error(await alice.get(cursor="garbage"), 422, "invalid_field", "cursor")
    assert_error(await alice.get(limit=0), 422, "invalid_field", "limit")
    assert_error(await alice.get(format="xml"), 422, "invalid_field", "format")


async def test_preview_renders_what_the_template_sees(alice, admin, anonymous):
    alpaca = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    preview = (await alice.get(f"/{alpaca['id']}/preview", rows=2)).json()
    assert len(preview["rows"]) == 2 and preview["format"] == "alpaca"
    first, second = preview["rows"]
    assert first["where"] == "row 1" and first["raw"] == ALPACA[0]
    assert first["rendered"]["prompt"] == [{"role": "user", "content": "Say 1"}]
    assert second["rendered"]["prompt"] == [{"role": "user", "content": "Say 2\nplease"}]
    assert second["rendered"]["response"] == [{"role": "assistant", "content": "2"}]

    chat = await alice.created(unique(), "sharegpt", "c.jsonl", as_jsonl(SHAREGPT))
    rendered = (await alice.get(f"/{chat['id']}/preview")).json()["rows"][0]["rendered"]
    assert rendered["prompt"] == [{"role": "user", "content": "hi 1"}]
    assert rendered["response"] == [{"role": "assistant", "content": "hello 1"}]

    prefs = await admin.created(unique(), "pairwise", "p.json", as_json(PAIRWISE), visibility="public")
    rows = (await anonymous.get(f"/{prefs['id']}/preview", rows=50)).json()["rows"]
    assert len(rows) == len(PAIRWISE)
    assert rows[0]["rendered"]["chosen"] == {"role": "assistant", "content": "good"}

    text = await alice.created(unique(), "text", "t.jsonl", as_jsonl([{"text": "long " * 1000}]))
    clipped = (await alice.get(f"/{text['id']}/preview")).json()["rows"][0]
    assert clipped["where"] == "line 1" and "more characters]" in clipped["rendered"]["text"]
    assert_error(await alice.get(f"/{alpaca['id']}/preview", rows=51), 422, "invalid_field", "rows")


async def test_rename_and_remark(alice, bob, admin, data_dir):
    dataset = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    response = await alice.patch(dataset["id"], remark="checked by hand")
    assert response.status_code == 200 and response.json()["remark"] == "checked by hand"
    new_name = unique("renamed")
    renamed = (await alice.patch(dataset["id"], name=new_name)).json()
    assert renamed["name"] == new_name and renamed["key"] == f"{alice.user_id}__{new_name}"
    info = info_json(data_dir)
    assert dataset["key"] not in info and info[renamed["key"]]["file_name"] == dataset["file_name"]
    assert_error(await alice.patch(dataset["id"], name="../x"), 422, "invalid_field", "name")
    assert_error(await alice.patch(dataset["id"], owner="bob"), 422, "invalid_field", "owner")
    other = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    assert_error(await alice.patch(other["id"], name=new_name), 409, "name_taken", "name")
    assert_error(await bob.patch(dataset["id"], remark="mine now"), 404, "not_found")
    public = await admin.created(unique(), "alpaca", "a.json", as_json(ALPACA), visibility="public")
    assert_error(await alice.patch(public["id"], remark="hello"), 403, "forbidden")
    assert (await admin.patch(public["id"], remark="curated")).json()["remark"] == "curated"


async def _job_using(pool, owner_id: str, key: str, state: str) -> str:
    job_id = new_id("job")
    await pool.execute(  # as the scheduler stores it: the keys its YAML reads in jobs.dataset_keys
        "INSERT INTO jobs (id, owner_id, kind, state, request, config, config_yaml, dataset_keys) "
        "VALUES ($1, $2, 'train', $3, $4, $5, '', $6)",
        job_id,
        owner_id,
        state,
        {"datasets": ["x"]},
        {"dataset": f"tiny_sft,{key}"},
        ["tiny_sft", key],
    )
    return job_id


async def test_delete_refused_while_a_job_uses_it(alice, pool, data_dir):
    dataset = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    path = data_dir / dataset["file_name"]
    pending = await _job_using(pool, alice.user_id, dataset["key"], "pending")
    running = await _job_using(pool, alice.user_id, dataset["key"], "running")
    await _job_using(pool, alice.user_id, dataset["key"], "succeeded")
    error = assert_error(await alice.delete(dataset["id"]), 409, "dataset_in_use")
    assert pending in error["message"] and running in error["message"]
    assert_error(await alice.patch(dataset["id"], name=unique()), 409, "dataset_in_use")
    assert path.exists() and dataset["key"] in info_json(data_dir)
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = ANY($1::text[])", [pending, running])
    assert (await alice.delete(dataset["id"])).status_code == 204
    assert not path.exists() and dataset["key"] not in info_json(data_dir)
    assert_error(await alice.get(f"/{dataset['id']}"), 404, "not_found")


async def test_delete_permissions(alice, bob, admin):
    dataset = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    assert_error(await bob.delete(dataset["id"]), 404, "not_found")
    assert_error(await admin.delete(dataset["id"]), 404, "not_found")
    public = await admin.created(unique(), "alpaca", "a.json", as_json(ALPACA), visibility="public")
    assert_error(await alice.delete(public["id"]), 403, "forbidden")
    assert (await admin.delete(public["id"])).status_code == 204
    assert_error(await alice.delete("ds_missing"), 404, "not_found")


async def test_download(alice, bob, anonymous, client):
    content = as_jsonl(ALPACA)
    single = await alice.created(unique("dl"), "alpaca", "a.jsonl", content)
    response = await client.get(f"/api/datasets/{single['id']}/download", headers=alice.headers)
    assert response.status_code == 200 and response.content == content
    assert f"{single['name']}.jsonl" in response.headers["content-disposition"]
    assert_error(await client.get(f"/api/datasets/{single['id']}/download", headers=bob.headers), 404, "not_found")
    assert_error(await client.get(f"/api/datasets/{single['id']}/download"), 401, "unauthorized")
    sharded = await alice.created(unique("dl"), "alpaca", "s.zip", as_zip({"a.jsonl": content, "b.jsonl": content}))
    response = await client.get(f"/api/datasets/{sharded['id']}/download", headers=alice.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["part-00000.jsonl", "part-00001.jsonl"]


async def test_dataset_info_is_replaced_atomically(alice, data_dir):
    await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    leftovers = [p.name for p in data_dir.iterdir() if p.name.startswith(".dataset_info")]
    assert leftovers == []
    assert isinstance(json.loads((data_dir / "dataset_info.json").read_text()), dict)
