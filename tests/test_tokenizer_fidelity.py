"""Tokenizers that corrupt ids under transformers 5.x (R1-Distill, DeepSeek-V3) are replaced in plugin runs."""

import re

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from conftest import require_fixture
from lfrun import base_config, train

from lf_thinkplugin.demo.fixtures import DEEPSEEK_V3, QWEN3, R1_DISTILL
from lf_thinkplugin.loading.tokenizer import PROBE, from_pretrained, mismatch

TEXT = "Hello world,\n\n  the answer is 42."


def _raw_ids(folder, text):
    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("name", [R1_DISTILL, DEEPSEEK_V3])
def test_corrupting_class_is_detected_and_replaced(name, tmp_path):
    folder = require_fixture(name)
    stock = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    found = mismatch(stock, str(folder), local_files_only=True)
    assert found is not None and found.expected == _raw_ids(folder, PROBE)  # the transformers defect is real
    fixed = from_pretrained(str(folder), local_files_only=True)
    assert isinstance(fixed, PreTrainedTokenizerFast) and type(fixed) is not type(stock)
    assert fixed.encode(TEXT, add_special_tokens=False) == _raw_ids(folder, TEXT)
    assert fixed.apply_chat_template([{"role": "user", "content": TEXT}], tokenize=False) == \
        stock.apply_chat_template([{"role": "user", "content": TEXT}], tokenize=False)  # same template, same tokens map
    fixed.save_pretrained(str(tmp_path))  # what training saves: re-loads faithfully with plain AutoTokenizer
    again = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert again.encode(TEXT, add_special_tokens=False) == _raw_ids(folder, TEXT)


def test_faithful_tokenizer_is_left_alone():
    folder = require_fixture(QWEN3)
    tokenizer = from_pretrained(str(folder), local_files_only=True)
    assert type(tokenizer) is type(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
    assert mismatch(tokenizer, str(folder), local_files_only=True) is None


@pytest.mark.slow
def test_r1_distill_training_uses_the_right_ids_only_with_the_plugin(tmp_path):
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    folder = require_fixture(R1_DISTILL)
    model = build_tiny_model(tmp_path / "model", tokenizer_from=folder)
    prompt_ids = _raw_ids(folder, "What is 2 + 3?")  # the first sample's question
    printed = {}
    for name, env, block in (("on", {}, {"log_span_loss": False}), ("off", {"LF_THINKPLUGIN_DISABLE": "1"}, None)):
        config = base_config(model, tmp_path / name / "out", template="deepseekr1", max_steps=1)
        if block is not None:
            config["thinkplugin"] = block
        proc = train(config, tmp_path / name, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ids = re.search(r"input_ids:\n\[([0-9, ]+)\]", proc.stdout + proc.stderr).group(1)
        printed[name] = [int(i) for i in ids.split(",")]
    contains = {k: any(v[i:i + len(prompt_ids)] == prompt_ids for i in range(len(v))) for k, v in printed.items()}
    assert contains == {"on": True, "off": False}
