"""Who may use which model for what: one rule, enforced by every service that starts a job.

- Training may start from a preset, the caller's own exports and the caller's own trained full models
  (a LoRA adapter is not a base: export, i.e. merge, it first).
- Evaluation, export and deployment may use a preset, the caller's own training outputs (only succeeded
  jobs register one) and the caller's own exports.
- Someone else's model looks unknown, the same as a missing one; admins follow the same rule.
- A retired preset is refused for new jobs, but stays resolvable (lineage, jobs that already use it).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.common.contracts import ModelUse
from services.common.errors import ApiError

from . import store

Use = ModelUse
USES: tuple[Use, ...] = ("train", "eval", "export", "deploy")


class ModelRef(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules and job rendering need to know about one model."""

    id: str
    name: str
    kind: str  # base | lora | full | quantized
    source: str  # preset | train | export
    owner_id: str | None = None
    base_model_id: str | None = None
    path: str | None = None
    hf_path: str | None = None
    ms_path: str | None = None
    parameter_count: int | None = None
    template: str = "default"
    retired_at: datetime | None = None

    @property
    def location(self) -> str:
        """A name for the model's files: the local copy, else the Hugging Face id, else the ModelScope id."""
        return self.path or self.hf_path or self.ms_path or ""

    def loaded_from(self, prefer_hub: str = "huggingface") -> tuple[str, str | None]:
        """(model_name_or_path, hub) a job loads the model from: the local copy (no hub), else its id on
        `prefer_hub` (the platform's LLMCT_MODEL_HUB), else its id on the other hub."""
        if self.path:
            return self.path, None
        ids = {"huggingface": self.hf_path, "modelscope": self.ms_path}
        for hub in sorted(ids, key=lambda h: h != prefer_hub):
            if hub_id := ids[hub]:
                return hub_id, hub
        return "", None

    @classmethod
    def from_row(cls, row) -> ModelRef:
        return cls(**{name: row[name] for name in cls.__struct_fields__})


class Refusal(msgspec.Struct, frozen=True):
    """Why a model may not be used: a stable code and a message saying what to do."""

    code: str
    message: str


def is_visible(model: ModelRef, caller_id: str, is_admin: bool = False) -> bool:
    """Presets are everyone's; any other model only its owner's (admins see all)."""
    return is_admin or model.source == "preset" or model.owner_id == caller_id


def _allowed(use: Use, model: ModelRef) -> bool:
    """The kinds of model each use may start from, once the model is known to be the caller's or a preset."""
    if model.source == "preset":
        return True
    if use == "train":
        return model.source == "export" or (model.source == "train" and model.kind == "full")
    return model.source in ("train", "export")


def usable_for(use: Use, model: ModelRef | None, caller_id: str, name: str | None = None) -> Refusal | None:
    """None when `caller_id` may start a `use` job from `model`, else why not."""
    if use not in USES:
        raise ValueError(f"unknown use {use!r}")
    label = name or (model.name if model else "?")
    if model is None or not is_visible(model, caller_id):
        return Refusal("unknown_model", f"model {label!r} is not a preset or one of your models")
    if model.retired_at is not None:
        return Refusal("model_retired", f"preset {label!r} is retired: pick another model")
    if not _allowed(use, model):
        return Refusal(
            "model_not_trainable",
            f"{label!r} is a LoRA adapter, which cannot be a base for training: "
            "export (merge) it first, then train from the export",
        )
    return None


def uses_of(model: ModelRef, caller_id: str) -> list[str]:
    """Every use the caller may make of `model` (shown by clients)."""
    return [use for use in USES if usable_for(use, model, caller_id) is None]


async def model_for_use(conn, caller_id: str, name: str, use: Use, field: str) -> ModelRef:
    """The model called `name` as the caller sees it, if they may use it for `use`; 422 naming `field` if not."""
    row = await store.by_name_for(conn, caller_id, name)
    model = ModelRef.from_row(row) if row else None
    refusal = usable_for(use, model, caller_id, name)
    if refusal is not None:
        raise ApiError(422, refusal.code, refusal.message, field)
    assert model is not None  # usable_for refuses a missing model
    return model
