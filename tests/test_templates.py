"""The plugin's templates: registration, exact training ids against the official chat templates, the
parity engine (probes, oracle, tokenizer view) and LF's own templates left as they were."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_fixture

from lf_thinkplugin.demo.fixtures import DEEPSEEK_V3, QWEN3, QWEN25, R1_DISTILL

IGNORE = -100
QWEN3_THINK, QWEN3_THINK_END, IM_END, NL = 151667, 151668, 151645, 198
R1_BOS, R1_EOS, R1_THINK = 151646, 151643, 151648


@pytest.fixture(scope="module")
def lf():
    from llamafactory.data import template as lf_template

    from lf_thinkplugin.templates import register_templates

    register_templates()
    return lf_template


def faithful(name: str):
    """A fixture tokenizer read as its tokenizer.json says (transformers 5 misreads the DeepSeek ones)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(require_fixture(name)), local_files_only=True)


@pytest.fixture(scope="module")
def r1():
    return faithful(R1_DISTILL)


def encode(name, tokenizer, messages, system=None, enable_thinking=True):
    from lf_thinkplugin.templates.parity import Encoder, Scanner
    from lf_thinkplugin.templates.probes import Probe

    encoder = Encoder(name, Scanner(tokenizer, enable_thinking, probes=()).view(), enable_thinking)
    return encoder.encode(Probe("t", tuple(messages), system))


def official(tokenizer, messages, system=None, generation=False, **kwargs):
    conversation = ([{"role": "system", "content": system}] if system else []) + list(messages)
    return list(
        tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True, add_generation_prompt=generation, **kwargs)["input_ids"]
    )


def ids(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


TWO_TURNS = [
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "<think>\n2 is the smallest.\n</think>\n\n2."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "<think>\n3 works.\n</think>\n\n3."},
]


# ---- registration ---------------------------------------------------------------------------------


def test_register_templates_is_idempotent_and_adds_only_new_names(lf):
    from lf_thinkplugin.templates import NAMES, register_templates
    from lf_thinkplugin.templates.encoders import NativeTemplate, OfficialThinkTemplate

    plugin = (OfficialThinkTemplate, NativeTemplate)
    before = dict(lf.TEMPLATES)
    assert register_templates() == list(NAMES) == ["qwen3_think", "qwen3_think_keep_history", "r1_distill_qwen", "deepseek_r1", "native"]
    assert dict(lf.TEMPLATES) == before  # second call: same objects, nothing added
    for name in NAMES:
        assert isinstance(lf.TEMPLATES[name], plugin)
    assert not any(isinstance(t, plugin) for n, t in lf.TEMPLATES.items() if n not in NAMES)


def test_register_templates_never_overwrites_a_foreign_template(lf, monkeypatch):
    from lf_thinkplugin.templates import register_templates

    foreign = copy.deepcopy(lf.TEMPLATES["qwen"])
    monkeypatch.setitem(lf.TEMPLATES, "qwen3_think", foreign)
    assert "qwen3_think" not in register_templates()
    assert lf.TEMPLATES["qwen3_think"] is foreign


# Fields and training ids of every LF template; `tok_path` and `skip` are set by the caller.
_SNAPSHOT = r"""
from transformers import AutoTokenizer
from llamafactory.data.template import TEMPLATES
tok = AutoTokenizer.from_pretrained(tok_path, local_files_only=True)
msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nA"},
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>x</think>B"}]
out = {}
for name in sorted(TEMPLATES):
    if name in skip:
        continue
    try:
        pairs = TEMPLATES[name].encode_multiturn(tok, msgs, "S", None)
    except Exception as err:
        pairs = repr(err)
    out[name] = [repr(TEMPLATES[name]), pairs]
result = {"names": sorted(TEMPLATES), "templates": out}
"""


def test_lf_templates_behave_exactly_as_without_the_plugin(lf):
    """Every LF template: same fields and same training ids with the plugin installed as without it."""
    from lf_thinkplugin.templates import NAMES

    tok_path = str(require_fixture(QWEN3))
    code = "import json, os\ntok_path = os.environ['TOK']\nskip = json.loads(os.environ['SKIP'])\n" + _SNAPSHOT

    def snapshot(**env: str) -> dict:  # a fresh interpreter each: LF's get_template_and_fix_tokenizer sets fields
        # (enable_thinking, ...) on its shared template objects, so this test process may hold another test's values
        proc = subprocess.run([sys.executable, "-c", code + "\nprint(json.dumps(result))"], capture_output=True,
                              env=dict(os.environ, TOK=tok_path, SKIP=json.dumps(NAMES), HF_HUB_OFFLINE="1", **env),
                              text=True, cwd=REPO, timeout=300, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    without = snapshot(LF_THINKPLUGIN_DISABLE="1")
    with_plugin = snapshot()  # the plugin installed (its .pth) and registered when LF is imported
    assert not set(NAMES) & set(without["names"])
    assert set(with_plugin["names"]) - set(without["names"]) == set(NAMES)
    assert with_plugin["templates"] == without["templates"]


def test_scan_leaves_shared_templates_and_the_tokenizer_untouched(lf, load_tokenizer):
    from lf_thinkplugin.templates.parity import Scanner

    tok = load_tokenizer(QWEN3)
    before = {name: repr(t) for name, t in lf.TEMPLATES.items()}
    tok_before = (tok.chat_template, tok.eos_token, tok.pad_token, len(tok), dict(tok.get_added_vocab()), list(tok.all_special_tokens))
    for mode in (True, False, None):
        Scanner(tok, mode).scan()
    assert {name: repr(t) for name, t in lf.TEMPLATES.items()} == before
    assert (tok.chat_template, tok.eos_token, tok.pad_token, len(tok), dict(tok.get_added_vocab()), list(tok.all_special_tokens)) == tok_before


# ---- exact training ids ---------------------------------------------------------------------------


def test_qwen3_think_two_turns_is_the_official_rendering_with_only_the_last_turn_trained(lf, load_tokenizer):
    tok = load_tokenizer(QWEN3)
    input_ids, labels = encode("qwen3_think", tok, TWO_TURNS, system="Be brief.")
    assert input_ids == official(tok, TWO_TURNS, system="Be brief.")  # history reasoning dropped, as Qwen3 renders it
    prompt = official(tok, TWO_TURNS[:3], system="Be brief.", generation=True)
    response = ids(tok, "<think>\n3 works.\n</think>\n\n3.") + [IM_END, NL]
    assert input_ids == prompt + response
    assert labels == [IGNORE] * len(prompt) + response
    assert response[0] == QWEN3_THINK and QWEN3_THINK_END in response


def test_qwen3_think_normalises_compact_tags_and_adds_an_empty_block(lf, load_tokenizer):
    tok = load_tokenizer(QWEN3)
    user = [{"role": "user", "content": "Is 10 even?"}]
    for content, rendered in [
        ("<think>10 / 2 = 5.</think>Yes.", "<think>\n10 / 2 = 5.\n</think>\n\nYes."),
        ("Yes.", "<think>\n\n</think>\n\nYes."),
    ]:
        input_ids, labels = encode("qwen3_think", tok, user + [{"role": "assistant", "content": content}])
        prompt = official(tok, user, generation=True)
        assert input_ids == prompt + ids(tok, rendered) + [IM_END, NL]
        assert labels[len(prompt):] == ids(tok, rendered) + [IM_END, NL]


def test_qwen3_think_with_thinking_off_puts_the_empty_block_in_the_prompt(lf, load_tokenizer):
    tok = load_tokenizer(QWEN3)
    input_ids, labels = encode("qwen3_think", tok, TWO_TURNS, enable_thinking=False)
    prompt = official(tok, TWO_TURNS[:3], generation=True, enable_thinking=False)
    empty_block = ids(tok, "<think>\n\n</think>\n\n")
    assert empty_block[0] == QWEN3_THINK and prompt[-len(empty_block):] == empty_block
    response = ids(tok, "3.") + [IM_END, NL]
    assert input_ids == prompt + response
    assert labels == [IGNORE] * len(prompt) + response


def test_qwen3_think_keep_history_trains_every_turn_with_its_reasoning(lf, load_tokenizer):
    tok = load_tokenizer(QWEN3)
    input_ids, labels = encode("qwen3_think_keep_history", tok, TWO_TURNS)
    turn1 = ids(tok, "<think>\n2 is the smallest.\n</think>\n\n2.") + [IM_END, NL]
    turn2 = ids(tok, "<think>\n3 works.\n</think>\n\n3.") + [IM_END, NL]
    p1 = official(tok, TWO_TURNS[:1], generation=True)
    p2 = ids(tok, "<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n")
    assert input_ids == p1 + turn1 + p2 + turn2
    assert labels == [IGNORE] * len(p1) + turn1 + [IGNORE] * len(p2) + turn2


def test_r1_distill_prompt_opens_the_think_block_and_bos_appears_once(lf, r1):
    input_ids, labels = encode("r1_distill_qwen", r1, TWO_TURNS, system="Be brief.")
    prompt = official(r1, TWO_TURNS[:3], system="Be brief.", generation=True)
    assert prompt[-2:] == [R1_THINK, NL] and prompt.count(R1_BOS) == 1 and prompt[0] == R1_BOS
    response = ids(r1, "3 works.\n</think>\n\n3.") + [R1_EOS]  # starts inside the block the prompt opened
    assert input_ids == prompt + response
    assert labels == [IGNORE] * len(prompt) + response
    # history keeps only the text after </think>, verbatim, as the official template renders it
    history = "Be brief.<｜User｜>Name a prime.<｜Assistant｜>\n\n2.<｜end▁of▁sentence｜><｜User｜>Another?<｜Assistant｜><think>\n"
    assert prompt == [R1_BOS] + ids(r1, history)


def test_r1_answer_without_reasoning_closes_the_open_block(lf, r1):
    user = [{"role": "user", "content": "Say hi."}]
    for mode in (True, False, None):
        input_ids, labels = encode("r1_distill_qwen", r1, user + [{"role": "assistant", "content": "Hi!"}], enable_thinking=mode)
        prompt = official(r1, user, generation=True)
        assert input_ids == prompt + ids(r1, "\n</think>\n\nHi!") + [R1_EOS]
        assert labels[: len(prompt)] == [IGNORE] * len(prompt)


# An oracle for `r1_distill_qwen` that does not go through split_reasoning (templates/reasoning.py) or any other
# plugin code: the official DeepSeek-R1 format, written out by hand,
#   prompt   <｜begin▁of▁sentence｜>{system}<｜User｜>{question}<｜Assistant｜><think>\n          (no loss)
#   response {reasoning}\n</think>\n\n{answer}<｜end▁of▁sentence｜>                           (trained)
# with history turns as the official chat template renders them: <｜Assistant｜>{text after </think>}<｜end▁of▁sentence｜>.
# The ids were obtained once by encoding each prompt / response string below with the `tokenizers` library on the
# R1-Distill fixture's tokenizer.json (`Tokenizer.from_file(path).encode(text, add_special_tokens=False).ids`;
# the whole conversation string encodes to the same ids as its two halves), then pasted here as literals.
# Special ids: 151646 BOS, 151644 <｜User｜>, 151645 <｜Assistant｜>, 151648 <think>, 151649 </think>, 151643 EOS;
# 198 "\n", 271 "\n\n", 624 ".\n".
R1_ORACLE = {
    "one turn": (
        "Be brief.",
        [{"role": "user", "content": "What is 2 + 3?"},
         {"role": "assistant", "content": "<think>\nAdd 2 and 3.\n</think>\n\n5."}],
        # "<｜begin▁of▁sentence｜>Be brief.<｜User｜>What is 2 + 3?<｜Assistant｜><think>\n"
        [151646, 3430, 9814, 13, 151644, 3838, 374, 220, 17, 488, 220, 18, 30, 151645, 151648, 198],
        # "Add 2 and 3.\n</think>\n\n5.<｜end▁of▁sentence｜>"
        [2212, 220, 17, 323, 220, 18, 624, 151649, 271, 20, 13, 151643],
    ),
    "two turns": (
        "Be brief.",
        TWO_TURNS,
        # "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Name a prime.<｜Assistant｜>\n\n2.<｜end▁of▁sentence｜>"
        # "<｜User｜>Another?<｜Assistant｜><think>\n"
        [151646, 3430, 9814, 13, 151644, 675, 264, 10250, 13, 151645, 271, 17, 13, 151643, 151644, 14037, 30, 151645,
         151648, 198],
        # "3 works.\n</think>\n\n3.<｜end▁of▁sentence｜>"
        [18, 4278, 624, 151649, 271, 18, 13, 151643],
    ),
}


@pytest.mark.parametrize("enable_thinking", [True, None])
@pytest.mark.parametrize("case", list(R1_ORACLE))
def test_r1_distill_training_ids_equal_the_hand_written_oracle(lf, monkeypatch, case, enable_thinking):
    """LF's own SFT path (get_template_and_fix_tokenizer + SupervisedDatasetProcessor) with the plugin's template and
    the R1-Distill fixture tokenizer as plugin runs load it: input_ids and labels equal the literal lists exactly."""
    from conftest import fixture_tokenizer
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments

    system, messages, prompt, response = R1_ORACLE[case]
    monkeypatch.setitem(lf.TEMPLATES, "r1_distill_qwen", copy.deepcopy(lf.TEMPLATES["r1_distill_qwen"]))
    tokenizer = fixture_tokenizer(R1_DISTILL)  # a fresh one: LF fixes it in place
    data_args = DataArguments(template="r1_distill_qwen", cutoff_len=4096, enable_thinking=enable_thinking)
    template = lf.get_template_and_fix_tokenizer(tokenizer, data_args)
    processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
    batch = {"_prompt": [messages[:-1]], "_response": [messages[-1:]], "_system": [system], "_tools": [""],
             "_images": [None], "_videos": [None], "_audios": [None]}  # fmt: skip
    out = processor.preprocess_dataset(batch)
    assert out["input_ids"] == [prompt + response]
    assert out["labels"] == [[IGNORE] * len(prompt) + response]


def test_plugin_templates_keep_lf_inference_prompts_official(lf, load_tokenizer, r1):
    """LF's chat engines call encode_oneturn with an empty last answer: the prompt is the generation prompt."""
    from lf_thinkplugin.templates.parity import Scanner

    user = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]
    for name, tok, mode in [("qwen3_think", load_tokenizer(QWEN3), True), ("qwen3_think", load_tokenizer(QWEN3), False), ("r1_distill_qwen", r1, True)]:
        template = copy.deepcopy(lf.TEMPLATES[name])
        template.enable_thinking = mode
        template.fix_special_tokens(Scanner(tok, mode, probes=()).view())
        prompt, _ = template.encode_oneturn(tok, user)
        assert prompt == official(tok, user[:1], generation=True, enable_thinking=mode)


# ---- the parity engine ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [True, False, None])
def test_plugin_templates_have_parity_on_every_probe(lf, load_tokenizer, r1, mode):
    from lf_thinkplugin.templates.parity import Scanner
    from lf_thinkplugin.templates.probes import PROBES

    for name, tok in [("qwen3_think", load_tokenizer(QWEN3)), ("r1_distill_qwen", r1), ("deepseek_r1", r1)]:
        result = Scanner(tok, mode).check(name)
        assert result.ok, (name, mode, [p.summary() for p in result.probes if not p.ok])
        assert result.passed == len(PROBES) == 10


def test_lf_qwen_is_the_non_thinking_template_with_parity_for_qwen25(lf, load_tokenizer):
    from lf_thinkplugin.templates.parity import Scanner

    scanner = Scanner(load_tokenizer(QWEN25))
    assert scanner.check("qwen").ok
    assert [r.template for r in scanner.scan() if r.ok] == ["qwen", "native"]  # on the plain probes


def test_deepseek_r1_has_parity_on_the_v3_vocabulary_with_the_r1_chat_template(lf):
    """No DeepSeek-R1 tokenizer among the fixtures: the V3 tokenizer (same vocabulary) with R1's chat template."""
    from lf_thinkplugin.templates import jinja_text
    from lf_thinkplugin.templates.parity import Scanner

    tok = faithful(DEEPSEEK_V3)
    tok.chat_template = jinja_text("deepseek_r1.jinja")
    scanner = Scanner(tok)
    assert scanner.check("deepseek_r1").ok
    assert [r.template for r in scanner.scan() if r.ok] == ["r1_distill_qwen", "deepseek_r1", "native"]
    assert not scanner.check("deepseekr1").ok  # LF's: prompt stops before `<think>\n`


def test_lf_qwen3_loses_parity_on_history_reasoning_and_compact_tags(lf, load_tokenizer):
    from lf_thinkplugin.templates.parity import Scanner

    tok = load_tokenizer(QWEN3)
    result = {p.probe: p for p in Scanner(tok).check("qwen3").probes}
    history = result["multi_turn_reasoning_in_history"].divergence
    assert (history.turn, history.part) == (2, "prompt")
    # official prompt of turn 2 shows the turn-1 answer `11.`; LF's qwen3 still has the reasoning there
    assert history.expected_id == ids(tok, "11.")[0] and history.got_id == QWEN3_THINK
    compact = result["compact_think_tags"].divergence
    assert (compact.turn, compact.part, compact.position) == (1, "response", 1)
    assert compact.expected_id == NL and compact.got_id == ids(tok, "10")[0]
    assert result["single_turn"].ok and result["system_prompt"].ok


def test_lf_qwen3_with_mask_history_fails_only_on_compact_tags(lf, load_tokenizer):
    from lf_thinkplugin.templates.parity import Scanner

    result = Scanner(load_tokenizer(QWEN3), mask_history=True).check("qwen3")
    assert [p.probe for p in result.probes if not p.ok] == ["compact_think_tags"]
    assert Scanner(load_tokenizer(QWEN3), mask_history=True).check("qwen3_think").ok


def test_split_reasoning_reads_messages_as_qwen3_official_template_does(load_tokenizer):
    from lf_thinkplugin.templates.reasoning import split_reasoning

    tok = load_tokenizer(QWEN3)
    user = [{"role": "user", "content": "q"}]
    for content in ["<think>\nr\n</think>\n\na", "<think>r</think>a", "<think>\n\n</think>\n\na", "x<think>r</think>\na", "plain"]:
        reasoning, answer = split_reasoning(content)
        rendered = tok.apply_chat_template(user + [{"role": "assistant", "content": content}], tokenize=False)
        body = rendered.split("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
        assert body == "<think>\n" + (reasoning or "").strip("\n") + "\n</think>\n\n" + answer


def test_expected_generation_for_prompts_that_open_the_think_block():
    from lf_thinkplugin.templates.parity import expected_generation

    assert expected_generation("P<A>", "P<A>ans<E>", "") == "ans<E>"
    assert expected_generation("P<A><think>\n", "P<A>\n\nans<E>", "<think>\nr\n</think>\n\nans") == "r\n</think>\n\nans<E>"
    assert expected_generation("P<A><think>\n", "P<A>ans<E>", "") == "\n</think>\n\nans<E>"
    assert expected_generation("P<B>", "P<A>ans", "") is None


@pytest.mark.parametrize(
    "name, fixture",
    [("llama3", QWEN3), ("chatglm3", QWEN3), ("qwen3", QWEN3), ("gemma", R1_DISTILL), ("qwen", R1_DISTILL), ("deepseek3", R1_DISTILL)],
)
def test_tokenizer_view_encodes_like_a_real_copy_fixed_by_lf(lf, r1, load_tokenizer, name, fixture):
    """The scan's copy-on-write view versus LF's real get_template_and_fix_tokenizer on a deep copy.

    llama3 / gemma replace the EOS with a token the vocabulary lacks, chatglm3 adds stop words, qwen
    on R1 both; qwen3 and deepseek3 change nothing."""
    from llamafactory.hparams import DataArguments

    from lf_thinkplugin.templates.parity import Encoder, Scanner
    from lf_thinkplugin.templates.probes import PROBES

    for tok in [load_tokenizer(QWEN3) if fixture == QWEN3 else r1]:
        shared = lf.TEMPLATES[name]
        saved = (shared.enable_thinking, shared.preserve_thinking)
        real_tok = copy.deepcopy(tok)
        try:
            real = copy.deepcopy(lf.get_template_and_fix_tokenizer(real_tok, DataArguments(template=name)))
        finally:
            shared.enable_thinking, shared.preserve_thinking = saved
        view_encoder = Encoder(name, Scanner(tok, True, probes=()).view(), True)
        assert len(view_encoder.view) == len(real_tok)
        assert view_encoder.view.eos_token_id == real_tok.eos_token_id
        for probe in PROBES[:4] + PROBES[6:8]:
            messages = [dict(m) for m in probe.messages]
            real_pairs = real.encode_multiturn(real_tok, messages, probe.system, None)
            view_pairs = view_encoder.template.encode_multiturn(view_encoder.view, messages, probe.system, None)
            assert view_pairs == real_pairs, (name, probe.name)


def test_probe_suite_covers_the_issue_shapes():
    from lf_thinkplugin.templates.probes import PROBES

    names = [p.name for p in PROBES]
    assert len(names) == len(set(names)) == 10
    assert any(p.system for p in PROBES) and any(len(p.messages) >= 4 for p in PROBES)
    contents = [m["content"] for p in PROBES for m in p.messages if m["role"] == "assistant"]
    assert any("<think>\n\n</think>" in c for c in contents)  # empty reasoning
    assert any(c.startswith("<think>") and "\n" not in c for c in contents)  # compact tags
    assert any("<think>" not in c for c in contents)  # non-thinking answers
    assert any("北京" in m["content"] for p in PROBES for m in p.messages)
    assert max(len(m["content"]) for p in PROBES for m in p.messages) > 2000  # long turns


def test_jinja_files_are_the_official_templates_where_one_exists():
    from lf_thinkplugin.demo.fixtures import fixtures_dir
    from lf_thinkplugin.templates import jinja_text

    require_fixture(QWEN3)
    chat = fixtures_dir() / "chat_templates"
    assert jinja_text("qwen3_official.jinja") == (chat / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    assert jinja_text("deepseek_r1.jinja") == (chat / "deepseek-ai-DeepSeek-R1-Distill-Qwen-1.5B.jinja").read_text(encoding="utf-8")
    assert Path(REPO / "lf_thinkplugin" / "templates" / "qwen3_keep_history.jinja").is_file()
