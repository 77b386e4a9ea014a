"""The `reasoning` dataset converter (through LF's real loader) and the malformed-tag report."""

from __future__ import annotations

import json

import pytest
from conftest import require_fixture

from lf_thinkplugin.data.malformed import PROBLEMS, classify, report_malformed, template_tags
from lf_thinkplugin.data.reasoning import canonical_response, register_converters
from lf_thinkplugin.demo.fixtures import QWEN3

R1_ROWS = [  # the layout of R1-distill corpora (input / content / reasoning_content)
    {"input": "What is 2 + 3?", "content": "5", "reasoning_content": "\nCount up from 2: 3, 4, 5.\n"},
    {"input": "Say hi.", "content": "Hi!", "reasoning_content": ""},
    {"input": "Capital of France?", "content": "\n\nParis.", "reasoning_content": "Known fact."},
]
CHAT_ROWS = [
    {"messages": [
        {"role": "user", "content": "2 + 3?"},
        {"role": "assistant", "content": "5", "reasoning_content": "add"},
        {"role": "user", "content": "and 4 + 4?"},
        {"role": "assistant", "content": "8", "reasoning_content": None},
    ]},
]


def test_register_is_idempotent():
    from llamafactory.data.converter import DATASET_CONVERTERS

    assert register_converters() == ["reasoning"] == register_converters()
    assert DATASET_CONVERTERS["reasoning"].__name__ == "ReasoningDatasetConverter"
    assert {"alpaca", "sharegpt", "openai"} <= set(DATASET_CONVERTERS)  # LF's own untouched


def test_canonical_response_spacing():
    assert canonical_response("\nstep\n", "\n\nanswer") == "<think>\nstep\n</think>\n\nanswer"
    assert canonical_response("  ", "answer") == canonical_response(None, "answer") == "answer"


def load(tmp_path, entries, rows_by_file, **overrides):
    from llamafactory.train.test_utils import load_dataset_module

    register_converters()
    for file_name, rows in rows_by_file.items():
        (tmp_path / file_name).write_text(json.dumps(rows, ensure_ascii=False))
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries))
    args = {"stage": "sft", "do_train": True, "model_name_or_path": str(require_fixture(QWEN3)), "dataset": ",".join(entries),
                "dataset_dir": str(tmp_path), "template": "qwen3", "cutoff_len": 256, "output_dir": str(tmp_path / "out"),
                "overwrite_cache": True, "preprocessing_num_workers": None, "report_to": "none"}
    args.update(overrides)
    return load_dataset_module(**args)["train_dataset"]


def responses(dataset, tokenizer):
    out = []
    for labels in dataset["labels"]:
        out.append(tokenizer.decode([t for t in labels if t != -100], skip_special_tokens=False))
    return out


def test_reasoning_columns_through_lf_loader(tmp_path, load_tokenizer):
    entries = {"r1": {"file_name": "r1.json", "formatting": "reasoning",
                      "columns": {"query": "input", "response": "content", "reasoning": "reasoning_content"}}}
    dataset = load(tmp_path, entries, {"r1.json": R1_ROWS})
    assert responses(dataset, load_tokenizer(QWEN3)) == [
        "<think>\nCount up from 2: 3, 4, 5.\n</think>\n\n5<|im_end|>\n",
        "<think>\n\n</think>\n\nHi!<|im_end|>\n",  # empty reasoning: LF's hybrid template adds the empty block
        "<think>\nKnown fact.\n</think>\n\nParis.<|im_end|>\n",
    ]


def test_reasoning_in_messages_through_lf_loader(tmp_path, load_tokenizer):
    entries = {"chat": {"file_name": "chat.json", "formatting": "reasoning",
                        "columns": {"messages": "messages", "reasoning": "reasoning_content"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant"}}}
    dataset = load(tmp_path, entries, {"chat.json": CHAT_ROWS}, preserve_thinking=True)
    assert responses(dataset, load_tokenizer(QWEN3)) == [
        "<think>\nadd\n</think>\n\n5<|im_end|>\n<think>\n\n</think>\n\n8<|im_end|>\n"
    ]


def test_missing_reasoning_column_names_the_fix(tmp_path):
    entries = {"r1": {"file_name": "r1.json", "formatting": "reasoning",
                      "columns": {"query": "input", "response": "content", "reasoning": "thoughts"}}}
    with pytest.raises(ValueError, match=r"no column `thoughts`.*\"reasoning\""):
        load(tmp_path, entries, {"r1.json": R1_ROWS})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain answer", None),
        ("<think>\nr\n</think>\n\na", None),
        ("<think>x</think>y", None),
        ("\n<think>a</think>b<think>c</think>d", None),  # interleaved reasoning
        ("<think>a</think><think>b</think>c", None),
        ("r</think>a", "close_without_open"),
        ("<think>a</think>b</think>", "close_without_open"),
        ("<think>a<think>b</think>c", "nested_open"),
        ("<think>a", "unclosed"),
        ("answer first <think>then why</think>", "think_after_answer"),
        ("<think>a</think>b<think>c</think>", "think_after_answer"),
    ],
)
def test_classify(text, expected):
    assert classify(text) == expected


def test_open_tag_in_the_generation_prompt():
    assert classify("r</think>a", open_in_prompt=True) is None
    assert classify("r</think>a</think>", open_in_prompt=True) == "close_without_open"
    assert template_tags("qwen3") == ("<think>", "</think>", False)
    assert template_tags("no-such-template") == ("<think>", "</think>", False)


def aligned(responses, history=None):
    from datasets import Dataset

    rows = []
    for i, text in enumerate(responses):
        prompt = [{"role": "user", "content": f"q{i}"}]
        if history and i in history:
            prompt = [{"role": "user", "content": "h"}, {"role": "assistant", "content": history[i]}] + prompt
        rows.append({"_prompt": prompt, "_response": [{"role": "assistant", "content": text}]})
    return Dataset.from_list(rows)


GOOD, BAD = "<think>\nr\n</think>\n\na", "r</think>a"


def test_report_counts_and_first_indices():
    texts = [BAD if i % 2 else GOOD for i in range(16)] + ["<think>x"]
    with pytest.raises(ValueError) as err:
        report_malformed(aligned(texts), "demo", "qwen3", on_malformed="error")
    message = str(err.value)
    assert "dataset demo: 9 of 17 samples have malformed think tags" in message
    assert f"8 with {PROBLEMS['close_without_open']} (`close_without_open`), sample indices 1, 3, 5, 7, 9, ..." in message
    assert "1 with an open tag that is never closed (`unclosed`), sample indices 16" in message
    assert "on_malformed: warn" in message


def test_report_warn_keeps_skip_drops_history_turns_count():
    texts = [GOOD, GOOD, GOOD]
    data = aligned(texts, history={1: "<think>a<think>b</think>c"})  # a malformed history turn
    assert len(report_malformed(data, "demo", on_malformed="warn")) == 3
    kept = report_malformed(data, "demo", on_malformed="skip")
    assert [row["_prompt"][0]["content"] for row in kept] == ["q0", "q2"]
    clean = aligned(texts)
    assert report_malformed(clean, "demo", on_malformed="error") is clean


def test_report_policy_comes_from_the_run_context():
    from types import SimpleNamespace

    from lf_thinkplugin.activation.context import RunContext

    data = aligned([GOOD, BAD])
    assert len(report_malformed(data, "demo")) == 2  # no thinkplugin block: warn
    ctx = RunContext.create({"on_malformed": "skip"}, {"model_name_or_path": "m"}, from_cli=False)
    kept = ctx.dataset(data, SimpleNamespace(dataset_name="demo"), SimpleNamespace(template=None, dataset_dir="data"))
    assert len(kept) == 1
    ctx = RunContext.create({"on_malformed": "error"}, {"model_name_or_path": "m"}, from_cli=True)
    with pytest.raises(SystemExit) as exit_:  # a refusal inside LF's run on the command line: exit 2, no traceback
        ctx.dataset(data, SimpleNamespace(dataset_name="demo"), SimpleNamespace(template=None, dataset_dir="data"))
    assert exit_.value.code == 2


def test_report_on_lf_sharegpt_data():
    """The demo dataset (sharegpt) as LF aligns it is well formed."""
    from conftest import REPO
    from datasets import load_dataset
    from llamafactory.data.converter import align_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments
    from transformers import Seq2SeqTrainingArguments

    data_dir = REPO / "examples" / "data"
    attr = get_dataset_list(["think_demo"], str(data_dir))[0]
    raw = load_dataset("json", data_files=str(data_dir / attr.dataset_name), split="train")
    data_args = DataArguments(template="qwen3", dataset_dir=str(data_dir))
    aligned_demo = align_dataset(raw, attr, data_args, Seq2SeqTrainingArguments(output_dir="/tmp/unused"))
    assert report_malformed(aligned_demo, "think_demo", "qwen3", on_malformed="error") is aligned_demo
    broken = aligned_demo.map(lambda ex: {"_response": [{"role": "assistant", "content": ex["_response"][0]["content"] + "<think>"}]})
    assert len(report_malformed(broken, "think_demo", "qwen3", on_malformed="skip")) == 0
