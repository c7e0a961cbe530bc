"""The policy on `config_overrides`: an allow-list of the engine's own keys, checked at every depth.

`engine_args.json` (written by engine/engine_args.py from LLaMA-Factory's argument classes for the pinned
version) says which keys each engine command's parser takes and what values each may hold. On top of it this
module refuses what would reach past the job: the keys the platform sets (paths, datasets, the model), the keys
that pick other code or other models (remote code, a reference or reward model, adapters, a revision, vLLM's
`model`), the keys that send data off the platform (hub pushes, trackers), any string naming a path, a URL or a hub
id, a `stage` other than the form's, and numbers outside the form's own limits. A mapping is accepted only under
the few keys that have an allow-list of their own (`NESTED`); its keys are checked the same way.

Every refusal is a 422 whose `field` is the dotted key (`config_overrides.vllm_config.model`)."""

from __future__ import annotations

import fnmatch
import functools
import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from services.common.errors import ApiError

from .common import ALLOWED_DEEPSPEED

EngineParser = Literal["train", "infer", "eval"]  # the engine's parsers: train/eval jobs, export/serve, benchmark
ENGINE_ARGS_FILE = Path(__file__).with_name("engine_args.json")
MAX_DEPTH = 3


class FieldSpec(msgspec.Struct, frozen=True):
    """What YAML value an engine key may hold: its kinds, its choices (None: any of those kinds), a list's items."""

    types: tuple[str, ...]
    choices: tuple[Any, ...] | None = None
    items: tuple[str, ...] = ()


class EngineArgs(msgspec.Struct, frozen=True):
    generated_by: str
    versions: dict[str, str]
    parsers: dict[str, list[str]]
    classes: dict[str, dict[str, FieldSpec]]


@functools.cache
def engine_args() -> EngineArgs:
    """The checked-in dump of the pinned engine's argument classes, read once."""
    return msgspec.json.decode(ENGINE_ARGS_FILE.read_bytes(), type=EngineArgs)


@functools.cache
def engine_fields(parser: EngineParser) -> dict[str, FieldSpec]:
    """Every key one of the engine's parsers takes."""
    args = engine_args()
    fields: dict[str, FieldSpec] = {}
    for cls in args.parsers[parser]:
        for name, spec in args.classes[cls].items():
            fields.setdefault(name, spec)
    return fields


def engine_version() -> str:
    return engine_args().versions["llamafactory"]


# Refused at any depth, by reason. Exact names first, then name patterns.
PLATFORM = "is set by the platform and cannot be overridden"
OTHER_CODE = "would load code or weights other than the job's own model"
EGRESS = "would send the job's data or weights off the platform"
REFUSED_KEYS: dict[str, str] = {
    **dict.fromkeys(
        """dataset eval_dataset dataset_dir media_dir image_dir video_dir audio_dir output_dir logging_dir cache_dir
        tokenized_path export_dir export_quantization_dataset offload_folder profiler_output_dir resume_from_checkpoint
        run_name save_safetensors do_train do_eval do_predict task task_dir save_dir local_rank use_ray
        ray_num_workers ray_init_kwargs master_addr master_port data_shared_file_system""".split(),
        PLATFORM,
    ),
    **dict.fromkeys(
        """trust_remote_code model_name_or_path adapter_name_or_path adapter_folder ref_model ref_model_adapters
        reward_model reward_model_adapters model_revision generation_config new_special_tokens_config use_kt
        use_hyper_parallel hyper_parallel_args fsdp_config parallelism_config""".split(),
        OTHER_CODE,
    ),
    # What vLLM's and SGLang's engine arguments (vllm_config, sglang_config) would load instead of the job's model.
    **dict.fromkeys(
        """model model_path tokenizer tokenizer_path revision code_revision tokenizer_revision download_dir
        load_format hf_overrides hf_config_path json_model_override_args model_loader_extra_config model_impl
        speculative_config speculative_model speculative_draft_model_path served_model_name enable_lora lora_modules
        lora_paths worker_cls worker_extension_cls plugins allowed_local_media_path quantization_param_path""".split(),
        OTHER_CODE,
    ),
    **dict.fromkeys(("push_to_hub", "export_hub_model_id", "use_swanlab"), EGRESS),
}
REFUSED_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*_name_or_path", OTHER_CODE),
    ("*_adapters", OTHER_CODE),
    ("kt_*", OTHER_CODE),
    ("*_dir", PLATFORM),
    ("*_path", PLATFORM),
    ("*_folder", PLATFORM),
    ("hub_*", EGRESS),
    ("swanlab_*", EGRESS),
    ("trackio_*", EGRESS),
    ("*_token", EGRESS),
    ("*_api_key", EGRESS),
    ("*_secret", EGRESS),
    ("*_url", EGRESS),
)
# Engine choices narrowed: trackers other than TensorBoard (which writes into the job's folder) send data away.
NARROWED_CHOICES: dict[str, tuple[str, ...]] = {"report_to": ("none", "tensorboard")}

# The keys that may hold a mapping, and what each mapping may hold (a kind, or a mapping of its own). LLaMA-Factory
# hands vllm_config / sglang_config to vLLM's / SGLang's engine arguments as they are: only serving knobs here.
Nested = dict[str, "tuple[str, ...] | Nested"]
NESTED: dict[str, Nested] = {
    "vllm_config": {
        **dict.fromkeys(
            """max_model_len max_num_seqs max_num_batched_tokens tensor_parallel_size pipeline_parallel_size block_size
            seed max_seq_len_to_capture max_lora_rank max_loras""".split(),
            ("int",),
        ),
        **dict.fromkeys("gpu_memory_utilization swap_space cpu_offload_gb".split(), ("float",)),
        **dict.fromkeys(
            """enforce_eager enable_prefix_caching enable_chunked_prefill disable_log_stats
            disable_custom_all_reduce""".split(),
            ("bool",),
        ),
        **dict.fromkeys("dtype kv_cache_dtype".split(), ("str",)),
    },
    "sglang_config": {
        **dict.fromkeys(
            """max_running_requests context_length chunked_prefill_size max_prefill_tokens tp_size dp_size
            cuda_graph_max_bs random_seed""".split(),
            ("int",),
        ),
        "mem_fraction_static": ("float",),
        **dict.fromkeys("disable_radix_cache disable_cuda_graph enable_torch_compile".split(), ("bool",)),
        **dict.fromkeys("dtype kv_cache_dtype schedule_policy attention_backend sampling_backend".split(), ("str",)),
    },
    "lr_scheduler_kwargs": {
        **dict.fromkeys("num_cycles power lr_end min_lr min_lr_rate min_lr_ratio".split(), ("float",)),
        **dict.fromkeys("num_decay_steps num_stable_steps timescale".split(), ("int",)),
        **dict.fromkeys("warmup_type decay_type".split(), ("str",)),
    },
    "gradient_checkpointing_kwargs": {"use_reentrant": ("bool",)},
    "liger_kernel_config": dict.fromkeys(
        "rope swiglu cross_entropy fused_linear_cross_entropy rms_norm layer_norm geglu".split(), ("bool",)
    ),
    "accelerator_config": {
        **dict.fromkeys(
            "split_batches dispatch_batches even_batches use_seedable_sampler non_blocking".split(), ("bool",)
        ),
        "gradient_accumulation_kwargs": {
            "num_steps": ("int",),
            **dict.fromkeys("adjust_scheduler sync_with_dataloader sync_each_batch".split(), ("bool",)),
        },
    },
}

KIND_NAMES = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "dict": "a mapping",
    "list": "a list",
    "null": "null",
    "object": "an engine object",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_overrides(
    overrides: dict[str, Any], *, parser: EngineParser, form: msgspec.Struct, stage: str | None = None
) -> None:
    """Refuse any override that is not an option of the engine's `parser`, reaches past the job, or holds a value
    of the wrong kind; `form` is the request (its numeric limits hold for overrides too), `stage` the form's."""
    fields = engine_fields(parser)
    for key, value in overrides.items():
        field = f"config_overrides.{key}"
        _refuse_key(key, field)
        spec = fields.get(key)
        if spec is None:
            raise ApiError(
                422,
                "unknown_override",
                f"{key} is not an option of LLaMA-Factory {engine_version()} for this kind of job",
                field,
            )
        if key == "stage":
            _check_stage(value, stage, field)
        elif key == "deepspeed":
            if not isinstance(value, str) or value not in ALLOWED_DEEPSPEED:
                raise ApiError(
                    422, "forbidden_override", f"deepspeed must be one of {sorted(ALLOWED_DEEPSPEED)}", field
                )
        else:
            _check_value(key, value, spec, field)
            _check_form_limit(key, value, type(form), field)


def _refuse_key(key: str, field: str) -> None:
    reason = REFUSED_KEYS.get(key) or next((r for p, r in REFUSED_PATTERNS if fnmatch.fnmatchcase(key, p)), None)
    if reason:
        raise ApiError(422, "forbidden_override", f"{key} {reason}", field)


def _check_stage(value: Any, stage: str | None, field: str) -> None:
    if stage is None:
        raise ApiError(422, "forbidden_override", "this kind of job has no stage to change", field)
    if value != stage:
        raise ApiError(
            422,
            "forbidden_override",
            f"stage is the form's ({stage!r}): choose another stage in the form, not in config_overrides",
            field,
        )


def _check_value(key: str, value: Any, spec: FieldSpec, field: str) -> None:
    """One top-level value against the engine's type of its key, then its strings and any mapping it holds."""
    kinds = spec.types
    if key in NESTED:
        kinds = tuple(k for k in kinds if k != "str")  # the JSON-text form would hide its keys from this check
    _check_kind(key, value, kinds, field)
    if isinstance(value, dict) and key not in NESTED:  # an engine mapping no allow-list covers yet
        raise ApiError(422, "invalid_override", f"{key} takes no mapping here", field)
    choices = NARROWED_CHOICES.get(key, spec.choices)
    for item in value if isinstance(value, list) else [value]:
        if choices and item is not None and item not in choices:
            raise ApiError(422, "invalid_override", f"{key} must be one of {', '.join(map(str, choices))}", field)
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_kind(key, item, spec.items, f"{field}[{i}]")
            _check_string(item, f"{field}[{i}]")
    elif isinstance(value, dict):
        _check_nested(value, NESTED[key], field, depth=1)
    else:
        _check_string(value, field)


def _check_nested(mapping: dict[str, Any], allowed: Nested, field: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ApiError(422, "invalid_override", "config_overrides is nested too deeply", field)
    for key, value in mapping.items():
        sub = f"{field}.{key}"
        _refuse_key(key, sub)
        spec = allowed.get(key)
        if spec is None:
            raise ApiError(
                422, "unknown_override", f"{field.split('.', 1)[1]} may hold only: {', '.join(sorted(allowed))}", sub
            )
        if isinstance(spec, dict):
            _check_kind(key, value, ("dict",), sub)
            _check_nested(value, spec, sub, depth + 1)
        else:
            _check_kind(key, value, spec, sub)
            _check_string(value, sub)


def kind_of(value: Any) -> str:
    """The YAML kind of a decoded JSON value."""
    match value:
        case bool():
            return "bool"
        case int():
            return "int"
        case float():
            return "float"
        case str():
            return "str"
        case dict():
            return "dict"
        case list():
            return "list"
        case None:
            return "null"
    return "object"


def _check_kind(key: str, value: Any, kinds: tuple[str, ...], field: str) -> None:
    kind = kind_of(value)
    if kind in kinds or (kind == "int" and "float" in kinds):
        return
    wanted = " or ".join(KIND_NAMES[k] for k in kinds) or "nothing"
    got = KIND_NAMES[kind] if kind in ("dict", "list", "object") else repr(value)[:40]
    raise ApiError(422, "invalid_override", f"{key} takes {wanted}, not {got}", field)


def _check_string(value: Any, field: str) -> None:
    """A string may name no path, URL or hub id: what a job reads and loads is the platform's to pick."""
    if not isinstance(value, str):
        return
    if value.startswith(("/", "~", "\\", "file:")) or ".." in value or "://" in value or ":\\" in value:
        raise ApiError(422, "forbidden_override", "override values cannot be paths or URLs", field)
    if _HUB_ID.match(value):
        raise ApiError(422, "forbidden_override", "override values cannot name a hub model or dataset", field)
    if "${" in value:  # the engine reads its YAML with OmegaConf, whose interpolations can read the environment
        raise ApiError(422, "forbidden_override", "override values cannot hold ${...} interpolations", field)


@functools.cache
def _form_limits(form: type[msgspec.Struct]) -> dict[str, Any]:
    """The annotated type of each field of a request form, a nested form's (a deployment's generation) included."""
    limits: dict[str, Any] = {}
    for f in msgspec.structs.fields(form):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            limits.update(_form_limits(f.type))
        else:
            limits[f.name] = f.type
    return limits


def _check_form_limit(key: str, value: Any, form: type[msgspec.Struct], field: str) -> None:
    """A number the form also asks for keeps the form's limits (a batch size of 10^9 is no override)."""
    limit = _form_limits(form).get(key)
    if limit is None or kind_of(value) not in ("int", "float"):
        return
    try:
        msgspec.convert(value, limit)
    except msgspec.ValidationError as error:
        message = f"{key}: {error} (the form's limit holds for overrides too)"
        raise ApiError(422, "invalid_override", message, field) from None
