"""The adapters of a base model (issue 17): the registry names an adapter's base in `ModelForUse.base` over the real
NATS, and `GET /api/models?base=` lists the models made directly from a base, the caller's own only (a deployment of
the base serves exactly those)."""

from __future__ import annotations

import pytest

from services.common.contracts import ModelForUse, ModelUseAsked, Subjects
from services.common.requests import ask
from tests.helpers import assert_error

from .helpers import make_output, make_preset, make_user, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(pool, settings):
    """Alice and Bob, each with two adapters of one preset and a full model of it; Alice also has her own model
    named like another preset, with an adapter of it."""
    alice, alice_headers = await make_user(pool, settings)
    bob, bob_headers = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    shadowed_id, shadowed = await make_preset(pool)
    ids: dict[str, str] = {}
    for who, user in (("alice", alice), ("bob", bob)):
        for n in (1, 2):
            ids[f"{who}_lora{n}"], ids[f"{who}_lora{n}_name"] = await make_output(pool, user, preset_id, kind="lora")
        ids[f"{who}_full"], _ = await make_output(pool, user, preset_id, kind="full")
    own_id, _ = await make_output(pool, alice, preset_id, kind="full", name=shadowed)
    ids["alice_own_lora"], _ = await make_output(pool, alice, own_id, kind="lora")
    ids["bob_shadowed_lora"], _ = await make_output(pool, bob, shadowed_id, kind="lora")
    return {
        "alice": (alice, alice_headers),
        "bob": (bob, bob_headers),
        "preset": preset,
        "shadowed": shadowed,
        "ids": ids,
    }


async def listed(client, headers, **params) -> set[str]:
    r = await client.get("/api/models", headers=headers, params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return {m["id"] for m in r.json()["items"]}


async def test_model_for_use_names_an_adapters_base(bus, client, world):
    alice = world["alice"][0]
    ids = world["ids"]
    asked = ModelUseAsked(user_id=alice, name=ids["alice_lora1_name"], use="deploy")
    answer = await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    assert (answer.kind, answer.base) == ("lora", world["preset"])
    assert answer.adapter_path == f"/out/{ids['alice_lora1']}"
    asked = ModelUseAsked(user_id=alice, name=world["preset"], use="deploy")
    base = await ask(bus, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
    assert base.base is None and base.adapter_path is None


async def test_the_adapters_of_a_base_are_the_callers_own(client, world):
    ids, (_, alice), (_, bob) = world["ids"], world["alice"], world["bob"]
    assert await listed(client, alice, base=world["preset"], kind="lora") == {ids["alice_lora1"], ids["alice_lora2"]}
    assert await listed(client, bob, base=world["preset"], kind="lora") == {ids["bob_lora1"], ids["bob_lora2"]}
    everything = await listed(client, alice, base=world["preset"])
    assert ids["alice_full"] in everything and ids["bob_full"] not in everything, "any kind made from it, when asked"
    assert await listed(client, alice, base=unique("no-such-model"), kind="lora") == set()


async def test_a_base_name_is_resolved_as_the_callers_jobs_resolve_it(client, world):
    """Alice's own model shadows the preset of its name for her (as when she deploys it); Bob gets the preset's."""
    ids, (_, alice), (_, bob) = world["ids"], world["alice"], world["bob"]
    assert await listed(client, alice, base=world["shadowed"], kind="lora") == {ids["alice_own_lora"]}
    assert await listed(client, bob, base=world["shadowed"], kind="lora") == {ids["bob_shadowed_lora"]}


@pytest.mark.parametrize("value", ["", "x" * 200])
async def test_a_bad_base_names_the_parameter(client, world, value):
    assert_error(await client.get("/api/models", headers=world["alice"][1], params={"base": value}), 422, None, "base")
