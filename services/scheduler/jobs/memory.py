"""Estimate the GPU memory a training job needs, so a job no agent could hold is refused at submit.

The per-parameter costs start from LLaMA-Factory's published hardware table (7B: full AMP 120 GB,
full pure bf16 60 GB, freeze/LoRA 16 GB, QLoRA 8-bit 10 GB, 4-bit 6 GB, 2-bit 4 GB), i.e. bytes per
parameter for weights, gradients and optimizer state; activations are added from batch and cutoff.
The activation and overhead constants were fitted on an H100 (bench/gpu_check.py, docs/benchmarks.md):
per token, ~5 bytes per hidden unit per layer with gradient checkpointing, ~10 bytes per vocabulary
entry for the logits and loss, and 1.5 GiB fixed; they land 0-25% above the measured peaks.
"""

from __future__ import annotations

from typing import Any

import msgspec

GIB = 1024**3

# Bytes per parameter, from the table above (GB for 7B / 7e9).
BYTES_PER_PARAM = {
    "full": 120 / 7,
    "full_pure_bf16": 60 / 7,
    "freeze": 16 / 7,
    "lora": 16 / 7,
    "qlora8": 10 / 7,
    "qlora4": 6 / 7,
    "qlora2": 4 / 7,
}
OVERHEAD_BYTES = int(1.5 * GIB)  # CUDA context, allocator slack
BYTES_PER_HIDDEN_LAYER_TOKEN = {True: 5, False: 36}  # with / without gradient checkpointing
BYTES_PER_VOCAB_TOKEN = 10  # logits in bf16, their fp32 upcast for the loss, and its gradient
DEFAULT_VOCAB = 32_000


class MemoryEstimate(msgspec.Struct, kw_only=True):
    parameters: int
    method: str
    weights_and_optimizer_mb: int
    activations_mb: int
    total_mb: int
    per_gpu_mb: int


def _hidden_and_layers(parameters: int) -> tuple[int, int]:
    """A Llama-shaped guess when the model's config is unknown: params ≈ 12·layers·hidden²."""
    hidden = max(64, int((parameters / (12 * 32)) ** 0.5))
    layers = max(2, round(parameters / (12 * hidden * hidden)))
    return hidden, layers


def method_key(finetuning_type: str, quantization_bit: int | None, pure_bf16: bool = False) -> str:
    if finetuning_type == "qlora":
        bits = quantization_bit or 4
        return "qlora8" if bits >= 8 else "qlora4" if bits >= 4 else "qlora2"
    if finetuning_type == "full":
        return "full_pure_bf16" if pure_bf16 else "full"
    return finetuning_type


def estimate(
    *,
    parameters: int,
    finetuning_type: str,
    quantization_bit: int | None,
    batch_size: int,
    cutoff_len: int,
    gradient_checkpointing: bool,
    gpu_count: int,
    pure_bf16: bool = False,
    hidden: int | None = None,
    layers: int | None = None,
    vocab: int | None = None,
) -> MemoryEstimate:
    """GPU memory for one training job, total and per GPU (data parallel)."""
    method = method_key(finetuning_type, quantization_bit, pure_bf16)
    states = int(parameters * BYTES_PER_PARAM[method])
    if hidden is None or layers is None:
        hidden, layers = _hidden_and_layers(parameters)
    per_token = BYTES_PER_HIDDEN_LAYER_TOKEN[gradient_checkpointing] * hidden * layers + BYTES_PER_VOCAB_TOKEN * (
        vocab or DEFAULT_VOCAB
    )
    activations = batch_size * cutoff_len * per_token
    total = states + activations + OVERHEAD_BYTES
    gpus = max(gpu_count, 1)
    # With several GPUs a full fine-tune shards its states (ZeRO); adapters are replicated.
    states_per_gpu = states // gpus if method.startswith("full") else states
    per_gpu = states_per_gpu + activations + OVERHEAD_BYTES
    mb = 1024 * 1024
    return MemoryEstimate(
        parameters=parameters,
        method=method,
        weights_and_optimizer_mb=states // mb,
        activations_mb=activations // mb,
        total_mb=total // mb,
        per_gpu_mb=per_gpu // mb,
    )


# The keys of a training config the estimate reads; an override of one of them is what a refusal names.
TRAINING_KEYS = (
    "per_device_train_batch_size",
    "cutoff_len",
    "finetuning_type",
    "quantization_bit",
    "disable_gradient_checkpointing",
    "pure_bf16",
    "per_device_eval_batch_size",
)


def estimate_training(
    config: dict[str, Any],
    *,
    parameters: int,
    gpu_count: int,
    hidden: int | None = None,
    layers: int | None = None,
    vocab: int | None = None,
) -> MemoryEstimate:
    """`estimate` as a training job's merged config (form, then overrides) says: what the engine will run."""
    finetuning = config.get("finetuning_type", "lora")
    bits = config.get("quantization_bit")
    if finetuning in ("lora", "oft"):
        finetuning = "qlora" if bits else "lora"  # OFT adapters cost what LoRA's do
    batch = config.get("per_device_train_batch_size", 1)
    if config.get("val_size") or config.get("eval_dataset"):  # evaluation passes run at their own batch size
        batch = max(batch, config.get("per_device_eval_batch_size", batch))
    return estimate(
        parameters=parameters,
        finetuning_type=finetuning,
        quantization_bit=bits,
        pure_bf16=bool(config.get("pure_bf16")),
        batch_size=batch,
        cutoff_len=config.get("cutoff_len", 1024),
        gradient_checkpointing=not config.get("disable_gradient_checkpointing", False),
        gpu_count=gpu_count,
        hidden=hidden,
        layers=layers,
        vocab=vocab,
    )


INFERENCE_BYTES_PER_PARAM = 2  # bf16 weights, no gradients or optimizer state


def estimate_inference(
    *,
    parameters: int,
    batch_size: int,
    cutoff_len: int,
    gpu_count: int,
    hidden: int | None = None,
    layers: int | None = None,
    vocab: int | None = None,
) -> MemoryEstimate:
    """GPU memory to load a model and run forward passes (evaluation, export, serving), per GPU when the
    weights are spread over `gpu_count` GPUs."""
    weights = parameters * INFERENCE_BYTES_PER_PARAM
    if hidden is None or layers is None:
        hidden, layers = _hidden_and_layers(parameters)
    per_token = 2 * hidden * layers + BYTES_PER_VOCAB_TOKEN * (vocab or DEFAULT_VOCAB)  # no activations kept
    activations = batch_size * cutoff_len * per_token
    per_gpu = weights // max(gpu_count, 1) + activations + OVERHEAD_BYTES
    mb = 1024 * 1024
    return MemoryEstimate(
        parameters=parameters,
        method="inference",
        weights_and_optimizer_mb=weights // mb,
        activations_mb=activations // mb,
        total_mb=(weights + activations + OVERHEAD_BYTES) // mb,
        per_gpu_mb=per_gpu // mb,
    )


def advice(est: MemoryEstimate) -> str:
    """What to change when no agent can hold the job."""
    if est.method == "inference":
        return "spread the model over more GPUs (gpu_count), lower the batch size, or use a quantised export"
    tips = []
    if not est.method.startswith("qlora"):
        tips.append("use finetuning_type 'qlora' (4-bit)")
    tips.append(
        "lower per_device_train_batch_size or cutoff_len "
        "(raise gradient_accumulation_steps to keep the effective batch)"
    )
    tips.append("keep gradient_checkpointing on")
    return "; ".join(tips)


def model_shape(model_dir: str) -> dict[str, int]:
    """hidden, layers and vocab from a local model's config.json; empty when unknown (a hub id)."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    shape = {
        "hidden": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "vocab": config.get("vocab_size"),
    }
    return shape if all(isinstance(v, int) for v in shape.values()) else {}
