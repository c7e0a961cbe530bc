"""Run by the engine's interpreter (.venv-engine: torch, peft), not the platform's: N LoRA adapters of a model, each
with random weights (so each changes the model's answers), and a merged copy of the first.

    .venv-engine/bin/python bench/_tiny_adapters.py --model DIR --out DIR --count N [--rank R] [--merged DIR]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--merged", type=Path)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for i in range(args.count):
        base = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
        config = LoraConfig(
            r=args.rank, lora_alpha=2 * args.rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
        )
        model = get_peft_model(base, config)
        torch.manual_seed(1000 + i)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (no change): give each adapter an effect of its own
                torch.nn.init.normal_(param, std=0.5)
        folder = args.out / f"adapter-{i}"
        model.save_pretrained(folder)
        if i == 0 and args.merged:
            model.merge_and_unload().save_pretrained(args.merged, safe_serialization=True)
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
                if (args.model / name).exists():
                    shutil.copy(args.model / name, args.merged / name)


if __name__ == "__main__":
    main()
