"""GPU check, run on a machine with an NVIDIA GPU (not part of the test suite).

1. Measures the real peak GPU memory of training steps (forward, backward, AdamW step, gradient
   checkpointing on, bf16 weights for adapters, fp32 master weights for full fine-tuning) on
   Llama-shaped models made locally with random weights, and compares it with the scheduler's
   estimate (services/scheduler/jobs/memory.py) that decides whether a job is refused at submit.
2. Reads the agent's heartbeat view of the GPU (services/agent/resources.read_gpus, NVML) while a
   run is in progress, to show real memory, utilisation and temperature.

    python -m bench.gpu_check --out results.json
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from services.agent.resources import read_gpus
from services.scheduler.jobs.memory import estimate

SHAPES = {
    "llama-1.1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
    },
    "llama-7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
}
CASES = [
    ("llama-1.1b", "full", 4, 1024),
    ("llama-1.1b", "full", 16, 2048),
    ("llama-1.1b", "lora", 4, 1024),
    ("llama-1.1b", "freeze", 4, 1024),
    ("llama-7b", "lora", 2, 1024),
    ("llama-7b", "lora", 8, 2048),
    ("llama-7b", "freeze", 4, 2048),
]


def build(shape: str, method: str) -> torch.nn.Module:
    config = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, **SHAPES[shape])
    dtype = torch.float32 if method == "full" else torch.bfloat16
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(dtype)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    elif method == "freeze":  # LLaMA-Factory's default: train the last layers only
        for name, param in model.named_parameters():
            param.requires_grad = any(
                f"layers.{i}." in name for i in range(config.num_hidden_layers - 2, config.num_hidden_layers)
            )
    return model


def measure(shape: str, method: str, batch: int, cutoff: int, steps: int = 3) -> dict:
    model = build(shape, method)
    # Building in fp32 then casting peaks higher than training would: measure from here on.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    parameters = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    tokens = torch.randint(0, 32000, (batch, cutoff), device="cuda")
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak_mb = torch.cuda.max_memory_reserved() // 2**20
    allocated_mb = torch.cuda.max_memory_allocated() // 2**20
    config = SHAPES[shape]
    est = estimate(
        parameters=parameters,
        finetuning_type=method,
        quantization_bit=None,
        batch_size=batch,
        cutoff_len=cutoff,
        gradient_checkpointing=True,
        gpu_count=1,
        hidden=config["hidden_size"],
        layers=config["num_hidden_layers"],
    )
    del model, optimizer, loss
    torch.cuda.empty_cache()
    return {
        "shape": shape,
        "method": method,
        "batch": batch,
        "cutoff": cutoff,
        "parameters": parameters,
        "hidden": config["hidden_size"],
        "layers": config["num_hidden_layers"],
        "vocab": 32000,
        "peak_reserved_mb": peak_mb,
        "peak_allocated_mb": allocated_mb,
        "estimate_mb": est.per_gpu_mb,
        "estimate_over_real": est.per_gpu_mb / peak_mb,
        "tokens_per_s": batch * cutoff * steps / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    seen: list = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(g for g in read_gpus())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = []
    for case in CASES:
        try:
            results.append(measure(*case))
        except torch.OutOfMemoryError:
            results.append({"shape": case[0], "method": case[1], "batch": case[2], "cutoff": case[3], "oom": True})
            torch.cuda.empty_cache()
        print(json.dumps(results[-1]), flush=True)
    stop.set()
    watcher.join()
    busiest = max(seen, key=lambda g: g.memory_used_mb) if seen else None
    report = {
        "device": torch.cuda.get_device_name(0),
        "cases": results,
        "heartbeat_idle": [
            g.__struct_fields__ and {f: getattr(g, f) for f in g.__struct_fields__} for g in read_gpus()
        ],
        "heartbeat_busiest": busiest and {f: getattr(busiest, f) for f in busiest.__struct_fields__},
        "heartbeat_max_util_pct": max((g.utilization_pct for g in seen), default=None),
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=2))


if __name__ == "__main__":
    main()
