"""`lf-think eval`: output classification on hand-written model outputs encoded with real tokenizers,
vLLM's reasoning-parser split rules with expected strings written by hand, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lf_thinkplugin.demo.fixtures import QWEN3, R1_DISTILL
from lf_thinkplugin.evaluation.metrics import (
    NOTHINK,
    THINK,
    aggregate,
    classify,
    markup_for,
    match_answer,
    split_vllm,
)

# Ids of the Qwen3 and DeepSeek-R1-Distill-Qwen vocabularies (tokenizer.json added_tokens / BPE), by hand.
Q_OPEN, Q_CLOSE, Q_EOT, Q_ENDOFTEXT = 151667, 151668, 151645, 151643  # <think> </think> <|im_end|> <|endoftext|>
R_OPEN, R_CLOSE, R_EOS = 151648, 151649, 151643  # <think> </think> <｜end▁of▁sentence｜>
NL, NLNL, FIVE = 198, 271, 20  # "\n", "\n\n", "5" (same BPE in both)


@pytest.fixture
def qwen3(load_tokenizer):
    tok = load_tokenizer(QWEN3)
    return tok, markup_for(tok, prompt_opens_think=False, stop_ids=[Q_EOT])


@pytest.fixture
def r1(load_tokenizer):
    tok = load_tokenizer(R1_DISTILL)
    return tok, markup_for(tok, prompt_opens_think=True, stop_ids=[R_EOS])


def enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_fixture_ids_are_what_the_tests_assume(load_tokenizer):
    q, r = load_tokenizer(QWEN3), load_tokenizer(R1_DISTILL)
    assert q.convert_tokens_to_ids(["<think>", "</think>", "<|im_end|>"]) == [Q_OPEN, Q_CLOSE, Q_EOT]
    assert r.convert_tokens_to_ids(["<think>", "</think>", "<｜end▁of▁sentence｜>"]) == [R_OPEN, R_CLOSE, R_EOS]
    assert enc(q, "\n\n5") == [NLNL, FIVE] and enc(r, "\n5") == [NL, FIVE]


# --- vLLM's split rules, expected values written from the parsers' code and docstrings ------------------------


@pytest.mark.parametrize(
    "parser, text, thinking, expected",
    [
        # qwen3 (needs both tags; docstring: "For text <think>abc</think>xyz: 'abc' goes to reasoning, 'xyz' to content")
        ("qwen3", "<think>abc</think>xyz", True, ("abc", "xyz")),
        ("qwen3", "abc</think>xyz", True, (None, "abc</think>xyz")),  # no <think>: all content
        ("qwen3", "<think>abc", True, (None, "<think>abc")),  # no </think>: all content
        ("qwen3", "<think>abc</think>", True, ("abc", None)),  # `content or None`
        ("qwen3", "xyz", False, (None, "xyz")),
        # deepseek_r1 (BaseThinkingReasoningParser: reasoning assumed at the start)
        ("deepseek_r1", "abc</think>xyz", True, ("abc", "xyz")),
        ("deepseek_r1", "<think>abc</think>xyz", True, ("abc", "xyz")),
        ("deepseek_r1", "abc", True, ("abc", None)),  # no </think>: all reasoning
        ("deepseek_r1", "xyz", False, ("xyz", None)),  # the R1 parser has no thinking switch
        ("deepseek_r1", "a</think>b</think>c", True, ("a", "b</think>c")),  # first </think>
        # qwen3 after the Qwen3.5 rewrite: <think> stripped, missing </think> = truncated unless thinking is off
        ("qwen3_think_in_prompt", "abc</think>xyz", True, ("abc", "xyz")),
        ("qwen3_think_in_prompt", "<think>abc</think>xyz", True, ("abc", "xyz")),
        ("qwen3_think_in_prompt", "abc", True, ("abc", None)),
        ("qwen3_think_in_prompt", "abc", False, (None, "abc")),
    ],
)
def test_vllm_split_rules(parser, text, thinking, expected):
    assert split_vllm(parser, text, thinking) == expected


# --- Qwen3: the model opens the block itself ---------------------------------------------------------------------


def test_qwen3_well_formed(qwen3):
    tok, markup = qwen3
    reasoning = enc(tok, "Add them.")
    ids = [Q_OPEN, NL, *reasoning, NL, Q_CLOSE, NLNL, FIVE, Q_EOT, Q_ENDOFTEXT, Q_ENDOFTEXT]  # padding after the end
    out = classify(ids, tok, markup, THINK, max_new_tokens=64, reference="5")
    assert out.status == "ok" and out.well_formed and out.end_of_turn and not out.truncated and out.tags_as_ids
    assert out.reasoning == "\nAdd them.\n" and out.answer == "5"
    assert out.reasoning_tokens == len(reasoning) + 2 and out.answer_tokens == 2
    assert out.tokens == len(ids) - 2
    assert out.parsers["qwen3"]["reasoning"] == "\nAdd them.\n" and out.parsers["qwen3"]["content"] == "\n\n5"
    assert out.parsers["deepseek_r1"]["content"] == "\n\n5"
    assert not any(p["leaked"] or p["empty_content"] for p in out.parsers.values())
    assert out.match == {"exact": True, "normalised": True, "numeric": True}


def test_qwen3_empty_block(qwen3):
    tok, markup = qwen3
    out = classify([Q_OPEN, NLNL, Q_CLOSE, NLNL, FIVE, Q_EOT], tok, markup, THINK)
    assert out.status == "empty" and not out.well_formed
    assert out.parsers["qwen3"]["reasoning"] == "\n\n" and out.parsers["qwen3"]["content"] == "\n\n5"


def test_qwen3_cut_at_the_token_limit(qwen3):
    tok, markup = qwen3
    ids = [Q_OPEN, NL, *enc(tok, "Add them and")]
    out = classify(ids, tok, markup, THINK, max_new_tokens=len(ids))
    assert out.status == "unclosed" and out.truncated and not out.end_of_turn and not out.well_formed
    assert out.reasoning_tokens == len(ids) - 1 and out.answer_tokens == 0
    # vLLM: qwen3 (both tags needed) hands the open block to the client as content; R1's parser keeps it reasoning
    assert out.parsers["qwen3"]["reasoning"] is None and out.parsers["qwen3"]["content"] == "<think>\nAdd them and"
    assert out.parsers["qwen3"]["leaked"]
    assert out.parsers["deepseek_r1"]["reasoning"] == "\nAdd them and" and out.parsers["deepseek_r1"]["content"] is None
    assert out.parsers["deepseek_r1"]["empty_content"] and not out.parsers["deepseek_r1"]["leaked"]


def test_qwen3_unclosed_turn_ended_inside_the_block(qwen3):
    tok, markup = qwen3
    out = classify([Q_OPEN, NL, *enc(tok, "Add them."), Q_EOT], tok, markup, THINK, max_new_tokens=64)
    assert out.status == "unclosed" and out.end_of_turn and not out.truncated


def test_qwen3_missing_reasoning_in_thinking_mode(qwen3):
    tok, markup = qwen3
    out = classify([FIVE, Q_EOT], tok, markup, THINK)
    assert out.status == "missing" and out.reasoning is None and out.answer == "5" and out.answer_tokens == 1
    assert out.parsers["qwen3"]["content"] == "5"
    assert out.parsers["deepseek_r1"]["reasoning"] == "5" and out.parsers["deepseek_r1"]["empty_content"]


def test_qwen3_spelled_out_tags(qwen3):
    tok, markup = qwen3
    spelled_open = tok.convert_tokens_to_ids(["<", "think", ">"])
    spelled_close = tok.convert_tokens_to_ids(["</", "think", ">"])
    assert Q_OPEN not in spelled_open and tok.decode(spelled_open) == "<think>" and tok.decode(spelled_close) == "</think>"
    ids = [*spelled_open, NL, *enc(tok, "Add them."), NL, *spelled_close, NLNL, FIVE, Q_EOT]
    out = classify(ids, tok, markup, THINK)
    assert out.status == "ok" and not out.tags_as_ids and out.spelled_out == ["<think>", "</think>"]
    assert not out.well_formed
    assert out.parsers["qwen3"]["reasoning"] == "\nAdd them.\n"  # text parsers still split it
    mixed = classify([Q_OPEN, NL, *enc(tok, "Add them."), NL, *spelled_close, NLNL, FIVE, Q_EOT], tok, markup, THINK)
    assert mixed.spelled_out == ["</think>"]


def test_qwen3_missing_end_of_turn(qwen3):
    tok, markup = qwen3
    ids = [Q_OPEN, NL, *enc(tok, "Add them."), NL, Q_CLOSE, NLNL, FIVE]
    out = classify(ids, tok, markup, THINK, max_new_tokens=64)
    assert out.status == "ok" and not out.end_of_turn and not out.truncated and not out.well_formed


def test_qwen3_tags_leaked_into_the_answer(qwen3):
    tok, markup = qwen3
    ids = [Q_OPEN, NL, *enc(tok, "A"), NL, Q_CLOSE, NLNL, FIVE, Q_CLOSE, Q_EOT]
    out = classify(ids, tok, markup, THINK)
    assert out.status == "misplaced"
    assert out.parsers["qwen3"]["content"] == "\n\n5</think>" and out.parsers["qwen3"]["leaked"]
    before = classify([*enc(tok, "So"), Q_OPEN, NL, *enc(tok, "A"), NL, Q_CLOSE, NLNL, FIVE, Q_EOT], tok, markup, THINK)
    assert before.status == "misplaced"


def test_qwen3_thinking_off(qwen3):
    tok, markup = qwen3
    ok = classify([FIVE, Q_EOT], tok, markup, NOTHINK, reference="5")
    assert ok.status == "ok" and ok.well_formed and ok.answer_tokens == 1 and ok.reasoning_tokens == 0
    assert ok.parsers["qwen3_think_in_prompt"]["reasoning"] is None and ok.parsers["qwen3_think_in_prompt"]["content"] == "5"
    violation = classify([Q_OPEN, NL, *enc(tok, "Hmm"), NL, Q_CLOSE, NLNL, FIVE, Q_EOT], tok, markup, NOTHINK)
    assert violation.status == "thinks_when_off" and not violation.well_formed
    assert violation.parsers["qwen3"]["reasoning"] == "\nHmm\n"
    lone = classify([FIVE, Q_CLOSE, Q_EOT], tok, markup, NOTHINK)
    assert lone.status == "thinks_when_off" and lone.parsers["qwen3"]["content"] == "5</think>" and lone.parsers["qwen3"]["leaked"]


# --- R1-Distill: the generation prompt opens the block; the model only closes it -----------------------------------


def test_r1_well_formed(r1):
    tok, markup = r1
    reasoning = enc(tok, "Add them.")
    ids = [*reasoning, NL, R_CLOSE, NLNL, FIVE, R_EOS]
    out = classify(ids, tok, markup, THINK, reference="5")
    assert out.status == "ok" and out.well_formed
    assert out.reasoning == "Add them.\n" and out.reasoning_tokens == len(reasoning) + 1 and out.answer_tokens == 2
    assert out.parsers["deepseek_r1"]["reasoning"] == "Add them.\n" and out.parsers["deepseek_r1"]["content"] == "\n\n5"
    assert out.parsers["qwen3_think_in_prompt"]["content"] == "\n\n5"
    # served with --reasoning-parser qwen3 (both tags needed) everything, reasoning and </think>, is content
    assert out.parsers["qwen3"]["reasoning"] is None
    assert out.parsers["qwen3"]["content"] == "Add them.\n</think>\n\n5" and out.parsers["qwen3"]["leaked"]


def test_r1_empty_unclosed_reopened(r1):
    tok, markup = r1
    assert classify([NL, R_CLOSE, NLNL, FIVE, R_EOS], tok, markup, THINK).status == "empty"
    cut = [*enc(tok, "Add them and")]
    out = classify(cut, tok, markup, THINK, max_new_tokens=len(cut))
    assert out.status == "unclosed" and out.truncated and out.reasoning_tokens == len(cut)
    assert out.parsers["deepseek_r1"]["reasoning"] == "Add them and" and out.parsers["deepseek_r1"]["empty_content"]
    reopened = classify([R_OPEN, NL, *enc(tok, "A"), NL, R_CLOSE, NLNL, FIVE, R_EOS], tok, markup, THINK)
    assert reopened.status == "misplaced"
    assert reopened.parsers["deepseek_r1"]["reasoning"] == "\nA\n" and reopened.parsers["deepseek_r1"]["content"] == "\n\n5"


# --- answers and aggregates ---------------------------------------------------------------------------------------


def test_match_answer():
    assert match_answer("The answer is 42.", "42") == {"exact": False, "normalised": False, "numeric": True}
    assert match_answer("Paris.", "paris") == {"exact": False, "normalised": True, "numeric": None}
    assert match_answer("The Eiffel tower", "eiffel tower!")["normalised"]
    assert match_answer("so \\boxed{1,234} wait 7", "1234")["numeric"]
    assert match_answer("3/4", "0.75")["numeric"]
    assert match_answer("41", "42")["numeric"] is False
    assert match_answer("no number", "42")["numeric"] is False


def test_aggregate_per_mode(qwen3):
    tok, markup = qwen3
    good = [Q_OPEN, NL, *enc(tok, "Add them."), NL, Q_CLOSE, NLNL, FIVE, Q_EOT]
    outs = [
        classify(good, tok, markup, THINK, reference="5"),
        classify(good, tok, markup, THINK, reference="6"),
        classify([Q_OPEN, NL, FIVE], tok, markup, THINK, max_new_tokens=3, reference="5"),
        classify([FIVE, Q_EOT], tok, markup, THINK, reference="5"),
        classify([FIVE, Q_EOT], tok, markup, NOTHINK, reference="5"),
        classify(good, tok, markup, NOTHINK, reference="5"),
    ]
    agg = aggregate(outs)
    think, nothink = agg[THINK], agg[NOTHINK]
    assert think["n"] == 4 and think["well_formed"] == 0.5
    assert think["status"] == {"ok": 0.5, "empty": 0.0, "unclosed": 0.25, "missing": 0.25, "misplaced": 0.0}
    assert think["truncated"] == 0.25 and think["end_of_turn"] == 0.75
    assert think["accuracy"]["exact"] == 0.5  # 5/5, 5/6, unclosed (no answer), missing "5"/5
    assert think["parsers"]["qwen3"]["leaked"] == 0.25  # the unclosed one
    assert nothink["n"] == 2 and nothink["well_formed"] == 0.5 and nothink["status"]["thinks_when_off"] == 0.5
    assert json.dumps(agg)  # JSON-ready


# --- prompts, data, CLI ---------------------------------------------------------------------------------------------


def test_prompter_reads_the_family_from_the_chat_template(load_tokenizer):
    from conftest import fixture_tokenizer, require_fixture

    from lf_thinkplugin.evaluation.generate import TrainedWith, prompter

    q = prompter(load_tokenizer(QWEN3), str(require_fixture(QWEN3)), TrainedWith())
    assert q.lf_template is None and not q.markup.prompt_opens_think and q.has_switch and q.markup.parser == "qwen3"
    assert Q_EOT in q.markup.stop_ids
    msgs = [{"role": "user", "content": "Hi"}]
    assert q.render(msgs, True) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert q.render(msgs, False) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    # a recorded / given LF template encodes through LF's own encoder
    r = prompter(fixture_tokenizer(R1_DISTILL), str(require_fixture(R1_DISTILL)), TrainedWith(), template="r1_distill_qwen")
    assert r.lf_template is not None
    assert r.markup.prompt_opens_think and not r.has_switch and r.markup.parser == "deepseek_r1"
    assert R_EOS in r.markup.stop_ids
    assert r.ids(msgs, True)[-2:] == [R_OPEN, NL]  # ...<｜Assistant｜><think>\n


CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "<think>\nadd\n</think>\n\n5"}, {"role": "user", "content": "And 6 * 7?"}]


@pytest.mark.parametrize("fixture, template, modes", [(QWEN3, "qwen3_think", (True, False)), (QWEN3, "qwen3", (True, False)),
                                                     (R1_DISTILL, "r1_distill_qwen", (True,))])  # R1: no nothink mode
def test_lf_encoder_prompts_equal_the_official_chat_template(fixture, template, modes):
    """The prompts LF's training encoder writes are the ones the model's own chat template renders (both
    modes, with a system prompt and a history turn whose reasoning the official templates drop)."""
    from conftest import fixture_tokenizer, require_fixture

    from lf_thinkplugin.evaluation.generate import TrainedWith, prompter

    official = prompter(fixture_tokenizer(fixture), str(require_fixture(fixture)), TrainedWith())
    lf = prompter(fixture_tokenizer(fixture), str(require_fixture(fixture)), TrainedWith(), template=template)
    for thinking in modes:
        assert lf.ids(CONVERSATION, thinking) == official.ids(CONVERSATION, thinking), (template, thinking)
    assert lf.markup == official.markup


def test_trained_with_reads_the_run_record_not_serving_md(tmp_path):
    from conftest import fixture_tokenizer

    from lf_thinkplugin.evaluation.generate import trained_with
    from lf_thinkplugin.templates.format import learn
    from lf_thinkplugin.templates.record import write_record

    (tmp_path / "SERVING.md").write_text("# Serving a model trained with LF template `qwen3_think`\n\n"
                                         "vllm serve MODEL_DIR --reasoning-parser qwen3\n")
    assert trained_with(str(tmp_path)).template is None  # SERVING.md is for people, never parsed
    fmt = learn(fixture_tokenizer("DeepSeek-R1-Distill-Qwen-1.5B"))
    write_record(tmp_path, "r1_distill_qwen", True, fmt)
    info = trained_with(None, str(tmp_path))
    assert info.template == "r1_distill_qwen" and info.format == fmt
    assert (info.format.markup, info.format.prompt_opens, info.format.reasoning_parser) == (
        ("<think>", "</think>"), True, "deepseek_r1")
    other = tmp_path / "other"
    other.mkdir()
    (other / "thinkplugin_args.yaml").write_text("thinkplugin:\n  template: qwen3_think\n")
    assert trained_with(str(other)).template == "qwen3_think"
    (other / "thinkplugin_args.yaml").write_text("thinkplugin:\n  template: auto\n")
    assert trained_with(str(other)).template is None


def test_load_samples_formats(tmp_path):
    from conftest import REPO

    from lf_thinkplugin.evaluation.generate import load_samples

    demo = load_samples("think_demo", str(REPO / "examples" / "data"))
    assert len(demo) == 8 and demo[0].messages == [{"role": "user", "content": "What is 2 + 3?"}] and demo[0].reference == "5"
    r1 = load_samples("r1_distill_demo", str(REPO / "examples" / "data"))
    assert r1 and r1[0].messages[0]["role"] == "user" and r1[0].reference
    alpaca = tmp_path / "a.jsonl"
    alpaca.write_text('{"instruction": "Add", "input": "2 and 3", "output": "<think>\\nx\\n</think>\\n\\n5"}\n'
                      '{"question": "Capital of France?", "answer": "Paris"}\n')
    got = load_samples(str(alpaca))
    assert got[0].messages == [{"role": "user", "content": "Add\n2 and 3"}] and got[0].reference == "5"
    assert got[1].messages[0]["content"] == "Capital of France?" and got[1].reference == "Paris"
    assert [s.thinks for s in got] == [True, False]


def test_modes_from_the_data(tmp_path):
    """`--modes data`: reasoning references in think mode, direct answers (no block, empty block) in nothink."""
    from pydantic import ValidationError

    from lf_thinkplugin.evaluation.generate import load_samples
    from lf_thinkplugin.evaluation.metrics import DATA, plan
    from lf_thinkplugin.options import EvalThinkSpec

    data = tmp_path / "d.jsonl"
    rows = [{"instruction": "a", "output": "<think>\nwhy\n</think>\n\n1"}, {"instruction": "b", "output": "<think>\n\n</think>\n\n2"},
            {"instruction": "c", "output": "3"}, {"instruction": "d"}, {"instruction": "e", "output": "<think>x</think>5"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = load_samples(str(data))
    assert [s.thinks for s in samples] == [True, False, False, None, True]
    work = plan([DATA], samples)
    assert [(mode, [s.messages[0]["content"] for s in group]) for mode, group in work] == [
        (THINK, ["a", "d", "e"]), (NOTHINK, ["b", "c"])]
    assert [(m, len(g)) for m, g in plan([THINK, NOTHINK], samples)] == [(THINK, 5), (NOTHINK, 5)]
    assert EvalThinkSpec(every=5, modes=["data"]).modes == ["data"]
    with pytest.raises(ValidationError, match="use \\[data\\] alone"):
        EvalThinkSpec(every=5, modes=["data", "think"])


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "lf_thinkplugin.cli", "eval", *args], check=False, capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_cli_refusals(tmp_path):
    from lf_thinkplugin.evaluation import main

    assert main(["--model", str(tmp_path), "--data", "x.json", "--max-new-tokens", "0"]) == 2
    proc = _cli("--model", str(tmp_path), "--data", "nope", "--engine", "vllm")
    assert proc.returncode == 2
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert "--engine vllm needs vLLM" in proc.stderr
    proc = _cli("--model", str(tmp_path), "--data", "nope", "--dataset-dir", str(tmp_path))
    assert proc.returncode == 2 and "neither a file nor a dataset" in proc.stderr
    assert _cli("--model", str(tmp_path), "--data", "x", "--modes", "fast").returncode == 2
    assert _cli("--model", str(tmp_path), "--data", "x", "--modes", "data,think").returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("finetuning", ["full", "lora"])
def test_trained_tiny_model_thinks_as_trained(tmp_path, finetuning):
    """Train a tiny Qwen3-architecture model (self-built Qwen3-style tokenizer, single-id think tags) on a
    repetitive reasoning format with the plugin (full, or LoRA: eval with --adapter), then `lf-think eval`
    it against the untrained model."""
    from lfrun import base_config

    from lf_thinkplugin.demo.lf_subprocess import train
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    names = ["two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rows = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                          {"role": "assistant", "content": "<think>\nLet me think step by step.\n</think>\n\nThe answer is 42."}]}
            for a in names[:4] for b in names[4:]]
    data = tmp_path / "data"
    data.mkdir()
    (data / "fmt.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"fmt": {"file_name": "fmt.json", "formatting": "sharegpt",
                                                                "columns": {"messages": "messages"},
                                                                "tags": {"role_tag": "role", "content_tag": "content",
                                                                         "user_tag": "user", "assistant_tag": "assistant"}}}))
    config = base_config(model, tmp_path / "out", dataset="fmt", dataset_dir=str(data), max_steps=40, learning_rate=5e-3,
                         per_device_train_batch_size=4, lr_scheduler_type="constant",
                         thinkplugin={"template": "qwen3_think"})
    config.pop("template")  # thinkplugin.template sets it
    if finetuning == "lora":
        config.update(finetuning_type="lora", lora_target="all", lora_rank=16, learning_rate=1e-2)
    proc = train(config, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    outputs = tmp_path / "outputs.jsonl"
    trained_args = ("--model", str(tmp_path / "out")) if finetuning == "full" else (
        "--model", str(model), "--adapter", str(tmp_path / "out"))
    proc = _cli(*trained_args, "--baseline", str(model), "--data", "fmt", "--dataset-dir", str(data),
                "--modes", "think,nothink", "--max-new-tokens", "24", "--json", "--outputs", str(outputs),
                *(("--chart", str(tmp_path / "eval.png")) if finetuning == "full" else ()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["template"] == "qwen3_think" and report["parser"] == "qwen3" and not report["prompt_opens_think"]
    trained, base = report["model"]["metrics"]["think"], report["baseline"]["metrics"]["think"]
    assert trained["n"] == 16 and trained["well_formed"] >= 0.9, trained
    assert base["well_formed"] <= 0.1, base
    assert trained["parsers"]["qwen3"]["leaked"] == 0.0 and trained["accuracy"]["exact"] >= 0.9
    # trained on thinking samples only: with thinking off the model still opens a block (reported, not failed)
    assert "nothink" in report["model"]["metrics"]
    lines = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert len(lines) == 2 * 2 * 16
    if finetuning == "full":
        assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = next(r for r in lines if r["model"] == "model" and r["mode"] == "think")
    assert first["text"] == "<think>\nLet me think step by step.\n</think>\n\nThe answer is 42."


def test_batched_left_padded_generation_equals_one_by_one(tmp_path):
    from lf_thinkplugin.demo.tiny_model import build_tiny_model
    from lf_thinkplugin.evaluation.generate import (
        TrainedWith,
        generate_hf,
        load_model,
        load_tokenizer,
        prompter,
    )

    model_dir = str(build_tiny_model(tmp_path / "m"))
    tok = load_tokenizer(model_dir)
    p = prompter(tok, model_dir, TrainedWith())
    prompts = [p.ids([{"role": "user", "content": text}], True) for text in ("Hi", "What is two plus two? Think.", "Say hello world.")]
    assert len({len(x) for x in prompts}) == 3  # different lengths: the batch is padded
    model = load_model(model_dir)
    stops = set(p.markup.stop_ids)
    batched = generate_hf(model, tok, prompts, 8, stops, batch_size=3)
    alone = [generate_hf(model, tok, [x], 8, stops, batch_size=1)[0] for x in prompts]
    assert [row[:len(a)] for row, a in zip(batched, alone)] == alone
