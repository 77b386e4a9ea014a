"""Tokenizers that corrupt ids under transformers 5.x (R1-Distill, DeepSeek-V3/R1/V3.1) are replaced in plugin
runs; the others are left as AutoTokenizer loads them.

Expected ids are literals: each was obtained once with the `tokenizers` library reading the fixture's
tokenizer.json (`Tokenizer.from_file(".../tokenizer.json").encode(text, add_special_tokens=False).ids`),
not by the code under test, and agrees with the facts table of the fixtures' README (`<think>` 151667 in
Qwen3, 151648 in R1-Distill, 128798 in DeepSeek-R1; `<|im_start|>` 151644; ...). The tests also re-derive
them with `tokenizers` at run time, so a changed fixture shows up as such.
"""

import re

import pytest
from conftest import require_fixture
from lfrun import base_config, train
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lf_thinkplugin.demo.fixtures import DEEPSEEK_V3, QWEN3, QWEN25, R1_DISTILL
from lf_thinkplugin.loading import tokenizer as fidelity
from lf_thinkplugin.loading.tokenizer import PROBE, faithful, from_pretrained, mismatch

DEEPSEEK_R1, DEEPSEEK_V31, GPT_OSS = "DeepSeek-R1", "DeepSeek-V3.1", "gpt-oss-20b"
TEXT = "Hello world,\n\n  the answer is 42.\t你好，世界。"
QWEN_TEXT = [9707, 1879, 3554, 220, 279, 4226, 374, 220, 19, 17, 13, 197, 108386, 3837, 99489, 1773]  # Qwen2 BPE
DEEPSEEK_TEXT = [19923, 2058, 2893, 223, 270, 3287, 344, 223, 3180, 16, 200, 30594, 303, 3427, 320]  # DeepSeek-V3 BPE
GPT_OSS_TEXT = [13225, 2375, 4464, 220, 290, 6052, 382, 220, 4689, 13, 197, 177519, 979, 28428, 788]  # o200k

# fixture: (TEXT's ids, {chat-template token: its ids}, (text with two of them inside, its ids))
EXPECTED = {
    QWEN3: (QWEN_TEXT, {"<|im_start|>": [151644], "<|im_end|>": [151645], "<think>": [151667], "</think>": [151668]},
            ("user<|im_start|>hi <|im_end|>\n", [872, 151644, 6023, 220, 151645, 198])),
    R1_DISTILL: (QWEN_TEXT, {"<｜begin▁of▁sentence｜>": [151646], "<｜end▁of▁sentence｜>": [151643], "<｜User｜>": [151644],
                             "<｜Assistant｜>": [151645], "<think>": [151648], "</think>": [151649]},
                 ("user<｜begin▁of▁sentence｜>hi <｜end▁of▁sentence｜>\n", [872, 151646, 6023, 220, 151643, 198])),
    QWEN25: (QWEN_TEXT, {"<|im_start|>": [151644], "<|im_end|>": [151645], "<think>": [13708, 766, 29]},  # no <think>
             ("user<|im_start|>hi <|im_end|>\n", [872, 151644, 6023, 220, 151645, 198])),
    DEEPSEEK_V3: (DEEPSEEK_TEXT, {"<｜begin▁of▁sentence｜>": [0], "<｜end▁of▁sentence｜>": [1], "<｜User｜>": [128803],
                                  "<｜Assistant｜>": [128804], "<think>": [30, 37947, 32]},  # no <think> in V3
                  ("user<｜begin▁of▁sentence｜>hi <｜end▁of▁sentence｜>\n", [5265, 0, 6366, 223, 1, 201])),
    DEEPSEEK_R1: (DEEPSEEK_TEXT, {"<｜begin▁of▁sentence｜>": [0], "<｜User｜>": [128803], "<｜Assistant｜>": [128804],
                                  "<think>": [128798], "</think>": [128799]},
                  ("user<｜begin▁of▁sentence｜>hi <｜User｜>\n", [5265, 0, 6366, 223, 128803, 201])),
    DEEPSEEK_V31: (DEEPSEEK_TEXT, {"<｜User｜>": [128803], "<｜Assistant｜>": [128804], "<think>": [128798],
                                   "</think>": [128799], "<｜search▁begin｜>": [128796]},
                   ("user<｜User｜>hi <｜Assistant｜>\n", [5265, 128803, 6366, 223, 128804, 201])),
    GPT_OSS: (GPT_OSS_TEXT, {"<|startoftext|>": [199998], "<|start|>": [200006], "<|channel|>": [200005],
                             "<|message|>": [200008], "<|end|>": [200007], "<|return|>": [200002]},
              ("user<|startoftext|>hi <|start|>\n", [1428, 199998, 3686, 220, 200006, 198])),
}
CORRUPTED = [R1_DISTILL, DEEPSEEK_V3, DEEPSEEK_R1, DEEPSEEK_V31]  # tokenizer_class LlamaTokenizerFast
FAITHFUL = [QWEN3, QWEN25, GPT_OSS]
BOS = {R1_DISTILL: 151646, DEEPSEEK_V3: 0, DEEPSEEK_R1: 0, DEEPSEEK_V31: 0}  # <｜begin▁of▁sentence｜>


def _raw(folder) -> Tokenizer:
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def _raw_ids(folder, text):
    return _raw(folder).encode(text, add_special_tokens=False).ids


def _stock(folder):
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def assert_expected_ids(tok, name, *, with_bos=False):
    """The literal ids of EXPECTED[name], with add_special_tokens False and True (BOS only when with_bos)."""
    text_ids, tokens, (inside, inside_ids) = EXPECTED[name]
    assert tok.encode(TEXT, add_special_tokens=False) == text_ids
    assert tok.encode(TEXT, add_special_tokens=True) == ([BOS[name]] if with_bos else []) + text_ids
    for token, ids in tokens.items():
        assert tok.encode(token, add_special_tokens=False) == ids, token
    assert tok.encode(inside, add_special_tokens=False) == inside_ids


@pytest.mark.parametrize("name", list(EXPECTED))
def test_literal_ids_are_what_tokenizers_reads_from_tokenizer_json(name):
    """The oracle itself: the literals equal the `tokenizers` library on the fixture (no transformers involved),
    and tokenizer.json's post_processor adds no BOS / EOS in any fixture."""
    raw = _raw(require_fixture(name))
    text_ids, tokens, (inside, inside_ids) = EXPECTED[name]
    assert raw.encode(TEXT, add_special_tokens=False).ids == text_ids == raw.encode(TEXT, add_special_tokens=True).ids
    assert {t: raw.encode(t, add_special_tokens=False).ids for t in tokens} == tokens
    assert raw.encode(inside, add_special_tokens=False).ids == inside_ids


@pytest.mark.parametrize("name", FAITHFUL)
def test_faithful_tokenizer_is_left_alone(name):
    folder = require_fixture(name)
    stock = _stock(folder)
    assert mismatch(stock, str(folder), local_files_only=True) is None
    tokenizer = from_pretrained(str(folder), local_files_only=True)
    assert type(tokenizer) is type(stock)
    kept, found = faithful(stock, str(folder), local_files_only=True)
    assert kept is stock and found is None  # the very object, untouched
    assert_expected_ids(tokenizer, name)


@pytest.mark.parametrize("name", CORRUPTED)
def test_corrupting_class_is_detected_and_replaced(name, tmp_path):
    folder = require_fixture(name)
    stock = _stock(folder)
    assert stock.encode(TEXT, add_special_tokens=False) != EXPECTED[name][0]  # the transformers defect is real
    found = mismatch(stock, str(folder), local_files_only=True)
    assert found is not None and found.kind == "text" and found.text == PROBE
    assert found.expected == _raw_ids(folder, PROBE) and found.got == stock.encode(PROBE, add_special_tokens=False)
    message = found.describe()
    assert type(stock).__name__ in message and '"tokenizer_class": "PreTrainedTokenizerFast"' in message
    # tokenizer_config.json says add_bos_token: true, tokenizer.json adds no BOS: the report says so
    assert "add_bos_token: true" in found.note and f"[{BOS[name]}] before the text" in found.note

    fixed = from_pretrained(str(folder), local_files_only=True)
    assert isinstance(fixed, PreTrainedTokenizerFast) and type(fixed) is not type(stock)
    assert mismatch(fixed, str(folder), local_files_only=True) is None
    # BOS as the declared class adds it under this transformers (none: transformers 5 follows tokenizer.json)
    assert stock.encode(TEXT, add_special_tokens=True) == stock.encode(TEXT, add_special_tokens=False)
    assert_expected_ids(fixed, name, with_bos=False)
    conversation = [{"role": "user", "content": TEXT}]
    assert fixed.apply_chat_template(conversation, tokenize=False) == stock.apply_chat_template(conversation, tokenize=False)

    fixed.save_pretrained(str(tmp_path))  # what training saves: re-loads faithfully, also with plain AutoTokenizer
    again = _stock(tmp_path)
    assert_expected_ids(again, name)
    assert mismatch(again, str(tmp_path), local_files_only=True) is None
    reloaded = from_pretrained(str(tmp_path), local_files_only=True)
    assert type(reloaded) is type(again)  # nothing left to replace
    assert_expected_ids(reloaded, name)


def test_replacement_keeps_the_bos_the_declared_class_adds(tmp_path):
    """A declared class that adds BOS with add_special_tokens=True (LlamaTokenizerFast under transformers 4.x, which
    honours add_bos_token: true; simulated here on transformers 5 by setting it): the replacement adds the same BOS,
    and so does the tokenizer it saves, re-loaded with AutoTokenizer and with the plugin's from_pretrained."""
    folder = require_fixture(R1_DISTILL)
    stock = _stock(folder)
    stock.add_bos_token = True
    assert stock.encode(TEXT, add_special_tokens=True)[:1] == [151646]
    assert mismatch(stock, str(folder), local_files_only=True).kind == "text"  # the BOS is allowed, the text is not
    fixed, found = faithful(stock, str(folder), local_files_only=True)
    assert found is not None and fixed is not stock and isinstance(fixed, PreTrainedTokenizerFast)
    assert_expected_ids(fixed, R1_DISTILL, with_bos=True)
    assert fixed.add_bos_token is True  # what LF's pretraining processor reads
    chat = fixed.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=True, add_generation_prompt=True)
    assert chat["input_ids"] == [151646, 151644, 6023, 151645, 151648, 198]  # BOS once: the template writes it
    fixed.save_pretrained(str(tmp_path))
    assert _raw(tmp_path).encode(TEXT).ids == [151646] + QWEN_TEXT  # written into the saved tokenizer.json
    for reloaded in (_stock(tmp_path), from_pretrained(str(tmp_path), local_files_only=True)):
        assert_expected_ids(reloaded, R1_DISTILL, with_bos=True)


def test_bos_that_neither_file_asks_for_is_a_mismatch():
    """gpt-oss: tokenizer.json adds no BOS and tokenizer_config.json sets no add_bos_token; a tokenizer that adds
    <|startoftext|> anyway is reported and replaced by one that adds nothing."""
    folder = require_fixture(GPT_OSS)
    stock = _stock(folder)
    stock.add_bos_token = True
    found = mismatch(stock, str(folder), local_files_only=True)
    assert found is not None and found.kind == "bos/eos" and found.got[:1] == [199998] and found.note == ""
    assert found.expected == _raw_ids(folder, PROBE)
    fixed, again = faithful(stock, str(folder), local_files_only=True)
    assert again == found and fixed is not stock
    assert_expected_ids(fixed, GPT_OSS)


def test_special_tokens_in_text_must_encode_to_their_single_ids(tmp_path, caplog):
    """A Qwen3 copy whose tokenizer_config.json gives `<think>` lstrip: true (tokenizer.json: false): transformers
    applies the config's flag, so "a\\n<think>" loses its newline. Reported as an added-token mismatch; the
    replacement reads the same config and does no better, so the loaded tokenizer is kept, with a warning."""
    import json
    import logging
    import shutil

    folder = tmp_path / "qwen3"
    shutil.copytree(require_fixture(QWEN3), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["added_tokens_decoder"]["151667"]["lstrip"] = True
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    assert _raw_ids(folder, "a\n<think>\nb") == [64, 198, 151667, 198, 65]  # tokenizers on tokenizer.json
    stock = _stock(folder)
    assert stock.encode("a\n<think>\nb", add_special_tokens=False) == [64, 151667, 198, 65]
    found = mismatch(stock, str(folder), local_files_only=True)
    assert found is not None and found.kind == "special tokens" and "<think>" in found.text
    assert "added_tokens_decoder" in found.describe()
    with caplog.at_level(logging.WARNING, logger="lf_thinkplugin"):
        kept = from_pretrained(str(folder), local_files_only=True)
    assert type(kept) is type(stock) and "PreTrainedTokenizerFast differs as well" in caplog.text


def test_split_special_tokens_is_respected():
    """LF's split_special_tokens=True: special tokens are split on purpose; the check compares like with like."""
    folder = require_fixture(QWEN3)
    stock = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, split_special_tokens=True)
    assert mismatch(stock, str(folder), local_files_only=True, split_special_tokens=True) is None
    tok = from_pretrained(str(folder), local_files_only=True, split_special_tokens=True)
    assert type(tok) is type(stock)
    raw = _raw(folder)
    raw.encode_special_tokens = True
    assert tok.encode("<|im_start|>", add_special_tokens=False) == raw.encode("<|im_start|>").ids != [151644]
    assert tok.encode("<think>", add_special_tokens=False) == [151667]  # not special: still one token


def test_tokenizer_json_is_read_once(monkeypatch):
    """The check stays cheap: one `tokenizers` load per tokenizer.json and process, even though a plugin run checks
    its tokenizer up to three times and the replacement is checked again."""
    import tokenizers

    folder = require_fixture(R1_DISTILL)
    loads, real = [], tokenizers.Tokenizer

    class Counting:
        @staticmethod
        def from_file(path):
            loads.append(path)
            return real.from_file(path)

    stocks = [_stock(folder), _stock(folder)]  # loaded before the patch: transformers builds them with tokenizers
    fidelity._REFERENCES.clear()
    monkeypatch.setattr(tokenizers, "Tokenizer", Counting)
    try:
        for stock in stocks:  # the replacement (PreTrainedTokenizerFast) reads tokenizer.json through transformers
            fixed, found = faithful(stock, str(folder), local_files_only=True)
            assert found is not None and mismatch(fixed, str(folder), local_files_only=True) is None
    finally:
        monkeypatch.undo()
    assert len(loads) == 1


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
