"""A tiny Qwen3-architecture model for the demo, tests and benchmarks, built offline.

The model is random-initialised (2 layers, hidden 64 by default) and saved with a tokenizer in
`save_pretrained` layout, so `model_name_or_path` can point at it like at any hub checkpoint.
The tokenizer is a real fixture tokenizer when one is given, else a small Qwen3-style BPE
tokenizer built here (same chat tokens, same think tags, Qwen3's own chat template).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

# Qwen3's official chat template for the self-built tokenizer, so both paths render alike.
_QWEN3_TEMPLATE_NAME = "Qwen-Qwen3-0.6B.jinja"

_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_THINK = ["<think>", "</think>"]


def _build_tokenizer(out: Path, chat_template: str) -> None:
    """A byte-level BPE tokenizer with Qwen3's chat tokens (special) and think tags (not special)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Hello world. The answer is 42. Let me think step by step about this problem.",
        "What is two plus two? Two plus two is four. 你好，世界。思考一下。",
        "user assistant system\n\nOkay, so the question asks for a sum; add the numbers.",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=chat_template
    )
    fast.add_tokens(_THINK)  # single tokens, not special: skip_special_tokens keeps them (as in Qwen3)
    fast.save_pretrained(str(out))


def build_tiny_model(
    out_dir: str | Path,
    tokenizer_from: Optional[str | Path] = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    tie_word_embeddings: bool = True,
    vocab_rows: Optional[int] = None,
    seed: int = 0,
) -> Path:
    """Save a random tiny Qwen3ForCausalLM plus tokenizer into out_dir and return it.

    vocab_rows: embedding rows (defaults to the fixture's config vocab_size, i.e. with Qwen's spare
    rows, else len(tokenizer) rounded up to a multiple of 64).
    """
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from .fixtures import fixtures_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_from is not None:
        src = Path(tokenizer_from)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(src / name, out / name)
        if vocab_rows is None and (src / "config.json").is_file():
            vocab_rows = json.loads((src / "config.json").read_text())["vocab_size"]
    else:
        template_file = fixtures_dir() / "chat_templates" / _QWEN3_TEMPLATE_NAME
        if template_file.is_file():
            chat_template = template_file.read_text(encoding="utf-8")
        else:
            chat_template = (Path(__file__).resolve().parent.parent / "templates" / "qwen3_official.jinja").read_text(encoding="utf-8")
        _build_tokenizer(out, chat_template)

    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    if vocab_rows is None:
        vocab_rows = -(-len(tokenizer) // 64) * 64
    config = Qwen3Config(
        vocab_size=vocab_rows,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=2048,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(str(out))
    return out
