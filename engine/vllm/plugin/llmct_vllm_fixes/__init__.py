"""Fixes to vLLM that LLM-Cloud-Trainer needs, loaded by vLLM itself in each of its processes (a general plugin).

1. Mixed base and LoRA batches on the CPU (vLLM PRs #48421 and #49656, open upstream): the torch LoRA ops index the
   adapters' weights with each token's slot, and a base-model token's slot is -1, which Python's indexing reads as
   the last slot. Once the last slot holds an adapter (with one slot, always) a base request batched beside an
   adapter request gets that adapter's delta: silently wrong tokens. The ops are wrapped so that slot -1 selects
   weights of zeros. Registering twice is harmless (vLLM may load plugins more than once per process).
"""

from __future__ import annotations

import functools
import importlib

_OPS = ("bgmv_expand", "bgmv_shrink", "bgmv_expand_slice")
_MODULES = ("vllm.lora.ops.torch_ops.lora_ops", "vllm.lora.ops.torch_ops", "vllm.lora.punica_wrapper.punica_cpu")


def _no_adapter_is_zero(op):
    """`op(inputs, weights, output, indices, ...)`, with index -1 choosing an all-zero slot appended to `weights`."""
    import torch

    @functools.wraps(op)
    def wrapped(inputs, weights, output, indices, *args, **kwargs):
        if bool((indices < 0).any()):
            weights = torch.cat([weights, torch.zeros_like(weights[:1])])  # slot -1 is now this one
        return op(inputs, weights, output, indices, *args, **kwargs)

    wrapped.__llmct_fixed__ = True
    return wrapped


def register() -> None:
    try:
        lora_ops = importlib.import_module(_MODULES[0])
    except ImportError:  # a vLLM without the torch LoRA ops: nothing to fix
        return
    fixed = {}
    for name in _OPS:
        op = getattr(lora_ops, name)
        fixed[name] = op if getattr(op, "__llmct_fixed__", False) else _no_adapter_is_zero(op)
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a build without this module (the CPU wrapper on a GPU build)
            continue
        for name, op in fixed.items():
            if hasattr(module, name):
                setattr(module, name, op)
