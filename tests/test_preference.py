"""Preference data through `llamafactory-cli train` with `tokenized_path`: DPO, RM and KTO pairs in one thinking
mode, on one prompt, token-exact with the model's own template.

The four pair kinds (both sides reason, neither, chosen only, rejected only) x `enable_thinking` true / false /
null, for Qwen3 and R1-Distill-Qwen (real tokenizers). The expected text of each side is written here by hand
for each mode (the mixed pairs' empty forms included) and checked against the official chat template where it
renders that text (Qwen3: the whole turn, or the nothink generation prompt; R1: the generation prompt, as its
template never renders reasoning); ids come from the `tokenizers` library reading tokenizer.json, the prompt
and the response tokenized apart, as the model reads the prompt and generates the response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_fixture
from lfrun import train

from lf_thinkplugin.demo.fixtures import QWEN3

R1 = "DeepSeek-R1-Distill-Qwen-1.5B"
IGNORE = -100

# (question, chosen (reasoning, answer), rejected (reasoning, answer)): None = no reasoning
PAIRS = [
    ("What is 2 + 3?", ("add them", "5"), ("add wrongly", "6")),  # both reason
    ("What is 4 + 4?", (None, "8"), (None, "9")),  # neither
    ("What is 1 + 6?", ("one and six", "7"), (None, "8")),  # chosen only
    ("What is 3 + 3?", (None, "6"), ("three twice, minus one", "5")),  # rejected only
]


def data_text(side: tuple) -> str:
    reasoning, answer = side
    return answer if reasoning is None else f"<think>\n{reasoning}\n</think>\n\n{answer}"


@dataclass(frozen=True)
class Family:
    name: str
    fixture: str
    template: str  # what `thinkplugin.template` trains it with

    def prompt(self, question: str, thinking: bool) -> str:
        if self.fixture == QWEN3:
            opened = "" if thinking else "<think>\n\n</think>\n\n"  # Qwen3's enable_thinking=False prompt
            return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{opened}"
        return f"<｜begin▁of▁sentence｜><｜User｜>{question}<｜Assistant｜><think>\n"  # R1: the prompt opens the block

    def response(self, side: tuple, thinking: bool) -> str:
        reasoning, answer = side
        if not thinking:
            reasoning = None  # a pair in non-thinking mode drops reasoning (LF's enable_thinking: false)
        if self.fixture == QWEN3:
            if not thinking:
                return f"{answer}<|im_end|>\n"
            return f"<think>\n{reasoning or ''}\n</think>\n\n{answer}<|im_end|>\n"  # empty block: `<think>\n\n</think>`
        return f"{reasoning or ''}\n</think>\n\n{answer}<｜end▁of▁sentence｜>"  # R1 closes the open block at once


FAMILIES = [Family("qwen3-native", QWEN3, "native"), Family("qwen3-named", QWEN3, "qwen3_think"),
            Family("r1-native", R1, "native"), Family("r1-named", R1, "r1_distill_qwen")]


def pair_mode(enable_thinking, chosen, rejected) -> bool:
    return enable_thinking if enable_thinking is not None else chosen[0] is not None or rejected[0] is not None


def official(family: Family, folder: Path, question: str, side: tuple, thinking: bool) -> None:
    """The hand-written texts agree with the official template where it renders them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    user = [{"role": "user", "content": question}]
    kw = {"enable_thinking": thinking} if family.fixture == QWEN3 else {}
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, **kw)
    assert prompt == family.prompt(question, thinking)
    if family.fixture == QWEN3 and thinking:  # the whole turn, reasoning as the template reads it
        turn = {"role": "assistant", "content": side[1], "reasoning_content": side[0] or ""}
        full = tok.apply_chat_template(user + [turn], tokenize=False)
        assert full == prompt + family.response(side, thinking)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pref_data")
    pairs = [{"instruction": q, "input": "", "chosen": data_text(c), "rejected": data_text(r)} for q, c, r in PAIRS]
    kto = [{"messages": [{"from": "human", "value": q}, {"from": "gpt", "value": data_text(side)}], "label": ok}
           for (q, c, r), (side, ok) in zip(PAIRS, ((PAIRS[0][1], True), (PAIRS[1][2], False), (PAIRS[2][1], True),
                                                     (PAIRS[3][2], False)), strict=True)]
    (folder / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    (folder / "kto.json").write_text(json.dumps(kto, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({
        "pairs": {"file_name": "pairs.json", "ranking": True,
                  "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"}},
    }))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_qwen3, tmp_path_factory):
    """fixture name -> a tiny random model carrying that real tokenizer (LF loads a model after tokenizing)."""
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    return {QWEN3: tiny_qwen3, R1: build_tiny_model(tmp_path_factory.mktemp("tiny_r1"), require_fixture(R1))}


def tokenize(model: Path, stage: str, template: str, enable_thinking, data: Path, run: Path, **block):
    from datasets import load_from_disk

    config = {
        "model_name_or_path": str(model), "stage": stage, "do_train": False, "finetuning_type": "lora",
        "dataset": "kto" if stage == "kto" else "pairs", "dataset_dir": str(data), "cutoff_len": 512,
        "enable_thinking": enable_thinking, "tokenized_path": str(run / "tokenized"), "output_dir": str(run / "out"),
        "report_to": "none", "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 1,
        "thinkplugin": {"template": template, "export_serving": False, **block},
    }
    proc = train(config, run, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return load_from_disk(str(run / "tokenized" / "train")), log


def ids_of(folder: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: tok.encode(text, add_special_tokens=False).ids


# every mode with `native`; the named templates in the mode that mixes (one run each)
MATRIX = [(f, m) for f in FAMILIES if f.template == "native" for m in (True, False, None)] + \
    [(f, None) for f in FAMILIES if f.template != "native"]


# DPO's workflow tokenizes through LF's `stage="rm"` data path, so RM's pairs are DPO's by construction: RM runs
# once per family through its own workflow (`stage: rm`), in the mode that mixes
PAIR_RUNS = [("dpo", f, m) for f, m in MATRIX] + [("rm", f, None) for f in FAMILIES if f.template == "native"]


MODE_ID = {True: "on", False: "off", None: "null"}


@pytest.mark.parametrize(("stage", "family", "enable_thinking"), PAIR_RUNS,
                         ids=[f"{s}-{f.name}-{MODE_ID[m]}" for s, f, m in PAIR_RUNS])
def test_pairs_share_one_prompt_in_one_mode(stage, family, enable_thinking, data, tiny, tmp_path):
    folder = require_fixture(family.fixture)
    ids = ids_of(folder)
    rows, _ = tokenize(tiny[family.fixture], stage, family.template, enable_thinking, data, tmp_path)
    assert len(rows) == len(PAIRS)
    for (question, chosen, rejected), row in zip(PAIRS, rows, strict=True):
        thinking = pair_mode(enable_thinking, chosen, rejected)
        prompt = ids(family.prompt(question, thinking))
        for side, name in ((chosen, "chosen"), (rejected, "rejected")):
            official(family, folder, question, side, thinking)
            response = ids(family.response(side, thinking))
            assert row[f"{name}_input_ids"] == prompt + response, (question, name)
            assert row[f"{name}_labels"] == [IGNORE] * len(prompt) + response, (question, name)


@pytest.mark.parametrize("enable_thinking", list(MODE_ID), ids=list(MODE_ID.values()))
@pytest.mark.parametrize("family", [f for f in FAMILIES if f.template == "native"], ids=lambda f: f.name)
def test_kto_sample_and_its_kl_response_share_one_prompt(family, enable_thinking, data, tiny, tmp_path):
    folder = require_fixture(family.fixture)
    ids = ids_of(folder)
    rows, _ = tokenize(tiny[family.fixture], "kto", family.template, enable_thinking, data, tmp_path)
    sides = [PAIRS[0][1], PAIRS[1][2], PAIRS[2][1], PAIRS[3][2]]  # the samples' responses (data fixture)
    assert len(rows) == len(sides)
    for i, ((question, _, _), side, row) in enumerate(zip(PAIRS, sides, rows, strict=True)):
        kl_side = sides[i - 1]  # LF's KL response: the previous sample's (the first takes the last)
        thinking = enable_thinking if enable_thinking is not None else side[0] is not None
        prompt = ids(family.prompt(question, thinking))
        assert row["input_ids"] == prompt + ids(family.response(side, thinking)), question
        assert row["labels"] == [IGNORE] * len(prompt) + ids(family.response(side, thinking)), question
        assert row["kl_input_ids"] == prompt + ids(family.response(kl_side, thinking)), question
        assert row["kto_tags"] == (i % 2 == 0)


def test_lf_own_processor_mixes_modes_without_the_plugin(data, tiny_qwen3, tmp_path):
    """The defect this fixes, shown on LF as released: the rejected side after the chosen side's nothink prompt."""
    folder = require_fixture(QWEN3)
    config = {
        "model_name_or_path": str(tiny_qwen3), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "dataset": "pairs", "dataset_dir": str(data), "cutoff_len": 512, "enable_thinking": None, "template": "qwen3",
        "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(tmp_path / "out"), "report_to": "none",
        "overwrite_cache": True, "max_steps": 1,
    }
    proc = train(config, tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    row = load_from_disk(str(tmp_path / "tokenized" / "train"))[3]  # chosen without reasoning, rejected with
    text = AutoTokenizer.from_pretrained(str(folder)).decode(row["rejected_input_ids"])
    assert text.endswith("<think>\n\n</think>\n\n<think>\nthree twice, minus one\n</think>\n\n5<|im_end|>\n"), text


# A template that redacts an assistant turn that says "secret": it never renders that side's answer, so the pair
# has no response to train on that side.
FLAGGING_TEMPLATE = (
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and 'secret' in m.content %}"
    "[redacted]{% else %}{% if m.role == 'assistant' and m.reasoning_content %}<think>\n{{ m.reasoning_content }}\n"
    "</think>\n\n{% endif %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def flagging_model(tiny_qwen3, tmp_path_factory) -> Path:
    import shutil

    folder = tmp_path_factory.mktemp("flagging") / "model"
    shutil.copytree(tiny_qwen3, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(FLAGGING_TEMPLATE)
    return folder


def flagged_data(folder: Path) -> Path:
    folder.mkdir()
    pairs = [{"instruction": "Tell me.", "input": "", "chosen": "<think>\nbe open\n</think>\n\nIt is 4.",
              "rejected": "That is a secret."},
             {"instruction": "What is 2 + 2?", "input": "", "chosen": "4", "rejected": "5"}]
    (folder / "pairs.json").write_text(json.dumps(pairs))
    (folder / "dataset_info.json").write_text(json.dumps({"pairs": {
        "file_name": "pairs.json", "ranking": True,
        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


@pytest.mark.parametrize("on_malformed", ["error", "warn"])
def test_pair_without_a_shared_prompt_follows_on_malformed(on_malformed, flagging_model, tmp_path):
    data = flagged_data(tmp_path / "data")
    config = {
        "model_name_or_path": str(flagging_model), "stage": "dpo", "do_train": False, "finetuning_type": "lora",
        "dataset": "pairs", "dataset_dir": str(data), "cutoff_len": 256, "tokenized_path": str(tmp_path / "tokenized"),
        "output_dir": str(tmp_path / "out"), "report_to": "none", "overwrite_cache": True,
        "thinkplugin": {"template": "native", "on_malformed": on_malformed, "export_serving": False},
    }
    proc = train(config, tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    if on_malformed == "error":
        assert proc.returncode == 2, log[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert "dataset `pairs`, sample 0" in proc.stderr and "Tell me." in proc.stderr, proc.stderr[-2000:]
        assert "no trained response for the rejected side" in proc.stderr, proc.stderr[-2000:]
        assert "enable_thinking" in proc.stderr  # the fix
        assert not (tmp_path / "tokenized").exists()
    else:
        from datasets import load_from_disk

        assert proc.returncode == 0, log[-3000:]
        assert "preference sample (first user message 'Tell me.') dropped" in log, log[-3000:]
        rows = load_from_disk(str(tmp_path / "tokenized" / "train"))
        assert len(rows) == 1 and rows[0]["chosen_input_ids"][-3:] != rows[0]["rejected_input_ids"][-3:]


def test_native_hooks_refuse_preference_with_reasoning(tiny_qwen3, data, patched_lf, tmp_path):
    """LF carrying the upstream hooks patch: no hook reaches its preference processors, so refused by name."""
    config = {
        "model_name_or_path": str(tiny_qwen3), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "dataset": "pairs", "dataset_dir": str(data), "template": "qwen3_think", "output_dir": str(tmp_path / "out"),
        "report_to": "none", "max_steps": 1, "thinkplugin": {"think_loss": "mask_reasoning"},
    }
    proc = train(config, tmp_path, env=patched_lf, timeout=600)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert "stage dpo with a reasoning template under LF's native plugin hooks" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
