"""An offline Hugging Face hub cache built from the tokenizer fixtures, so recipes run with their hub ids.

Each model id gets the layout `huggingface_hub` writes (`models--Org--Name/refs/main` naming a commit,
`snapshots/<commit>/` with the files), holding the fixture's real tokenizer and a tiny random model of
the fixture's own architecture (`model_type`, vocabulary rows, tied or untied embeddings). With
`HF_HUB_CACHE` pointing here and `HF_HUB_OFFLINE=1`, transformers, LF and the plugin resolve
`Qwen/Qwen3-0.6B` exactly as on a user's machine that downloaded it before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from lf_thinkplugin.demo.fixtures import QWEN3, QWEN25, R1_DISTILL

# hub id -> fixture folder name
HUB_MODELS = {
    "Qwen/Qwen3-0.6B": QWEN3,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": R1_DISTILL,
    "Qwen/Qwen2.5-0.5B-Instruct": QWEN25,
    "openai/gpt-oss-20b": "gpt-oss-20b",
}
# the real configs' dimensions, shrunk to a CPU-sized model; everything else is the checkpoint's own
_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "max_window_layers": 2, "max_position_embeddings": 8192}


def commit_of(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def snapshot_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit_of(repo_id)


def add_model(cache: Path, repo_id: str, fixture: Path, seed: int = 0) -> Path:
    """Write one tiny model with the fixture's tokenizer into the cache under `repo_id`; its snapshot folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    snapshot = snapshot_dir(cache, repo_id)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):  # gpt-oss: the template's own file
        if (fixture / name).is_file():
            shutil.copyfile(fixture / name, snapshot / name)
    if (fixture / "config.json").is_file():
        real = json.loads((fixture / "config.json").read_text(encoding="utf-8"))
        keep = {k: v for k, v in real.items() if k not in ("architectures", "model_type", "torch_dtype", "dtype", "transformers_version")}
        config = AutoConfig.for_model(real["model_type"], **{**keep, **_TINY})
    else:  # a fixture with the tokenizer only (gpt-oss-20b): a Qwen3-architecture stand-in of its vocabulary's size
        from lf_thinkplugin.loading.tokenizer import from_pretrained

        rows = len(from_pretrained(str(snapshot)))
        config = AutoConfig.for_model("qwen3", **_TINY, vocab_size=rows, tie_word_embeddings=True)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(snapshot))
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(commit_of(repo_id))
    return snapshot


# vision-language hub id -> the chat template (under the fixtures) of its tiny Qwen3-VL (tests/media_support.py)
VL_MODELS = {"Qwen/Qwen3-VL-2B-Instruct": "multimodal/Qwen-Qwen3-VL-2B-Instruct.jinja"}


def add_vl_model(cache: Path, repo_id: str) -> Path:
    """A tiny random Qwen3-VL with the real tokenizer, processor files and chat template, under `repo_id`."""
    from media_support import build_vl_model

    snapshot = build_vl_model(snapshot_dir(cache, repo_id), VL_MODELS[repo_id])
    (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text(commit_of(repo_id))
    return snapshot


def build_hub_cache(cache: Path, fixtures: dict[str, Path]) -> Path:
    """The cache folder (`HF_HUB_CACHE`) with every model of `fixtures` (hub id -> fixture folder)."""
    for repo_id, folder in fixtures.items():
        add_model(cache, repo_id, folder)
    return cache
