"""What a train or export job leaves when it succeeds (`jobs.output`), rendered at submit from its request and
frozen config, the one place that reads them: the registry registers it as it is (services.common.readmodels).

One function per job kind that produces a model; evaluations and deployments produce none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from services.common.contracts import JobOutput


def train_output(request: Mapping, config: Mapping) -> JobOutput | None:
    """A training job leaves a LoRA adapter (lora, qlora) or a full model (full, freeze) in its output folder
    (None for a config without one: nothing to register)."""
    if not config.get("output_dir"):
        return None
    # dataset_info.json keys, as the engine saw them: unique, where the names in `datasets` are per owner.
    keys = [key for key in str(config.get("dataset") or "").split(",") if key]
    details = {
        "stage": config.get("stage"),
        "finetuning_type": request.get("finetuning_type"),
        "quantization_bit": config.get("quantization_bit"),
        "dataset_keys": keys or None,
    }
    return JobOutput(
        kind="lora" if config.get("finetuning_type") == "lora" else "full",
        source="train",
        path=config["output_dir"],
        parent_name=request.get("base_model"),
        parent_location=config.get("model_name_or_path"),
        label=str(config.get("stage") or "train"),
        datasets=tuple(request.get("datasets") or ()),
        template=config.get("template"),
        details={k: v for k, v in details.items() if v is not None},
    )


def export_output(request: Mapping, config: Mapping) -> JobOutput | None:
    """An export merges an adapter into its base, or quantises a model, into `export_dir` (the seed's
    `output/<export_id>/export`); its parent is the model it exported (the adapter when there is one)."""
    if not (config.get("export_dir") or config.get("output_dir")):
        return None
    gptq_bits = config.get("export_quantization_bit")
    bits = gptq_bits or config.get("quantization_bit")
    path = config.get("export_dir") or str(Path(config["output_dir"]) / "export")
    method = "gptq" if gptq_bits else config.get("quantization_method", "bitsandbytes") if bits else None
    method = "bitsandbytes" if method == "bnb" else method  # the engine's name for it (ENGINE_QUANTIZATION)
    details = {"quantization_bit": bits, "quantization_method": method}
    return JobOutput(
        kind="quantized" if bits else "full",
        source="export",
        path=path,
        parent_name=request.get("model") or request.get("base_model"),
        parent_location=config.get("adapter_name_or_path") or config.get("model_name_or_path"),
        label=f"q{bits}" if bits else "export",
        template=config.get("template"),
        details={k: v for k, v in details.items() if v is not None},
    )


PRODUCERS: dict[str, Callable[[Mapping, Mapping], JobOutput | None]] = {"train": train_output, "export": export_output}


def output_of(kind: str, request: Mapping, config: Mapping) -> JobOutput | None:
    """The output a job of `kind` will leave, or None for kinds that leave none."""
    produce = PRODUCERS.get(kind)
    return produce(request, config) if produce else None


class JobInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What a job reads and leaves, in columns of the jobs table other services may read (readmodels)."""

    dataset_keys: list[str]
    model_name: str | None
    output: JobOutput | None


def job_inputs(kind: str, request: Mapping, config: Mapping) -> JobInputs:
    """The dataset_info keys the job's YAML reads, the model its request names, and the output it will leave."""
    keys = [key for field in ("dataset", "eval_dataset") for key in str(config.get(field) or "").split(",") if key]
    return JobInputs(
        dataset_keys=keys,
        model_name=request.get("base_model") or request.get("model"),
        output=output_of(kind, request, config),
    )
