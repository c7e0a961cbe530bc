"""Run by the ENGINE's interpreter: do a merged export's weights equal base + LoRA adapter?

    .venv-engine/bin/python tests/e2e/merge_check.py BASE ADAPTER MERGED

Prints JSON: the largest logit difference of the merged model from base+adapter (peft, unmerged)
and from the bare base, on a fixed prompt.
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(base: str, adapter: str, merged: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    inputs = tokenizer("What is the capital of Canada?", return_tensors="pt")
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        base_logits = plain(**inputs).logits
        with_adapter = PeftModel.from_pretrained(plain, adapter)(**inputs).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)(**inputs).logits
    print(
        json.dumps(
            {
                "merged_vs_adapter": (merged_logits - with_adapter).abs().max().item(),
                "merged_vs_base": (merged_logits - base_logits).abs().max().item(),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
