"""Every stage LF offers, through `llamafactory-cli train`: token_init adds, initialises and saves the same
way in pt, sft, dpo, kto and rm, with LF as released (patched seam) and with LF carrying the upstream
hooks patch (native). The tiny Qwen3-architecture model carries the real Qwen2.5 tokenizer, which has
no think tags, so `<think>` / `</think>` are new (151665 / 151666, inside Qwen's spare rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lfrun import SEAM_PROBE, train_ok
from safetensors.torch import load_file
from token_rows import END, THINK, combo, lf_config, weights

pytestmark = pytest.mark.slow
SOURCES = {"<think>": ["思考", "think"], "</think>": ["answer", "end"]}
QA = [("What is 2+2?", "<think>\nTwo plus two is four.\n</think>\n\n4", "<think>\nNo idea.\n</think>\n\n5"),
      ("Say hello.", "<think>\nA greeting is asked for.\n</think>\n\nHello!", "<think>\nHm.\n</think>\n\nBye."),
      ("Capital of France?", "<think>\nParis is its capital.\n</think>\n\nParis", "<think>\nRome?\n</think>\n\nRome")]


@pytest.fixture(scope="module")
def stage_data(tmp_path_factory) -> Path:
    """One small dataset per data shape: plain text (pt), pairwise (dpo, rm), KTO-tagged, SFT."""
    folder = tmp_path_factory.mktemp("stage_data")
    files = {
        "pt": [{"text": q + "\n" + good} for q, good, _ in QA] * 3,
        "pairs": [{"instruction": q, "input": "", "chosen": good, "rejected": bad} for q, good, bad in QA] * 3,
        "kto": [{"messages": [{"from": "human", "value": q}, {"from": "gpt", "value": a}], "label": ok}
                for q, good, bad in QA for a, ok in ((good, True), (bad, False))] * 2,
        "sft": [{"instruction": q, "input": "", "output": good} for q, good, _ in QA] * 3,
    }
    for name, rows in files.items():
        (folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info = {
        "pt": {"file_name": "pt.json", "columns": {"prompt": "text"}},
        "pairs": {"file_name": "pairs.json", "ranking": True,
                  "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"}},
        "sft": {"file_name": "sft.json"},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


DATASET = {"pt": "pt", "sft": "sft", "dpo": "pairs", "rm": "pairs", "kto": "kto"}


@pytest.mark.parametrize("mode", ["patched", "native"])
@pytest.mark.parametrize("stage", ["pt", "sft", "dpo", "kto", "rm"])
def test_token_init_in_every_stage(stage, mode, qwen25_untied, stage_data, tmp_path, request):
    out = tmp_path / "out"
    # a learning rate of 0: the saved rows are exactly the rows token_init wrote (the step changes nothing)
    cfg = lf_config(qwen25_untied, stage_data, out, {"token_init": SOURCES}, stage=stage, dataset=DATASET[stage],
                    finetuning_type="lora", lora_target="all", max_steps=1, save_steps=10, learning_rate=0.0,
                    per_device_train_batch_size=2)
    env = request.getfixturevalue("patched_lf") if mode == "native" else None
    log = train_ok(cfg, tmp_path, env=env, command=[sys.executable, "-c", SEAM_PROBE])
    assert ("SEAM_MODE native []" in log) == (mode == "native")
    saved = yaml.safe_load((out / "thinkplugin_args.yaml").read_text())
    assert saved["thinkplugin"]["token_init"]["<think>"]["sources"] == SOURCES["<think>"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"embed_tokens": [THINK, END], "lm_head": [THINK, END]}
    adapter = load_file(str(out / "adapter_model.safetensors"))
    rows = adapter["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]
    start = weights(qwen25_untied)["model.embed_tokens.weight"]
    tokenizer = _tokenizers_lib(qwen25_untied)  # the oracle encodes with the `tokenizers` library, not the plugin's loader
    for row, token in zip(rows, ("<think>", "</think>"), strict=True):
        torch.testing.assert_close(row, combo(start, tokenizer, SOURCES[token]), rtol=0, atol=1e-6)
    grown = _tokenizers_lib(out).tok  # the saved tokenizer holds the new tokens at the planned ids
    assert [grown.token_to_id("<think>"), grown.token_to_id("</think>")] == [THINK, END]


class _tokenizers_lib:
    """`encode(text, add_special_tokens=False)` over tokenizer.json read by the `tokenizers` library."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids
