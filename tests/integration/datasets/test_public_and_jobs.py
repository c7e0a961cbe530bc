"""dataset_info_public.json synced in at start-up; jobs see only the datasets their owner may use."""

from __future__ import annotations

import json

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from services.common.errors import ApiError
from services.common.security import Principal
from services.datasets.app import create_app
from services.datasets.catalog import mark_public, sync_public_datasets
from services.datasets.settings import DatasetSettings
from services.scheduler.jobs.access import usable_datasets
from tests.integration.datasets.helpers import (
    ALPACA,
    PAIRWISE,
    TEXT,
    Api,
    as_json,
    as_jsonl,
    assert_error,
    info_json,
    make_user,
    unique,
)

pytestmark = pytest.mark.integration


async def test_public_list_synced_at_start_up(settings, pool, data_dir):
    name, hub_name = unique("pub"), unique("hub")
    (data_dir / f"{name}.jsonl").write_bytes(as_jsonl(TEXT))
    mark_public(
        data_dir,
        {
            name: {"file_name": f"{name}.jsonl", "columns": {"prompt": "text"}},
            hub_name: {"hf_hub_url": "org/data"},
            unique("gone"): {"file_name": "missing.json"},
            unique("escape"): {"file_name": "../../etc/passwd"},
            unique("script"): {"script_url": "evil"},
        },
    )
    async with AsyncTestClient(app=create_app(settings, DatasetSettings())) as client:
        page = (await Api(client).get(q=name)).json()
        assert [d["name"] for d in page["items"]] == [name]
        dataset = page["items"][0]
        assert dataset["visibility"] == "public" and dataset["source"] == "public_file"
        assert dataset["format"] == "text" and dataset["rows"] == len(TEXT) and dataset["key"] == name
        assert (await Api(client).get(q=hub_name)).json()["total"] == 1
        admin_id, admin_headers = await make_user(pool, settings, role="admin")
        admin = Api(client, admin_headers)
        assert_error(await admin.delete(dataset["id"]), 409, "managed_by_file")
        assert_error(await admin.patch(dataset["id"], name=unique()), 409, "managed_by_file")
        assert (await admin.patch(dataset["id"], remark="from the operator")).status_code == 200
    info = info_json(data_dir)
    assert info[name] == {"file_name": f"{name}.jsonl", "columns": {"prompt": "text"}}
    assert info[hub_name] == {"hf_hub_url": "org/data"}
    assert not any(key.startswith(("gone-", "escape-", "script-")) for key in info)

    # Dropped from the list: removed; a second sync of an unchanged file keeps the row (and its remark).
    public = json.loads((data_dir / "dataset_info_public.json").read_text())
    public = {
        key: entry
        for key, entry in public.items()
        if key != hub_name and not key.startswith(("gone-", "escape-", "script-"))
    }
    (data_dir / "dataset_info_public.json").write_text(json.dumps(public))
    conn = await asyncpg.connect(settings.database_url)  # a plain connection, as `llmct` tooling has
    try:
        report = await sync_public_datasets(conn, data_dir)
    finally:
        await conn.close()
    assert hub_name in report.removed and name in report.synced
    assert hub_name not in info_json(data_dir)
    assert await pool.fetchval("SELECT remark FROM datasets WHERE name = $1", name) == "from the operator"


async def test_unreadable_public_list_changes_nothing(pool, settings, data_dir):
    path = data_dir / "dataset_info_public.json"
    saved = path.read_text() if path.exists() else None
    before = await pool.fetchval("SELECT count(*) FROM datasets WHERE source = 'public_file'")
    path.write_text("{not json")
    try:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await sync_public_datasets(conn, data_dir)
        finally:
            await conn.close()
        assert await pool.fetchval("SELECT count(*) FROM datasets WHERE source = 'public_file'") == before
    finally:
        path.write_text(saved) if saved is not None else path.unlink()


async def test_hub_datasets_where_a_hub_is_reachable(settings, pool):
    async with AsyncTestClient(app=create_app(settings, DatasetSettings(hub_access=True))) as client:
        user_id, headers = await make_user(pool, settings)
        response = await Api(client, headers).register(
            name=unique(), format="sharegpt", hub="modelscope", hub_id="org/chat", subset="zh"
        )
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["dataset_info"]["ms_hub_url"] == "org/chat" and dataset["dataset_info"]["subset"] == "zh"
        assert dataset["rows"] is None and dataset["file_name"] is None
        assert_error(await Api(client, headers).get(f"/{dataset['id']}/preview"), 409, "no_local_file")


async def test_jobs_see_only_what_their_owner_may_use(alice, bob, admin, bus, owners):
    """The scheduler asks the datasets service over the real NATS (`llmct.datasets.datasets_for_job`)."""
    name = unique("train")
    mine = await alice.created(name, "alpaca", "a.json", as_json(ALPACA))
    public = await admin.created(unique("pub"), "alpaca", "a.json", as_json(ALPACA), visibility="public")
    prefs = await alice.created(unique("prefs"), "pairwise", "p.json", as_json(PAIRWISE))
    alice_p = Principal(user_id=alice.user_id, username="alice", role="user", via="token")
    bob_p = Principal(user_id=bob.user_id, username="bob", role="user", via="token")

    keys = (await usable_datasets(bus, alice_p, [name, public["name"]], "sft")).keys
    assert keys == [mine["key"], public["name"]]
    with pytest.raises(ApiError) as refused:
        await usable_datasets(bus, bob_p, [public["name"], name], "sft")
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, "unknown_dataset", "datasets[1]")
    # Bob's own dataset of the same name is his, and wins over nothing of Alice's.
    bobs = await bob.created(name, "alpaca", "a.json", as_json(ALPACA))
    assert (await usable_datasets(bus, bob_p, [name], "sft")).keys == [bobs["key"]]

    assert (await usable_datasets(bus, alice_p, [prefs["name"]], "dpo")).keys == [prefs["key"]]
    for names, stage in (([prefs["name"]], "sft"), ([name], "rm"), ([name], "kto")):
        with pytest.raises(ApiError) as wrong:
            await usable_datasets(bus, alice_p, names, stage)
        assert (wrong.value.code, wrong.value.field) == ("dataset_not_for_stage", "datasets[0]")
