"""The registry's model rules for every job kind, and what each job kind registers, without servers."""

from datetime import UTC, datetime

import pytest

from services.registry import outputs
from services.registry.rules import USES, ModelRef, is_visible, usable_for, uses_of

pytestmark = pytest.mark.unit

ME, OTHER = "usr_me", "usr_other"


def model(source: str, kind: str, owner: str | None = ME, retired: bool = False) -> ModelRef:
    return ModelRef(
        id="mdl_1",
        name="m",
        kind=kind,
        source=source,
        owner_id=None if source == "preset" else owner,
        path="/models/m",
        retired_at=datetime.now(UTC) if retired else None,
    )


PRESET = model("preset", "base")
OWN_LORA, OWN_FULL = model("train", "lora"), model("train", "full")
OWN_MERGED, OWN_QUANTIZED = model("export", "full"), model("export", "quantized")
ALL, NOT_TRAIN = set(USES), {"eval", "export", "deploy"}

CASES = [
    # (model, uses allowed; every other use is refused with `code`)
    (PRESET, ALL, None),
    (model("preset", "base", retired=True), set(), "model_retired"),
    (OWN_LORA, NOT_TRAIN, "model_not_trainable"),
    (OWN_FULL, ALL, None),
    (OWN_MERGED, ALL, None),
    (OWN_QUANTIZED, ALL, None),
    (model("train", "lora", owner=OTHER), set(), "unknown_model"),
    (model("train", "full", owner=OTHER), set(), "unknown_model"),
    (model("export", "full", owner=OTHER), set(), "unknown_model"),
    (model("export", "quantized", owner=OTHER), set(), "unknown_model"),
    (None, set(), "unknown_model"),
]


@pytest.mark.parametrize("use", USES)
@pytest.mark.parametrize("candidate, allowed, code", CASES)
def test_every_use_of_every_kind_of_model(candidate, allowed, code, use):
    refusal = usable_for(use, candidate, ME, "m")
    if use in allowed:
        assert refusal is None
    else:
        assert refusal is not None and refusal.code == code and "'m'" in refusal.message


def test_lora_refusal_says_what_to_do_instead():
    refusal = usable_for("train", OWN_LORA, ME)
    assert "export" in refusal.message and "LoRA" in refusal.message


def test_someone_elses_model_reads_like_a_missing_one():
    theirs = usable_for("eval", model("train", "full", owner=OTHER), ME, "m")
    missing = usable_for("eval", None, ME, "m")
    assert theirs == missing


def test_uses_of_lists_what_clients_may_offer():
    assert uses_of(PRESET, ME) == list(USES)
    assert uses_of(OWN_LORA, ME) == ["eval", "export", "deploy"]
    assert uses_of(OWN_FULL, OTHER) == []


def test_admins_see_everything_but_use_by_the_same_rule():
    theirs = model("train", "full", owner=OTHER)
    assert is_visible(theirs, ME, is_admin=True) and not is_visible(theirs, ME)
    assert is_visible(PRESET, ME)
    assert usable_for("train", theirs, ME) is not None


def test_unknown_use_is_a_bug():
    with pytest.raises(ValueError):
        usable_for("teleport", PRESET, ME)


def test_location_prefers_the_local_copy_then_the_hub():
    hub = ModelRef(id="x", name="q", kind="base", source="preset", hf_path="Qwen/Q", ms_path="qwen/Q")
    assert hub.location == "Qwen/Q"
    assert ModelRef(id="x", name="q", kind="base", source="preset", path="/m", hf_path="Qwen/Q").location == "/m"
    assert ModelRef(id="x", name="q", kind="base", source="preset", ms_path="qwen/Q").location == "qwen/Q"


# --- what jobs register ---------------------------------------------------------------------------


def test_default_names_fit_and_say_where_they_come_from():
    assert outputs.default_name("tiny-llama", "sft", "job_0123456789abcdef") == "tiny-llama-sft-89abcdef"
    assert outputs.default_name("tiny-llama", "sft", "job_0123456789abcdef", long=True).endswith("-0123456789abcdef")
    long_name = outputs.default_name("x" * 128, "export", "job_0123456789abcdef")
    assert len(long_name) == outputs.MAX_NAME and long_name.endswith("-export-89abcdef")


def test_sizes_and_parameters_of_missing_folders_are_unknown(tmp_path):
    assert outputs.folder_size(str(tmp_path / "nope")) is None
    assert outputs.count_parameters(tmp_path) is None
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert outputs.folder_size(str(tmp_path)) == 15
