"""Render an export job: merge a LoRA adapter into its base, quantise a full model (bitsandbytes, GPTQ), or both
(two stages: merge, then quantise the merge)."""

from __future__ import annotations

from pathlib import Path

from services.common.errors import ApiError

from ..jobs.schemas import ExportRequest
from .common import (
    BASE_TEMPLATES,
    ENGINE_QUANTIZATION,
    EXPORT_COMMAND,
    ModelPaths,
    Rendered,
    Stage,
    deep_merge,
    merge_overrides,
    model_keys,
)
from .overrides import check_overrides


def check_export_request(req: ExportRequest, is_adapter: bool) -> None:
    q = req.quantization
    if req.export_device == "auto" and req.gpu_count == 0:
        raise ApiError(
            422, "invalid_field", "export_device 'auto' loads the model on GPUs: set gpu_count >= 1", "export_device"
        )
    if q is None:
        if not is_adapter:
            raise ApiError(
                422,
                "nothing_to_export",
                "this model is already a full model: exporting it without "
                "quantization would only copy it. Ask for quantization, or pick a LoRA adapter to merge",
                "quantization",
            )
        return
    if q.method == "bitsandbytes":
        if q.bits not in (4, 8):
            raise ApiError(422, "invalid_field", "bitsandbytes quantises to 4 or 8 bits", "quantization.bits")
        if req.gpu_count == 0:
            raise ApiError(
                422, "invalid_field", "bitsandbytes quantisation needs a GPU: set gpu_count >= 1", "gpu_count"
            )
        if q.calibration_dataset:
            raise ApiError(
                422,
                "invalid_field",
                "calibration_dataset applies to method 'gptq' only",
                "quantization.calibration_dataset",
            )
    elif not q.calibration_dataset:
        raise ApiError(
            422,
            "invalid_field",
            "GPTQ needs a calibration dataset: a plain-text dataset with a 'text' column",
            "quantization.calibration_dataset",
        )


def render_export(
    req: ExportRequest, *, model: ModelPaths, output_dir: Path, calibration_file: str | None = None
) -> Rendered:
    """Merge (a LoRA adapter), quantise (a full model), or both: merge into `output_dir/merged`, then
    quantise that. `export_quantization_*` keys appear only for GPTQ (the seed's rule)."""
    check_export_request(req, model.adapter_path is not None)
    check_overrides(req.config_overrides, parser="infer", form=req)
    on_gpu = req.gpu_count > 0
    common = {
        "template": req.template or model.template,
        "export_size": req.export_size,
        "export_device": "auto" if on_gpu and req.export_device == "auto" else req.export_device,
        "export_legacy_format": req.export_legacy_format,
    }
    export_dir = output_dir / "export"
    q = req.quantization

    def stage(name: str, source: ModelPaths, target: Path, quantise: bool) -> Stage:
        fields = dict(common)
        if quantise and q is not None and q.method == "bitsandbytes":
            fields.update(
                quantization_bit=q.bits, quantization_method=ENGINE_QUANTIZATION["bitsandbytes"], export_device="auto"
            )
        elif quantise and q is not None:
            fields.update(
                export_quantization_bit=q.bits,
                export_quantization_nsamples=q.calibration_samples,
                export_quantization_maxlen=q.calibration_maxlen,
            )
        config = merge_overrides(deep_merge(BASE_TEMPLATES["export"], fields), req.config_overrides, on_gpu)
        config.update(model_keys(source), export_dir=str(target), trust_remote_code=False)
        if quantise and q is not None and q.method == "gptq":
            config["export_quantization_dataset"] = calibration_file
        return Stage(name=name, command=EXPORT_COMMAND, config=config, hub=source.hub)

    if q is None:
        return Rendered(stages=[stage("merge", model, export_dir, quantise=False)])
    if model.adapter_path is None:
        return Rendered(stages=[stage("quantize", model, export_dir, quantise=True)])
    merged = output_dir / "merged"
    return Rendered(
        stages=[
            stage("merge", model, merged, quantise=False),
            stage("quantize", ModelPaths(model_path=str(merged), template=model.template), export_dir, quantise=True),
        ]
    )
