"""What rendering a job of any kind shares: the base templates and engine commands, the merge of
`config_overrides` (overrides.py checks them), where a job finds its model (`ModelPaths`), the stages a job runs
(`Stage`, `Rendered`) and the frozen YAML text.

A stage has one contract, `contracts.EngineStage` (what the agent runs: a command and its frozen YAML text). `Stage`
is the scheduler's working copy of one, with its config still a dict to render into; `Stage.to_engine` is the one
conversion, and `stage_row` / `engine_stages` store an EngineStage as a `jobs.stages` row and read it back."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import yaml

from services.common.contracts import HUBS, EngineStage, ModelHub, ServeOptions
from services.common.errors import ApiError

from ..jobs.schemas import DeployRequest, EvalRequest, ExportRequest, TrainRequest

BASE_TEMPLATES: dict[str, dict[str, Any]] = {
    "train": {
        "do_train": True,
        "trust_remote_code": False,
        "overwrite_cache": True,
        "overwrite_output_dir": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "lr_scheduler_type": "cosine",
        "plot_loss": False,
        "report_to": "none",
        "save_only_model": False,
        "ddp_timeout": 180000000,
        # The tokens trained on (padding not counted), logged with every step as `total_tokens` and in the final
        # metrics as `num_input_tokens_seen`: a fine-tuning job's `trained_tokens` (docs/openai.md).
        "include_num_input_tokens_seen": "non_padding",
    },
    "eval": {
        "do_train": False,
        "trust_remote_code": False,
        "overwrite_cache": True,
        "overwrite_output_dir": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "report_to": "none",
    },
    "export": {"trust_remote_code": False},
    "deploy": {"trust_remote_code": False, "infer_backend": "huggingface"},
}

# The engine command of each stage, before the YAML's path. LLaMA-Factory 0.9.5 dropped the `eval`
# subcommand, but its multiple-choice evaluator still works when called directly.
TRAIN_COMMAND = ("llamafactory-cli", "train")
EXPORT_COMMAND = ("llamafactory-cli", "export")
SERVE_COMMAND = ("llamafactory-cli", "api")
BENCHMARK_COMMAND = ("python", "-c", "from llamafactory.eval.evaluator import run_eval; run_eval()")

# The form's quantisation method → the engine's name for it (its QuantizationMethod). The engine keeps a name it does
# not know without complaint and then quantises nothing: "bitsandbytes" must reach it as "bnb".
ENGINE_QUANTIZATION = {"bitsandbytes": "bnb", "hqq": "hqq", "eetq": "eetq"}


class Stage(msgspec.Struct, kw_only=True):
    """One engine run of a job while it is rendered: a `contracts.EngineStage` whose config is still a dict."""

    name: str
    command: tuple[str, ...]
    config: dict[str, Any]
    serve: ServeOptions | None = None  # a stage that serves
    hub: str | None = None  # where model_name_or_path is downloaded from (contracts.EngineStage.hub)
    env: dict[str, str] = msgspec.field(default_factory=dict)  # the tracking variables (contracts.EngineStage.env)

    def yaml(self) -> str:
        """The stage's frozen YAML; a ModelScope model says so, since the YAML alone would run it from Hugging Face."""
        return hub_note(self.hub) + to_yaml(self.config)

    def to_engine(self) -> EngineStage:
        """The stage as the contract has it: its config frozen into YAML text."""
        return EngineStage(
            name=self.name, command=self.command, config_yaml=self.yaml(), serve=self.serve, hub=self.hub, env=self.env
        )

    @classmethod
    def from_engine(cls, stage: EngineStage) -> Stage:
        """A frozen stage to render again (a retry, a resume): its YAML parsed back into a config."""
        return cls(
            name=stage.name,
            command=stage.command,
            config=yaml.safe_load(stage.config_yaml) or {},
            serve=stage.serve,
            hub=stage.hub,
            env=dict(stage.env),
        )


def stage_row(stage: EngineStage) -> dict[str, Any]:
    """An EngineStage as stored in `jobs.stages` (and read back by `engine_stages`): unset options left out."""
    return {
        name: value
        for name, value in msgspec.to_builtins(stage).items()
        if not ((name in ("serve", "hub") and value is None) or (name == "env" and not value))
    }


def engine_stages(rows: list[dict[str, Any]]) -> tuple[EngineStage, ...]:
    """A job's stored stages (`jobs.stages`) as the contract has them."""
    return tuple(msgspec.convert(row, EngineStage) for row in rows)


def hub_note(hub: str | None) -> str:
    """The comment heading a stage's YAML whose model needs the engine told its hub."""
    if hub == "modelscope":
        return "# model hub: modelscope (the engine runs with USE_MODELSCOPE_HUB=1)\n"
    return ""


class Rendered(msgspec.Struct, kw_only=True):
    """What a job runs: its stages, in order. `config` (the last stage's) is what the job produced."""

    stages: list[Stage]

    @property
    def config(self) -> dict[str, Any]:
        return self.stages[-1].config

    @property
    def model_hub(self) -> ModelHub | None:
        """The hub the job's model comes from (its first stage that downloads one); None: all local."""
        return HUBS.get(next((s.hub for s in self.stages if s.hub), ""))

    def stage_rows(self) -> list[dict[str, Any]]:
        """The stages as stored with the job (`jobs.stages`, sent to the agent as `engine_stages` of them)."""
        return self.frozen()[1]

    def yaml_text(self) -> str:
        """Every stage's YAML, one document each, for people to read."""
        return self._joined([s.yaml() for s in self.stages])

    def frozen(self) -> tuple[str, list[dict[str, Any]]]:
        """`yaml_text()` and `stage_rows()` together, each stage's config dumped once: what storing a job needs. The
        YAML dump is the largest CPU cost of a submit (pyyaml's representer is Python even with libyaml), and the
        two made it twice."""
        texts = [s.yaml() for s in self.stages]
        rows = [
            stage_row(
                EngineStage(name=s.name, command=s.command, config_yaml=text, serve=s.serve, hub=s.hub, env=s.env)
            )
            for s, text in zip(self.stages, texts, strict=True)
        ]
        return self._joined(texts), rows

    def _joined(self, texts: list[str]) -> str:
        if len(texts) == 1:
            return texts[0]
        last = len(texts)
        return "".join(
            f"# stage {i} of {last}: {s.name}\n{text}" + ("---\n" if i < last else "")
            for i, (s, text) in enumerate(zip(self.stages, texts, strict=True), 1)
        )


def model_hub(stage_rows: list[dict[str, Any]] | None) -> ModelHub | None:
    """The hub of a job's stored stages (`jobs.stages`): the first that names one."""
    return HUBS.get(next((row["hub"] for row in stage_rows or () if row.get("hub")), ""))


# Engine configs a user may name in `deepspeed`; each maps to a file the platform ships.
DEEPSPEED_CONFIGS = Path(__file__).with_name("deepspeed")
ALLOWED_DEEPSPEED = {"z0": "ds_z0_config.json", "z2": "ds_z2_config.json", "z3": "ds_z3_config.json"}


def deep_merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, recursing into dicts present in both; neither input is changed."""
    merged = plain_copy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = plain_copy(value)
    return merged


_ATOMS = (str, int, float, bool, type(None))


def plain_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, strings, numbers, booleans, None), anything else by
    `copy.deepcopy`: the same result as deepcopy for a config, without its memo and dispatch per value (it was a
    tenth of a submit's CPU)."""
    if isinstance(value, _ATOMS):
        return value
    if type(value) is dict:
        return {key: plain_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [plain_copy(item) for item in value]
    return copy.deepcopy(value)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any], on_gpu: bool) -> dict[str, Any]:
    """`overrides` over `base`; bf16/fp16 are refused for a job without a GPU."""
    config = deep_merge(base, overrides)
    if not on_gpu and (config.get("bf16") or config.get("fp16") or config.get("pure_bf16")):
        raise ApiError(
            422, "invalid_override", "bf16/fp16 need a GPU: this job asks for gpu_count 0", "config_overrides"
        )
    return config


class ModelPaths(msgspec.Struct, kw_only=True, frozen=True):
    """Where a job finds the model it uses: a full model, or a LoRA adapter and the base it sits on."""

    model_path: str
    adapter_path: str | None = None
    template: str = "default"
    hub: str | None = None  # where model_path is downloaded from (huggingface | modelscope); None: a local copy


def model_keys(model: ModelPaths) -> dict[str, Any]:
    """The engine keys that name the model (and its adapter)."""
    keys: dict[str, Any] = {"model_name_or_path": model.model_path}
    if model.adapter_path:
        keys.update(adapter_name_or_path=model.adapter_path, finetuning_type="lora")
    return keys


def to_yaml(config: dict[str, Any]) -> str:
    """The frozen text the engine runs with."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: same text, 5x faster
    return yaml.dump(config, Dumper=dumper, sort_keys=False, allow_unicode=True)


def request_dict(req: TrainRequest | EvalRequest | ExportRequest | DeployRequest) -> dict[str, Any]:
    return msgspec.to_builtins(req)
