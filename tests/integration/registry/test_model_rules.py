"""The model rules over real rows: every allow and deny case, every job kind; and the scheduler asking the registry
for them over the real NATS (`llmct.registry.model_for_use`)."""

import msgspec
import pytest

from services.common.contracts import ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.security import Principal
from services.registry import rules
from services.scheduler.jobs import access

from .helpers import make_output, make_preset, make_user, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(pool, settings):
    """Two users, a preset, a retired preset, a hub-only preset, and each kind of model for each user."""
    me, _ = await make_user(pool, settings)
    other, _ = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    retired_id, retired = await make_preset(pool)
    await pool.execute("UPDATE models SET retired_at = now() WHERE id = $1", retired_id)
    hub = unique("Hub-Only")
    await pool.execute(
        "INSERT INTO models (id, name, source, kind, visibility, hf_path, ms_path, parameter_count) "
        "VALUES ($1, $2, 'preset', 'base', 'public', 'org/hub-only', 'org-ms/hub-only', 7000000000)",
        f"mdl_{hub}",
        hub,
    )
    names = {"preset": preset, "retired": retired, "hub": hub}
    for who, user in (("own", me), ("other", other)):
        full_id, names[f"{who}_full"] = await make_output(pool, user, preset_id, kind="full")
        _, names[f"{who}_lora"] = await make_output(pool, user, full_id, kind="lora")
        _, names[f"{who}_merged"] = await make_output(pool, user, full_id, kind="full", source="export")
        _, names[f"{who}_quantized"] = await make_output(pool, user, full_id, kind="quantized", source="export")
    return me, names


EVERY = {"train", "eval", "export", "deploy"}
ALLOWED = {
    "preset": EVERY,
    "hub": EVERY,
    "retired": set(),
    "own_full": EVERY,
    "own_merged": EVERY,
    "own_quantized": EVERY,
    "own_lora": EVERY - {"train"},
    "other_full": set(),
    "other_lora": set(),
    "other_merged": set(),
    "other_quantized": set(),
    "missing": set(),
}
REFUSED_WITH = {"retired": "model_retired", "own_lora": "model_not_trainable"}


@pytest.mark.parametrize("use", sorted(EVERY))
@pytest.mark.parametrize("which", sorted(ALLOWED))
async def test_every_model_for_every_job_kind(pool, world, which, use):
    me, names = world
    name = names.get(which, "no-such-model")
    if use in ALLOWED[which]:
        model = await rules.model_for_use(pool, me, name, use, "model")
        assert model.name == name
    else:
        with pytest.raises(ApiError) as refused:
            await rules.model_for_use(pool, me, name, use, "model")
        error = refused.value
        assert (error.status, error.field) == (422, "model")
        assert error.code == REFUSED_WITH.get(which, "unknown_model")


async def test_training_maps_names_to_local_copies_or_hub_paths(bus, owners, world):
    me, names = world
    caller = Principal(user_id=me, username="me", role="user", via="token")
    local = await access.usable_base_model(bus, caller, names["preset"])
    assert local.path == f"/models/{names['preset']}" and local.parameter_count == 1_000_000
    hub = await access.usable_base_model(bus, caller, names["hub"])
    assert hub.path == "org/hub-only" and hub.parameter_count == 7_000_000_000
    for refused in ("other_full", "own_lora", "retired", "missing"):
        with pytest.raises(ApiError) as error:
            await access.usable_base_model(bus, caller, names.get(refused, "no-such-model"))
        assert error.value.field == "base_model" and error.value.status == 422


async def test_admins_train_by_the_same_rule(pool, bus, owners, world, settings):
    _, names = world
    admin_id, _ = await make_user(pool, settings, role="admin")
    admin = Principal(user_id=admin_id, username="boss", role="admin", via="token")
    with pytest.raises(ApiError) as error:
        await access.usable_base_model(bus, admin, names["other_full"])
    assert error.value.code == "unknown_model"


async def test_own_models_shadow_a_preset_of_the_same_name(pool, settings):
    me, _ = await make_user(pool, settings)
    other, _ = await make_user(pool, settings)
    preset_id, preset = await make_preset(pool)
    mine, _ = await make_output(pool, me, preset_id, name=preset)
    assert (await rules.model_for_use(pool, me, preset, "eval", "model")).id == mine
    assert (await rules.model_for_use(pool, other, preset, "eval", "model")).id == preset_id


async def test_a_model_without_a_local_copy_is_loaded_from_its_hub(pool, bus, owners, world):
    """The hub a job's stages name (docs/registry.md): the platform's choice when a model is on both, the only one
    it is on otherwise, none for a local copy; an adapter is loaded on its base, from the base's hub."""
    me, names = world
    caller = Principal(user_id=me, username="me", role="user", via="token")
    both = await access.usable_base_model(bus, caller, names["hub"])
    assert (both.path, both.hub) == ("org/hub-only", "huggingface")
    both = await access.usable_base_model(bus, caller, names["hub"], prefer_hub="modelscope")
    assert (both.path, both.hub) == ("org-ms/hub-only", "modelscope")
    assert (await access.usable_base_model(bus, caller, names["preset"], prefer_hub="modelscope")).hub is None
    ms_only = unique("Ms-Only")
    await pool.execute(
        "INSERT INTO models (id, name, source, kind, visibility, ms_path, parameter_count) "
        "VALUES ($1, $2, 'preset', 'base', 'public', 'org-ms/ms-only', 1000)",
        f"mdl_{ms_only}",
        ms_only,
    )
    adapter_id, adapter = await make_output(pool, me, f"mdl_{ms_only}", kind="lora")
    used = await access.usable_model(bus, caller, adapter, "deploy")
    assert (used.paths.model_path, used.paths.hub) == ("org-ms/ms-only", "modelscope")
    assert used.paths.adapter_path == f"/out/{adapter_id}"


async def test_a_registry_that_does_not_answer_is_a_503_and_a_bad_request_is_refused(bus, owners):
    """Nobody answers a subject: the caller hears which service did not answer (nothing was decided); a request the
    registry cannot read is refused with a 400, never left unanswered."""
    asked = ModelUseAsked(user_id="usr_x", name="m", use="train")
    with pytest.raises(ApiError) as error:
        await ask(bus, "llmct.registry.nobody_here", asked, ModelForUse, owner="registry", timeout=0.5)
    assert (error.value.status, error.value.code) == (503, "service_unavailable")
    assert "registry" in error.value.message
    reply = msgspec.json.decode((await bus.request(Subjects.MODEL_FOR_USE, b'{"user_id": 1}', timeout=5)).data)
    assert (reply["type"], reply["code"], reply["status"]) == ("refused", "bad_request", 400)
