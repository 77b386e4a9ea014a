"""Template settings beyond the thinking switch (issue 24): `thinkplugin.chat_template_kwargs` and a per-sample
dataset_info.json column, through `llamafactory-cli train` with `tokenized_path`.

Oracles, written here: gpt-oss (real tokenizer) against OpenAI's own renderer `openai-harmony` given the
sample's reasoning effort, and against the official chat template through `apply_chat_template`;
Qwen3.6 (`preserve_thinking`) and GLM-4.7 (`clear_thinking`) on stand-in tokenizers (Qwen3's with the
family's special tokens, the official template): which turns train follows the template's history rule
under each setting, the spans' ids from `apply_chat_template` alone.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import require_fixture
from lfrun import lf_think, train
from oracle import IGNORE, label_runs
from native_families import FAMILIES, load, trainable_dir

EFFORT_QUESTIONS = [("What is 17 * 3?", "17 * 3 = 51.", "51."), ("Name a prime above 10.", "11 has no divisors.", "11."),
                    ("Capital of France?", "France's capital is Paris.", "Paris."), ("2 + 2?", "Add them.", "4.")]
TWO_ROUNDS = [("Name a prime above 10.", "11 has no divisors.", "11."), ("And the next one?", "12 is even, 13 is prime.", "13.")]


def fam(name: str) -> Any:
    return next(f for f in FAMILIES if f.name == name)


def sharegpt(rounds: list[tuple[str, str, str]], cell: Any = None) -> dict[str, Any]:
    conv = []
    for question, reasoning, answer in rounds:
        conv += [{"from": "human", "value": question}, {"from": "gpt", "value": f"<think>\n{reasoning}\n</think>\n\n{answer}"}]
    row: dict[str, Any] = {"conversations": conv}
    if cell is not None:
        row["settings"] = cell
    return row


def write_data(folder: Path, rows: list[dict], column: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "convs.json").write_text(json.dumps(rows, ensure_ascii=False))
    columns = {"messages": "conversations", **({"chat_template_kwargs": "settings"} if column else {})}
    (folder / "dataset_info.json").write_text(json.dumps({"convs": {"file_name": "convs.json", "formatting": "sharegpt",
                                                                    "columns": columns}}))


def run(model: Path, tmp: Path, block: dict, **lf: Any) -> tuple[Any, str]:
    """`llamafactory-cli train` with `tokenized_path`; `thinkplugin.template: native` unless `block` sets template None."""
    out = tmp / "run"
    block = {"template": "native", "export_serving": False, **block}
    if block["template"] is None:
        block.pop("template")
    config = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
              "dataset": "convs", "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "tokenized_path": str(out / "tokenized"),
              "output_dir": str(out), "report_to": "none", "overwrite_cache": True, "max_steps": 1,
              "per_device_train_batch_size": 1, "save_strategy": "no",
              "thinkplugin": block, **lf}
    proc = train(config, tmp, timeout=600)
    return proc, proc.stdout + proc.stderr


def tokenized(tmp: Path) -> Any:
    from datasets import load_from_disk

    return load_from_disk(str(tmp / "run" / "tokenized" / "train"))


# --- gpt-oss: each effort level, token-exact with harmony and with the official template --------------------------
def test_gpt_oss_effort_per_sample_equals_harmony(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    folder = require_fixture("gpt-oss-20b")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(folder / "tiktoken"))
    from openai_harmony import (Conversation, HarmonyEncodingName, Message, ReasoningEffort, RenderConversationConfig,
                                Role, SystemContent, load_harmony_encoding)

    tmp = tmp_path_factory.mktemp("effort")
    model = trainable_dir(fam("gpt-oss"), tmp_path_factory.getbasetemp())
    # the run's default (high) and per-sample cells: low, medium, an empty cell (the run's), no key at all (the run's)
    cells = [{"reasoning_effort": "low"}, {"reasoning_effort": "medium"}, {}, None]
    efforts = ["low", "medium", "high", "high"]
    rows = [sharegpt([q], c if c is not None else {}) for q, c in zip(EFFORT_QUESTIONS, cells)]
    write_data(tmp / "data", rows)
    proc, log = run(model, tmp, {"chat_template_kwargs": {"reasoning_effort": "high"}})
    assert proc.returncode == 0, log[-3000:]
    data = tokenized(tmp)
    assert len(data) == 4

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    tok = load(model)
    today = datetime.date.today().isoformat()  # the HF template writes strftime_now("%Y-%m-%d")
    levels = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}
    seen_headers = set()
    for (question, reasoning, answer), effort, row in zip(EFFORT_QUESTIONS, efforts, data, strict=True):
        system = (SystemContent.new().with_model_identity("You are ChatGPT, a large language model trained by OpenAI.")
                  .with_knowledge_cutoff("2024-06").with_conversation_start_date(today).with_reasoning_effort(levels[effort]))
        messages = [Message.from_role_and_content(Role.SYSTEM, system), Message.from_role_and_content(Role.USER, question)]
        prompt = encoding.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT)
        messages += [Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"),
                     Message.from_role_and_content(Role.ASSISTANT, answer).with_channel("final")]
        full = list(encoding.render_conversation_for_training(Conversation.from_messages(messages),
                                                              RenderConversationConfig(auto_drop_analysis=False)))
        assert row["input_ids"] == full, (effort, tok.decode(row["input_ids"][:60]))
        assert set(row["labels"][: len(prompt)]) == {IGNORE} and row["labels"][len(prompt):] == full[len(prompt):]
        # the official template, given that reasoning_effort, renders the same prompt
        hf = [{"role": "user", "content": question}]
        assert list(tok.apply_chat_template(hf, add_generation_prompt=True, reasoning_effort=effort, tokenize=True,
                                            return_dict=True)["input_ids"]) == list(prompt)
        seen_headers.add(tok.decode(row["input_ids"][: len(prompt)]).split("Reasoning: ")[1].split("\n")[0])
    assert seen_headers == {"low", "medium", "high"}

    # the serving bundle exported from the run's output_dir states the settings the model was trained under
    export = lf_think(["export", "--out", str(tmp / "run")])
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    serving = (tmp / "run" / "SERVING.md").read_text(encoding="utf-8")
    assert "## Template settings" in serving
    assert '| `reasoning_effort` | "medium" | "high", "low", "medium" |' in serving, serving[serving.index("## Template"):]
    assert "--default-chat-template-kwargs '{\"reasoning_effort\": \"high\"}'" in serving


def test_gpt_oss_effort_with_expand_turns(tmp_path_factory: pytest.TempPathFactory) -> None:
    """expand_turns copies each sample's settings to every prefix: each turn trains under its sample's effort."""
    tmp = tmp_path_factory.mktemp("effort-expand")
    model = trainable_dir(fam("gpt-oss"), tmp_path_factory.getbasetemp())
    write_data(tmp / "data", [sharegpt(TWO_ROUNDS, {"reasoning_effort": "low"}), sharegpt(TWO_ROUNDS, {"reasoning_effort": "high"})])
    proc, log = run(model, tmp, {"expand_turns": True})
    assert proc.returncode == 0, log[-3000:]
    data = tokenized(tmp)
    assert len(data) == 4
    tok = load(model)
    for row, (effort, turns) in zip(data, [("low", 1), ("low", 2), ("high", 1), ("high", 2)], strict=True):
        messages = []
        for question, reasoning, answer in TWO_ROUNDS[:turns]:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer, "thinking": reasoning}]
        prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, reasoning_effort=effort, tokenize=False)
        last = tok.apply_chat_template(messages, reasoning_effort=effort, tokenize=False)
        # the last turn as generated: the template renders the last turn with its analysis (history analysis dropped)
        rest = last[last.rindex("<|start|>assistant<|channel|>analysis") + len("<|start|>assistant"):]
        prompt_ids, rest_ids = tok.encode(prompt, add_special_tokens=False), tok.encode(rest, add_special_tokens=False)
        assert row["input_ids"] == prompt_ids + rest_ids
        assert label_runs(row["labels"]) == [(len(prompt_ids), len(prompt_ids) + len(rest_ids))]


# --- history settings: which turns train (stand-in tokenizers, official templates) --------------------------------
def expected_runs(tok: Any, messages: list[dict], kw: dict) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, turn ids) of each assistant turn that the whole rendering holds as generated (the history rule)."""
    def text(msgs: list[dict], gen: bool) -> str:
        return tok.apply_chat_template(msgs, add_generation_prompt=gen, tokenize=False, enable_thinking=True, **kw)

    whole = text(messages, False)
    out = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, upto = text(messages[:k], True), text(messages[: k + 1], False)
        if upto.startswith(prompt) and whole.startswith(upto):
            out.append((tok.encode(prompt, add_special_tokens=False), tok.encode(upto[len(prompt):], add_special_tokens=False)))
    return out


@pytest.mark.parametrize(("name", "setting", "value"), [("qwen3.6", "preserve_thinking", True),
                                                         ("glm-4.7", "clear_thinking", False)],
                         ids=["qwen3.6 preserve_thinking (stand-in)", "glm-4.7 clear_thinking (stand-in)"])
def test_history_setting_changes_which_turns_train(name: str, setting: str, value: Any,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("history")
    model = trainable_dir(fam(name), tmp_path_factory.getbasetemp())
    write_data(tmp / "data", [sharegpt(TWO_ROUNDS, {}), sharegpt(TWO_ROUNDS, {setting: value})])
    proc, log = run(model, tmp, {})
    assert proc.returncode == 0, log[-3000:]
    data = tokenized(tmp)
    tok = load(model)
    messages = []
    for question, reasoning, answer in TWO_ROUNDS:
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer, "reasoning_content": reasoning}]
    for row, kw, turns in zip(data, [{}, {setting: value}], [1, 2], strict=True):
        expected = expected_runs(tok, messages, kw)
        assert len(expected) == turns  # the template's rule: history reasoning dropped by default, kept with the setting
        runs = label_runs(row["labels"])
        assert len(runs) == turns, (kw, [tok.decode(row["input_ids"][s:e]) for s, e in runs])
        for (start, end), (prompt_ids, turn_ids) in zip(runs, expected, strict=True):
            assert row["input_ids"][:start] == prompt_ids
            target = row["labels"][start:end]
            assert target == turn_ids or target == turn_ids + [tok.eos_token_id]  # GLM leaves the last turn open
        if turns == 2:  # the first turn's reasoning is trained where the setting keeps it
            assert "11 has no divisors." in tok.decode(row["labels"][runs[0][0]:runs[0][1]])


# --- refusals: exit 2, the key named, no traceback, nothing tokenized ---------------------------------------------
REFUSALS = [
    ("gpt-oss", {"chat_template_kwargs": {"reasoning_efort": "low"}}, None, {},
     ["unknown template setting `thinkplugin.chat_template_kwargs.reasoning_efort`",
      "Did you mean `thinkplugin.chat_template_kwargs.reasoning_effort`?"]),
    ("qwen3.6", {"chat_template_kwargs": {"preserve_thinking": "yes"}}, None, {},
     ["`thinkplugin.chat_template_kwargs.preserve_thinking` = 'yes' is ignored by the model's chat template",
      "values that change its output: true"]),
    ("qwen3.6", {"chat_template_kwargs": {"enable_thinking": False}}, None, {"enable_thinking": True},
     ["`thinkplugin.chat_template_kwargs.enable_thinking` = False contradicts LF's `enable_thinking: true`"]),
    ("glm-4.7", {"chat_template_kwargs": {"preserve_thinking": True}}, None, {},
     ["unknown template setting `thinkplugin.chat_template_kwargs.preserve_thinking`",
      "Did you mean `thinkplugin.chat_template_kwargs.clear_thinking`?"]),
    ("gpt-oss", {}, {"reasoning_efort": "low"}, {},
     ["dataset `convs`", "unknown template setting `settings.reasoning_efort`", "Did you mean `settings.reasoning_effort`?"]),
    ("glm-4.7", {}, {"clear_thinking": "no"}, {},
     ["dataset `convs`", "`settings.clear_thinking` = 'no' is ignored by the model's chat template"]),
    ("qwen3.6", {"template": None, "chat_template_kwargs": {"preserve_thinking": True}}, None, {"template": "qwen3"},
     ["only `template: native` renders with", "this run's template: qwen3"]),
    ("seed-oss", {"chat_template_kwargs": {"thinking_budget": 0}}, None, {"enable_thinking": True},
     ["`thinkplugin.chat_template_kwargs.thinking_budget` = 0 turns thinking off",
      "contradicts LF's `enable_thinking: true`"]),
    ("gpt-oss", {"eval_think": {"every": 1, "data": "convs", "sweep": {"reasoning_efort": ["low", "high"]}}}, None, {},
     ["unknown template setting `thinkplugin.eval_think.sweep.reasoning_efort`",
      "Did you mean `thinkplugin.eval_think.sweep.reasoning_effort`?"]),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: f"{c[0]}-{json.dumps(c[1].get('chat_template_kwargs') or c[2] or c[1])[:40]}")
def test_refusals_exit_2_naming_the_key(case: tuple, tmp_path_factory: pytest.TempPathFactory) -> None:
    name, block, cell, lf, wanted = case
    tmp = tmp_path_factory.mktemp("refuse")
    model = trainable_dir(fam(name), tmp_path_factory.getbasetemp())
    write_data(tmp / "data", [sharegpt(TWO_ROUNDS, cell or {})], column=cell is not None)
    proc, log = run(model, tmp, block, **lf)
    assert proc.returncode == 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for text in wanted:
        assert text in log, (text, log[-2000:])
    assert not (tmp / "run" / "tokenized").exists()



# --- lf-think check: the mix of settings in the data, reasoning length per value -----------------------------------
def test_check_reports_the_mix_and_lengths_per_value(tmp_path_factory: pytest.TempPathFactory) -> None:
    import statistics

    import yaml

    from lfrun import lf_think

    tmp = tmp_path_factory.mktemp("check")
    model = trainable_dir(fam("gpt-oss"), tmp_path_factory.getbasetemp())
    short = ["Add.", "Easy.", "Known."]
    long = ["First I multiply the tens, then the units, then I add both parts and check the sum twice over.",
            "Primes above ten: eleven has no divisor other than one and itself, so it is the first one.",
            "The capital of France has been Paris for centuries; it is the seat of the government."]
    rows = [sharegpt([(q, r, a)], {"reasoning_effort": "low"}) for (q, _, a), r in zip(EFFORT_QUESTIONS, short)]
    rows += [sharegpt([(q, r, a)], {"reasoning_effort": "high"}) for (q, _, a), r in zip(EFFORT_QUESTIONS, long)]
    rows.append(sharegpt([EFFORT_QUESTIONS[3]], {}))
    write_data(tmp / "data", rows)
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full", "dataset": "convs",
        "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "output_dir": str(tmp / "out"), "overwrite_cache": True,
        "thinkplugin": {"template": "native", "chat_template_kwargs": {"reasoning_effort": "medium"}}}))
    proc = lf_think(["check", str(recipe)], cwd=tmp, env={"HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"}, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    tok = load(model)

    def line(label: str, texts: list[str]) -> str:
        n = sorted(len(tok.encode(t, add_special_tokens=False)) for t in texts)
        p90 = n[-(-9 * len(n) // 10) - 1]
        return (f"  {label}: {len(texts)} samples; reasoning tokens mean {round(statistics.fmean(n), 1)}, "
                f"median {statistics.median(n)}, p90 {p90} over {len(n)} turns")

    out = proc.stdout
    assert 'template settings: chat_template_kwargs {"reasoning_effort": "medium"}; per-sample column `settings` in convs' in out
    assert line("reasoning_effort=low", short) in out, out
    assert line("reasoning_effort=high", long) in out, out
    assert line("reasoning_effort=medium", [EFFORT_QUESTIONS[3][1]]) in out, out
    assert not (tmp / "out").exists()


# --- preference pairs: both answers rendered under the sample's settings ------------------------------------------
def test_dpo_pairs_carry_each_samples_effort(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("effort-dpo")
    model = trainable_dir(fam("gpt-oss"), tmp_path_factory.getbasetemp())
    rows = []
    for (question, reasoning, answer), effort in zip(EFFORT_QUESTIONS[:2], ["low", "high"]):
        rows.append({"conversations": [{"from": "human", "value": question}],
                     "chosen": {"from": "gpt", "value": f"<think>\n{reasoning}\n</think>\n\n{answer}"},
                     "rejected": {"from": "gpt", "value": "<think>\nGuess.\n</think>\n\nNo idea."},
                     "settings": {"reasoning_effort": effort}})
    (tmp / "data").mkdir()
    (tmp / "data" / "pairs.json").write_text(json.dumps(rows))
    (tmp / "data" / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "pairs.json", "formatting": "sharegpt", "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "chat_template_kwargs": "settings"}}}))
    proc, log = run(model, tmp, {}, stage="dpo", finetuning_type="lora", pref_beta=0.1)
    assert proc.returncode == 0, log[-3000:]
    data = tokenized(tmp)
    tok = load(model)
    for row, (question, reasoning, answer), effort in zip(data, EFFORT_QUESTIONS[:2], ["low", "high"], strict=True):
        user = [{"role": "user", "content": question}]
        prompt = tok.apply_chat_template(user, add_generation_prompt=True, reasoning_effort=effort, tokenize=False)
        chosen = tok.apply_chat_template(user + [{"role": "assistant", "content": answer, "thinking": reasoning}],
                                         reasoning_effort=effort, tokenize=False)
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        assert row["chosen_input_ids"] == tok.encode(chosen, add_special_tokens=False)
        assert row["rejected_input_ids"][: len(prompt_ids)] == prompt_ids
        assert f"Reasoning: {effort}" in tok.decode(row["rejected_input_ids"][: len(prompt_ids)])


# --- the doctor's parity under the run's settings --------------------------------------------------------------------
def test_doctor_parity_with_template_kwargs(tmp_path_factory: pytest.TempPathFactory) -> None:
    from lfrun import lf_think

    from lf_thinkplugin.templates.parity import Scanner
    from lf_thinkplugin.templates.probes import SCAN_PROBES

    model = trainable_dir(fam("gpt-oss"), tmp_path_factory.getbasetemp())
    tok = load(model)
    low = Scanner(tok, True, probes=SCAN_PROBES, settings={"reasoning_effort": "low"})
    result = low.check("native")
    assert result.ok and result.passed == result.total, [r for r in result.probes if not r.ok]
    # the reference side rendered the effort (so native's ids, equal to it, carried the same setting)
    first = low._native.turns(SCAN_PROBES[0])[0]
    assert "Reasoning: low" in first.prompt_text and "Reasoning: medium" not in first.prompt_text

    proc = lf_think(["doctor", "--model", str(model), "--template", "native", "--template-kwargs", '{"reasoning_effort": "high"}'],
                    timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "probes with `native`" in proc.stdout
    proc = lf_think(["doctor", "--model", str(model), "--template-kwargs", '{"reasoning_efort": "high"}'], timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Did you mean `--template-kwargs.reasoning_effort`?" in proc.stderr
