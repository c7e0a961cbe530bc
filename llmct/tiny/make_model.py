"""Build a tiny Llama (and its tokenizer) locally, so real LLaMA-Factory runs need no model hub.

Run it with the ENGINE's interpreter (it needs torch, transformers and tokenizers), from the repo root:

    .venv-engine/bin/python -m llmct.tiny.make_model --out MODEL_DIR [--data DATA_DIR]
    .venv-engine/bin/python llmct/tiny/make_model.py --out MODEL_DIR

The model: hidden 64, 2 layers, 4 heads, intermediate 128, a byte-level BPE tokenizer of ~2k tokens
trained here on built-in text, float32, and a chat template in the shape of LLaMA-Factory's `default`
template. Everything is seeded: the same arguments give byte-identical files. `--data` also writes
the tiny datasets (see data.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    from . import data as tiny_data
except ImportError:  # run as a file path: the package is not importable, its folder is
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import data as tiny_data  # type: ignore[no-redef]

DEFAULT_SEED = 0
VOCAB_SIZE = 2048
BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"

# Shaped like LLaMA-Factory's `default` template (which replaces it at train time anyway), so that
# tokenizer.apply_chat_template and `llamafactory-cli api` give the same prompt the model saw.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + eos_token + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Human: ' + message['content'] + eos_token + '\nAssistant:' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + '\n' }}"
    "{% endif %}{% endfor %}"
)

_PROSE = """\
A small model learns from a small amount of text. It reads one batch at a time and updates its weights.
The training loop computes a loss, takes the gradient and moves every parameter a little downhill.
Fine-tuning starts from weights that already exist; pretraining starts from random numbers.
LoRA keeps the base weights frozen and learns two thin matrices beside each projection.
The scheduler sends each job to a machine with enough memory, and the agent runs the engine there.
Logs stream back line by line. A checkpoint is written every few steps so that a stopped job can resume.
Evaluation measures the loss on held-out examples; prediction writes the generated answers to a file.
The weather was cold and clear. Children walked to school along the river, past the old stone bridge.
In the garden the apples were ripe, the tomatoes were red and the beans climbed the fence.
She opened the window, listened to the music from the street and wrote a letter on yellow paper.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 64 100 128 256 512 1000.
Punctuation: . , ; : ! ? ' " ( ) [ ] { } - _ / \\ + = * & % $ # @ < > | ~ `
System: You are a helpful assistant.
Human: What can you do?
Assistant: I can answer short questions, add numbers and spell words backwards.
"""


def _pseudo_words(seed: int, count: int = 4000) -> list[str]:
    """Seeded made-up words: enough distinct byte pairs for the BPE trainer to reach ~2k tokens."""
    import random

    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    return [
        " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(12))
        for _ in range(count // 12)
    ]


def corpus(seed: int = DEFAULT_SEED) -> list[str]:
    """The built-in text the tokenizer is trained on: prose, the tiny datasets, numbers, made-up words."""
    numbers = [" ".join(str(n) for n in range(start, start + 50)) for start in range(0, 1000, 50)]
    return _PROSE.splitlines() + list(tiny_data.corpus_lines(seed)) + numbers + _pseudo_words(seed)


def build_tokenizer(vocab_size: int = VOCAB_SIZE, seed: int = DEFAULT_SEED):
    """A byte-level BPE tokenizer (any UTF-8 text encodes, never <unk>) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(corpus(seed), trainer=trainer)
    bos_id = raw.token_to_id(BOS)
    # Prepend <s> like Llama's tokenizers do; LLaMA-Factory appends </s> itself via its template.
    raw.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=1024,
        padding_side="right",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, seed: int = DEFAULT_SEED):
    """A randomly initialised 2-layer Llama sized for CPU tests (~0.35M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: the smallest vLLM's CPU attention takes
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.max_new_tokens = 32
    return model


def make_tiny(out: str | Path, seed: int = DEFAULT_SEED, vocab_size: int = VOCAB_SIZE) -> Path:
    """Build the tokenizer and the model and save both into `out` (created if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, seed)
    model = build_model(tokenizer, seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():  # safetensors writes 0600; an engine container may run as another user
        path.chmod(0o644)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="model dir (LLaMA-Factory's model_name_or_path)")
    parser.add_argument("--data", type=Path, help="also write the tiny datasets into this dataset_dir")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args(argv)
    started = time.monotonic()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = make_tiny(args.out, args.seed, args.vocab_size)
    if args.data:
        tiny_data.write_tiny_datasets(args.data, seed=args.seed)
    config = json.loads((out / "config.json").read_text())
    print(
        f"tiny llama in {out}: vocab {config['vocab_size']}, hidden {config['hidden_size']}, "
        f"{config['num_hidden_layers']} layers ({time.monotonic() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
