"""What a succeeded job leaves behind, read from its stored request and frozen config.

One function per job kind that produces a model; the registry registers each the same way. Jobs that
produce none (evaluation, deployment) are not listed.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

MAX_NAME = 128


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """A model a job produced, before it is linked to its parent."""

    kind: str  # lora | full | quantized
    source: str  # train | export
    path: str
    parent_name: str | None
    parent_location: str | None
    label: str  # the middle of the default name: the training stage, "export", "q4", ...
    datasets: tuple[str, ...] = ()
    template: str | None = None
    details: dict = msgspec.field(default_factory=dict)


def train_output(request: Mapping, config: Mapping) -> Output:
    """A training job leaves a LoRA adapter (lora, qlora) or a full model (full, freeze) in its output folder."""
    # dataset_info.json keys, as the engine saw them: unique, where the names in `datasets` are per owner.
    keys = [key for key in str(config.get("dataset") or "").split(",") if key]
    details = {"stage": config.get("stage"), "finetuning_type": request.get("finetuning_type"),
               "quantization_bit": config.get("quantization_bit"), "dataset_keys": keys or None}
    return Output(
        kind="lora" if config.get("finetuning_type") == "lora" else "full", source="train",
        path=config["output_dir"], parent_name=request.get("base_model"),
        parent_location=config.get("model_name_or_path"), label=str(config.get("stage") or "train"),
        datasets=tuple(request.get("datasets") or ()), template=config.get("template"),
        details={k: v for k, v in details.items() if v is not None},
    )


def export_output(request: Mapping, config: Mapping) -> Output:
    """An export merges an adapter into its base, or quantises a model, into `export_dir` (the seed's
    `output/<export_id>/export`); its parent is the model it exported (the adapter when there is one)."""
    gptq_bits = config.get("export_quantization_bit")
    bits = gptq_bits or config.get("quantization_bit")
    path = config.get("export_dir") or str(Path(config["output_dir"]) / "export")
    method = "gptq" if gptq_bits else config.get("quantization_method", "bitsandbytes") if bits else None
    details = {"quantization_bit": bits, "quantization_method": method}
    return Output(
        kind="quantized" if bits else "full", source="export", path=path,
        parent_name=request.get("model") or request.get("base_model"),
        parent_location=config.get("adapter_name_or_path") or config.get("model_name_or_path"),
        label=f"q{bits}" if bits else "export", template=config.get("template"),
        details={k: v for k, v in details.items() if v is not None},
    )


PRODUCERS: dict[str, Callable[[Mapping, Mapping], Output]] = {"train": train_output, "export": export_output}


def default_name(parent: str, label: str, job_id: str, long: bool = False) -> str:
    """`<parent>-<label>-<job id suffix>`, cut to fit; `long` uses the whole job id (after a clash)."""
    suffix = job_id.rsplit("_", 1)[-1]
    tail = f"-{label}-{suffix if long else suffix[-8:]}"
    return parent[: MAX_NAME - len(tail)] + tail


def folder_size(path: str) -> int | None:
    """Bytes under `path`, or None when it is not there (blocking: run it in a thread)."""
    root = Path(path)
    if not root.is_dir():
        return None
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except OSError:
                continue
    return total


def count_parameters(model_dir: str | Path) -> int | None:
    """Parameters of a safetensors model, read from the file headers only (blocking; no torch needed)."""
    total = 0
    files = sorted(Path(model_dir).glob("*.safetensors"))
    try:
        for path in files:
            with open(path, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            for name, tensor in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in tensor["shape"]:
                        count *= dim
                    total += count
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return total if files else None
