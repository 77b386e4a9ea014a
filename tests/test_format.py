"""Families the code has never seen: the reasoning format learnt from chat templates written here, one per
shape, each trained through `llamafactory-cli train` with `tokenized_path`.

The oracle is independent of the plugin: for every assistant turn, the messages the template reads are
typed by hand in the template's own form (reasoning in its field, its chunks, its inline layout, its
switch), the expected prompt is `apply_chat_template(turns before, add_generation_prompt=True)` and the
expected response is the rest of the template's rendering with the turn last, or, where the template
cannot render the turn as the model writes it, the text written out by hand below. Every labelled run
must be one turn's response right after exactly that turn's prompt ids, and the last turn must train.
Tokenizer: Qwen3's, with each shape's special tags added as special tokens.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from conftest import require_fixture
from lfrun import train
from oracle import label_runs

IGNORE = -100
CHATML_HEAD = ("{% for m in messages %}"
               "{% if m.role == 'system' %}<|im_start|>system\n{{ m.content }}<|im_end|>\n"
               "{% elif m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n")
LAST_USER = ("{% set ns = namespace(last=-1) %}"
             "{% for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}")

# 1. reasoning in a field named `reasoning` (newer chat APIs), history reasoning dropped
FIELD = LAST_USER + CHATML_HEAD + (
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if m.reasoning and loop.index0 > ns.last %}<think>\n{{ m.reasoning }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# 2. typed content chunks: {"type": "thinking", "thinking": ...}, {"type": "text", "text": ...}
CHUNKS = LAST_USER + CHATML_HEAD + (
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n{% set idx = loop.index0 %}"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
    "{% if c.type == 'thinking' %}{% if idx > ns.last %}<think>{{ c.thinking }}</think>{% endif %}"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# 3. the generation prompt opens the block and the template writes the opener itself: content starts after it
OPENED = CHATML_HEAD + (
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n<think>\n"
    "{% if loop.last %}{{ m.content }}{% else %}\n</think>\n\n{{ m.content.split('</think>')[-1] | trim }}{% endif %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
# 4. reasoning never rendered (every turn keeps the text after the closer), markup `<reasoning>`, not DeepSeek's tags
DROPPED = ("{% for m in messages %}"
           "{% if m.role == 'system' %}{{ m.content }}"
           "{% elif m.role == 'user' %}<|User|>{{ m.content }}"
           "{% elif m.role == 'assistant' %}<|Assistant|>{{ m.content.split('</reasoning>')[-1] | trim }}<|end|>"
           "{% endif %}{% endfor %}{% if add_generation_prompt %}<|Assistant|><reasoning>\n{% endif %}")
# 5. reasoning rendered only in tool-call turns, channel markup of its own spelling, in a field named `thought`
CHANNEL = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}<|turn|>system<|msg|>{{ m.content }}<|done|>"
    "{% elif m.role == 'user' %}<|turn|>user<|msg|>{{ m.content }}<|done|>"
    "{% elif m.role == 'tool' %}<|turn|>tool<|msg|>{{ m.content }}<|done|>"
    "{% elif m.role == 'assistant' %}<|turn|>assistant"
    "{% if m.tool_calls %}{% if m.thought %}<|ch|>think<|msg|>{{ m.thought }}<|done|><|turn|>assistant{% endif %}"
    "{% for c in m.tool_calls %}<|ch|>call<|msg|>{{ c.function.name }} {{ c.function.arguments | tojson }}<|done|>{% endfor %}"
    "{% else %}<|ch|>answer<|msg|>{{ m.content }}<|done|>{% endif %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|turn|>assistant{% endif %}")
# 6. the switch is text in the system message: `/no_think` closes the block in the prompt, `/think` is the default
FLAGS = (
    "{% set sys = messages[0].content if messages[0].role == 'system' else '' %}"
    "{% set off = '/no_think' in sys %}"
    "{% set clean = sys | replace('/no_think', '') | replace('/think', '') | trim %}"
    "<|im_start|>system\n{{ clean }}<|im_end|>\n"
    "{% for m in messages %}"
    "{% if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n{% if off %}<think>\n\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if off %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
# 7. `reasoning_effort`: low / medium / high written into the system message, `none` turns thinking off
EFFORT = (
    "<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n{% endif %}"
    "Reasoning effort: {{ reasoning_effort if reasoning_effort is defined else 'medium' }}<|im_end|>\n"
    "{% for m in messages %}"
    "{% if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if loop.last and reasoning_effort is defined and reasoning_effort == 'none' %}<think>\n\n</think>\n\n{% endif %}"
    "{% if m.reasoning_content %}<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if reasoning_effort is defined and reasoning_effort == 'none' %}<think>\n\n</think>\n\n{% endif %}{% endif %}")

# --- conversations, neutral form: ("user", text) | ("assistant", reasoning | None, answer) ------------------
MULTI = [("user", "Name a prime above 10."), ("assistant", "11 has no divisors.", "11."),
         ("user", "And the next one?"), ("assistant", "12 is even, 13 is prime.", "13.")]
DIRECT = [("user", "Say hello."), ("assistant", None, "Hello!")]
COMPACT = [("user", "Is 10 even?"), ("assistant", "10 / 2 = 5.", "Yes.")]  # written `<think>x</think>y` in the data
TOOL = [("user", "Weather in Paris?"), ("call", "I should call the tool.", "get_weather", {"city": "Paris"}),
        ("tool", '{"temp": 21}'), ("assistant", "The tool says 21.", "It is 21 degrees.")]
TOOLS = [{"name": "get_weather", "description": "Weather of a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def lf_sample(turns: list, system: str = "") -> dict[str, Any]:
    out = []
    for turn in turns:
        if turn[0] == "user":
            out.append({"from": "human", "value": turn[1]})
        elif turn[0] == "tool":
            out.append({"from": "observation", "value": turn[1]})
        else:
            compact = turns is COMPACT
            block = "" if turn[1] is None else (f"<think>{turn[1]}</think>" if compact else f"<think>\n{turn[1]}\n</think>\n\n")
            value = turn[2] if turn[0] == "assistant" else json.dumps({"name": turn[2], "arguments": turn[3]})
            out.append({"from": "gpt" if turn[0] == "assistant" else "function_call", "value": block + value})
    return {"conversations": out, "system": system, "tools": json.dumps(TOOLS) if any(t[0] == "call" for t in turns) else ""}


@dataclass
class Shape:
    name: str
    template: str
    specials: tuple[str, ...]
    # (turn, thinking) -> the assistant message as the template reads it (typed from the template)
    message: Callable[[tuple, bool], dict]
    convs: list[list]
    thinking: Optional[bool] = True  # LF's enable_thinking for the run
    kwargs: Callable[[bool], dict] = lambda thinking: {}
    system: Callable[[bool], str] = lambda thinking: ""
    # where the template cannot render the last turn as generated: (turn, thinking) -> the text written by hand
    generated: Optional[Callable[[tuple, bool], Optional[str]]] = None
    markup: tuple[str, str] = ("<think>", "</think>")
    extra: dict = field(default_factory=dict)


def _plain(turn: tuple, thinking: bool) -> dict:
    return {"role": "assistant", "content": turn[2]}


def field_message(key: str) -> Callable[[tuple, bool], dict]:
    def message(turn: tuple, thinking: bool) -> dict:
        msg = {"role": "assistant", "content": turn[2] if turn[0] == "assistant" else ""}
        if turn[0] == "call":
            msg["tool_calls"] = [{"type": "function", "id": f"functions.{turn[2]}:0",
                                  "function": {"name": turn[2], "arguments": turn[3]}}]
        if turn[1] is not None and thinking:
            msg[key] = turn[1]
        return msg
    return message


def chunks_message(turn: tuple, thinking: bool) -> dict:
    if turn[1] is None or not thinking:
        return {"role": "assistant", "content": turn[2]}
    return {"role": "assistant", "content": [{"type": "thinking", "thinking": turn[1]}, {"type": "text", "text": turn[2]}]}


def opened_message(turn: tuple, thinking: bool) -> dict:  # content after the template's own `<think>\n`
    return {"role": "assistant", "content": f"{turn[1] or ''}\n</think>\n\n{turn[2]}"}


def dropped_message(turn: tuple, thinking: bool) -> dict:
    return {"role": "assistant", "content": f"<reasoning>\n{turn[1]}\n</reasoning>\n\n{turn[2]}" if turn[1] else turn[2]}


def dropped_generated(turn: tuple, thinking: bool) -> str:  # after `<|Assistant|><reasoning>\n`
    return f"{turn[1] or ''}\n</reasoning>\n\n{turn[2]}<|end|>"


def channel_generated(turn: tuple, thinking: bool) -> Optional[str]:  # a final answer's reasoning, as tool-call turns put it
    if turn[0] != "assistant" or not turn[1]:
        return None
    return f"<|ch|>think<|msg|>{turn[1]}<|done|><|turn|>assistant<|ch|>answer<|msg|>{turn[2]}<|done|>"


def flags_message(turn: tuple, thinking: bool) -> dict:
    if turn[1] is None or not thinking:
        return {"role": "assistant", "content": turn[2]}
    return {"role": "assistant", "content": f"<think>\n{turn[1]}\n</think>\n\n{turn[2]}"}


SHAPES = [
    Shape("reasoning field named `reasoning`", FIELD, (), field_message("reasoning"), [MULTI, DIRECT, COMPACT]),
    Shape("thinking content chunks", CHUNKS, (), chunks_message, [MULTI, DIRECT, COMPACT]),
    Shape("prompt opens the block, content after the opener", OPENED, (), opened_message, [MULTI, DIRECT, COMPACT]),
    Shape("reasoning dropped in every turn, <reasoning> markup", DROPPED, ("<|User|>", "<|Assistant|>", "<|end|>"),
          dropped_message, [MULTI, DIRECT, COMPACT], generated=dropped_generated, markup=("<reasoning>", "</reasoning>")),
    Shape("reasoning only in tool-call turns, channel markup", CHANNEL, ("<|turn|>", "<|msg|>", "<|ch|>", "<|done|>"),
          field_message("thought"), [TOOL, DIRECT], generated=channel_generated,
          markup=("<|ch|>think<|msg|>", "<|done|>")),
    Shape("text switch /no_think (off)", FLAGS, (), flags_message, [MULTI, DIRECT], thinking=False,
          system=lambda thinking: "" if thinking else "/no_think"),
    Shape("text switch /no_think (on)", FLAGS, (), flags_message, [MULTI, DIRECT], thinking=True),
    Shape("reasoning_effort none (off)", EFFORT, (), field_message("reasoning_content"), [MULTI, DIRECT], thinking=False,
          kwargs=lambda thinking: {} if thinking else {"reasoning_effort": "none"}),
]


def hf_messages(shape: Shape, turns: list, thinking: bool) -> list[dict]:
    system = shape.system(thinking)
    out: list[dict] = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        if turn[0] == "user":
            out.append({"role": "user", "content": turn[1]})
        elif turn[0] == "tool":
            out.append({"role": "tool", "content": turn[1]})
        else:
            out.append(shape.message(turn, thinking))
    return out


def expected_turns(tok: Any, shape: Shape, turns: list, thinking: bool) -> list[tuple[list[int], Optional[list[int]]]]:
    messages = hf_messages(shape, turns, thinking)
    kw = shape.kwargs(thinking)
    tools = [{"type": "function", "function": t} for t in TOOLS] if any(t[0] == "call" for t in turns) else None

    def text(msgs: list[dict], gen: bool) -> str:
        return tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=gen, tokenize=False, **kw)

    neutral = [t for t in turns if t[0] in ("assistant", "call")]
    out, n = [], 0
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        turn, n = neutral[n], n + 1
        prompt, full = text(messages[:k], True), text(messages[: k + 1], False)
        rest = full[len(prompt):] if full.startswith(prompt) else None
        if shape.generated is not None and turn is neutral[-1]:
            rest = shape.generated(turn, thinking) or rest
        out.append((tok.encode(prompt, add_special_tokens=False),
                    None if rest is None else tok.encode(rest, add_special_tokens=False)))
    return out


def check(tok: Any, shape: Shape, turns: list, thinking: bool, input_ids: list[int], labels: list[int]) -> None:
    expected = expected_turns(tok, shape, turns, thinking)
    runs = label_runs(labels)
    trained = []
    for s, e in runs:
        got = labels[s:e]
        matches = [k for k, (p, r) in enumerate(expected)
                   if input_ids[:s] == p and r is not None and got in (r, r + [tok.eos_token_id])]
        assert matches, (shape.name, turns[0], "trained", tok.decode(got), "after", tok.decode(input_ids[max(0, s - 10):s]),
                         "expected", [tok.decode(r) for _, r in expected if r])
        trained.append(matches[0])
    assert len(expected) - 1 in trained, (shape.name, turns[0], "last turn not trained", tok.decode(input_ids))


def model_dir(shape: Shape, base: Path) -> Path:
    """Qwen3's tokenizer with the shape's tags and chat template, and a tiny random model beside it."""
    import torch
    from tokenizers import AddedToken
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_cache import _TINY
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    out = base / ("shape-" + (str(SHAPES.index(shape)) if shape in SHAPES else shape.name.replace(" ", "-")))
    if not out.exists():
        src = require_fixture("Qwen3-0.6B")
        tok = from_pretrained(str(src))
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in shape.specials], special_tokens=True)
        tok.chat_template = shape.template
        tok.save_pretrained(out)
        config = AutoConfig.for_model("qwen3", **_TINY, vocab_size=len(tok), tie_word_embeddings=True)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


def run_cli(shape: Shape, shapes_dir: Path, template: str = "native") -> tuple[Any, str, Path]:
    """`llamafactory-cli train` with `tokenized_path` on the shape's conversations: (process, log, tokenized folder)."""
    model = model_dir(shape, shapes_dir)
    run = shapes_dir / ("run-" + model.name)
    if run.exists():
        shutil.rmtree(run)
    data = run / "data"
    data.mkdir(parents=True)
    (data / "convs.json").write_text(json.dumps([lf_sample(t) for t in shape.convs], ensure_ascii=False))
    (data / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "convs.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))
    out = run / "out"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "convs", "dataset_dir": str(data), "cutoff_len": 2048, "enable_thinking": shape.thinking,
        "tokenized_path": str(run / "tokenized"), "output_dir": str(out), "report_to": "none",
        "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 1, "save_strategy": "no",
        "thinkplugin": {"template": template, "export_serving": False},
    }
    proc = train(config, out, timeout=600)
    return proc, proc.stdout + proc.stderr, run / "tokenized"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_unseen_family_trains_on_its_own_tokens(shape: Shape, shapes_dir: Path) -> None:
    from datasets import load_from_disk

    from lf_thinkplugin.loading.tokenizer import from_pretrained

    proc, log, tokenized = run_cli(shape, shapes_dir)
    assert proc.returncode == 0, log[-3000:]
    assert "is not trained" not in log, log[-3000:]
    rows = load_from_disk(str(tokenized / "train"))
    tok = from_pretrained(str(model_dir(shape, shapes_dir)))
    for turns, row in zip(shape.convs, rows, strict=True):
        check(tok, shape, turns, bool(shape.thinking), row["input_ids"], row["labels"])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_learnt_format(shape: Shape, shapes_dir: Path) -> None:
    """What the format says of each shape, against the facts typed from its template; it survives JSON."""
    from lf_thinkplugin.loading.tokenizer import from_pretrained
    from lf_thinkplugin.templates.format import ReasoningFormat, learn

    fmt = learn(from_pretrained(str(model_dir(shape, shapes_dir))))
    assert fmt.markup == shape.markup, fmt
    assert ReasoningFormat.from_dict(json.loads(fmt.to_json())) == fmt
    facts = {FIELD: ("field", "reasoning"), CHUNKS: ("chunks", "thinking"), OPENED: ("inline", None),
             DROPPED: ("inline", None), CHANNEL: ("field", "thought"), FLAGS: ("inline", None),
             EFFORT: ("field", "reasoning_content")}
    assert (fmt.source, fmt.key) == facts[shape.template], fmt
    if shape.template is FLAGS:
        assert fmt.switch is not None and (fmt.switch.kind, fmt.switch.name, fmt.switch.off) == ("flag", "system", "/no_think")
    if shape.template is EFFORT:
        assert fmt.switch is not None and (fmt.switch.name, fmt.switch.off) == ("reasoning_effort", "none")
        assert "reasoning_effort" in fmt.settings
    if shape.template is OPENED:
        assert fmt.prompt_opens and fmt.content_after_opener
    if shape.template is DROPPED:
        assert fmt.prompt_opens and fmt.last_turn == "rule"
    if shape.template is CHANNEL:
        assert fmt.last_turn == "tool_block"


# a template with no system role: the doctor's `system_prompt` probe fails, data without system messages trains
NO_SYSTEM = LAST_USER + (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% elif m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if m.reasoning_content and loop.index0 > ns.last %}<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_auto_decides_from_the_data_not_from_probe_shapes_it_lacks(shapes_dir: Path) -> None:
    """`template: auto` on a family whose template refuses system messages: no template renders every probe,
    but the data has no system message, so auto picks `native`, warns with the failing shape, and every sample
    trains (the summary counts samples and trained turns: MULTI's first turn is history, its reasoning dropped)."""
    from datasets import load_from_disk

    from lf_thinkplugin.loading.tokenizer import from_pretrained

    shape = Shape("no system role", NO_SYSTEM, (), field_message("reasoning_content"), [MULTI, DIRECT, COMPACT])
    proc, log, tokenized = run_cli(shape, shapes_dir, template="auto")
    assert proc.returncode == 0, log[-3000:]
    assert "template: auto -> native, although" in log and "system_prompt" in log, log[-3000:]
    assert "training data: 3 of 3 samples train, 3 trained turns" in log, log[-3000:]
    tok = from_pretrained(str(model_dir(shape, shapes_dir)))
    for turns, row in zip(shape.convs, load_from_disk(str(tokenized / "train")), strict=True):
        check(tok, shape, turns, True, row["input_ids"], row["labels"])


def _lf_native(tok: Any) -> Any:
    """LF's `native` template set up on the tokenizer as `llamafactory-cli train` does (thought_words = the markup)."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from lf_thinkplugin.templates import register_templates

    register_templates()
    return get_template_and_fix_tokenizer(tok, DataArguments(template="native", enable_thinking=True))


SPAN_SHAPES = [s for s in SHAPES if s.template in (FIELD, DROPPED, CHANNEL, CHUNKS)]


@pytest.mark.parametrize("shape", SPAN_SHAPES, ids=lambda s: s.name)
def test_think_loss_and_eval_follow_the_learnt_markup(shape: Shape, shapes_dir: Path) -> None:
    """On each unseen markup (`<reasoning>`, channel headers, a renamed field, chunks): mask_reasoning keeps the
    last answer's labels and removes exactly the reasoning; span kinds mark it as reasoning; and `lf-think eval`'s
    classifier, with the markup learnt from the tokenizer alone, reads the turn the model was trained to write as
    well-formed, with its reasoning and answer."""
    import torch

    from lf_thinkplugin.evaluation.generate import TrainedWith, prompter
    from lf_thinkplugin.evaluation.metrics import classify
    from lf_thinkplugin.loading.tokenizer import from_pretrained
    from lf_thinkplugin.loss.collator import tags_for
    from lf_thinkplugin.loss.spans import apply_policy

    model = model_dir(shape, shapes_dir)
    tok = from_pretrained(str(model))
    template = _lf_native(tok)
    assert tuple(template.thought_words) == shape.markup
    turns = next(t for t in shape.convs if t[-1][0] == "assistant" and t[-1][1])
    sample = lf_sample(turns)
    roles = {"human": "user", "gpt": "assistant", "function_call": "function", "observation": "observation"}
    messages = [{"role": roles[m["from"]], "content": m["value"]} for m in sample["conversations"]]
    pairs = template.encode_multiturn(tok, messages, None, sample["tools"] or None)
    input_ids = [t for source, target in pairs for t in source + target]
    labels = [t for source, target in pairs for t in [IGNORE] * len(source) + target]
    check(tok, shape, turns, True, input_ids, labels)
    lab = torch.tensor([labels])
    kinds = apply_policy(tags_for(tok, template), lab, torch.ones_like(lab), "mask_reasoning")
    kept = tok.decode([t for t in lab[0].tolist() if t != IGNORE])
    reasoning_part = tok.decode([t for t, k in zip(labels, kinds[0].tolist(), strict=True) if t != IGNORE and k != 1])  # not answer
    last = turns[-1]
    assert last[2] in kept and last[1] not in kept, (shape.name, kept)
    assert last[1] in reasoning_part, (shape.name, reasoning_part)

    prompts = prompter(tok, str(model), TrainedWith())
    assert (prompts.markup.open_tag, prompts.markup.close_tag) == shape.markup
    start = max(i for i, (s, t) in enumerate(pairs) if t)
    generated = pairs[start][1]  # exactly what the model was trained to write for its last turn
    if not set(generated) & set(prompts.markup.stop_ids):
        generated = generated + [tok.eos_token_id]
    out = classify(generated, tok, prompts.markup, "think", 256, last[2])
    assert out.status == "ok" and out.tags_as_ids and out.end_of_turn, (shape.name, out)
    assert out.reasoning.strip() == last[1] and out.answer == last[2], (shape.name, out)
    assert out.reasoning_tokens > 0 and out.answer_tokens > 0 and out.match["exact"], out


@pytest.mark.parametrize("name", ["reasoning dropped in every turn, <reasoning> markup",
                                  "reasoning only in tool-call turns, channel markup"])
def test_training_logs_spans_and_records_the_format(name: str, shapes_dir: Path) -> None:
    """A real `llamafactory-cli train` on an unseen markup: span logging splits the loss into reasoning and answer
    (the weight acts on the reasoning the format found), and output_dir records the template and its format."""
    from lfrun import log_history

    from lf_thinkplugin.templates.record import read_record

    shape = next(s for s in SHAPES if s.name == name)
    model = model_dir(shape, shapes_dir)
    run = shapes_dir / ("train-" + model.name)
    if run.exists():
        shutil.rmtree(run)
    data = run / "data"
    data.mkdir(parents=True)
    (data / "convs.json").write_text(json.dumps([lf_sample(t) for t in shape.convs] * 2, ensure_ascii=False))
    (data / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "convs.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))
    out = run / "out"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "convs", "dataset_dir": str(data), "cutoff_len": 1024, "output_dir": str(out), "report_to": "none",
        "max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1, "save_strategy": "no", "seed": 0,
        "learning_rate": 1.0e-4,
        "thinkplugin": {"template": "auto", "think_loss_weight": 0.5, "log_span_loss": True, "export_serving": False},
    }
    proc = train(config, out, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    logged = [r for r in log_history(out) if "loss" in r]
    assert len(logged) == 2 and all(r["loss_think"] > 0 and r["loss_answer"] > 0 for r in logged), logged
    record = read_record(out)
    assert record["template"] == "native" and record["format"].markup == shape.markup, record
    # a later `lf-think export` needs nothing but the output folder: template and mode come from the record
    import subprocess

    from lfrun import BIN

    proc = subprocess.run([str(BIN / "lf-think"), "export", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "template native" in proc.stdout and (out / "chat_template.jinja").is_file() and (out / "SERVING.md").is_file()
    assert __import__("re").search(r"parity with LF's training encoder on (\d+)/\1 probes", proc.stdout), proc.stdout


def test_check_shows_the_learnt_format(shapes_dir: Path) -> None:
    """`lf-think check` on a recipe for an unseen family prints its reasoning format before any weight loads."""
    import subprocess

    import yaml

    from lfrun import BIN

    shape = next(s for s in SHAPES if s.template is DROPPED)
    model = model_dir(shape, shapes_dir)
    run = shapes_dir / "check-dropped"
    run.mkdir(exist_ok=True)
    (run / "convs.json").write_text(json.dumps([lf_sample(t) for t in shape.convs]))
    (run / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "convs.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}}))
    recipe = run / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full", "dataset": "convs",
        "dataset_dir": str(run), "cutoff_len": 1024, "output_dir": str(run / "out"), "thinkplugin": {"template": "native"}}))
    proc = subprocess.run([str(BIN / "lf-think"), "check", str(recipe)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ("reasoning format: read from inline, markup <reasoning> … </reasoning>, prompt opens the block: yes, "
            "switch: none") in proc.stdout, proc.stdout
    assert "last turn: written from the markup" in proc.stdout and not (run / "out").exists()


def test_data_in_the_familys_own_markup_trains_and_is_checked(shapes_dir: Path) -> None:
    """Data written in the unseen family's own inline markup (`<reasoning>...</reasoning>`) trains exactly as LF's
    `<think>` convention does; the malformed report checks it with that markup (an unclosed block is named)."""
    from datasets import load_from_disk

    from lf_thinkplugin.loading.tokenizer import from_pretrained

    shape = next(s for s in SHAPES if s.template is DROPPED)
    model = model_dir(shape, shapes_dir)
    own = [{"conversations": [{"from": "human", "value": u}, {"from": "gpt", "value": a}], "system": "", "tools": ""}
           for u, a in (("Is 10 even?", "<reasoning>\n10 / 2 = 5.\n</reasoning>\n\nYes."),
                        ("Say hello.", "Hello!"))]
    turns = [[("user", "Is 10 even?"), ("assistant", "10 / 2 = 5.", "Yes.")], DIRECT]
    for name, records, expect in (("own", own, 0), ("broken", [own[0], {**own[0], "conversations": [
            own[0]["conversations"][0], {"from": "gpt", "value": "<reasoning>\nnever closed"}]}], 2)):
        run = shapes_dir / f"markup-{name}"
        if run.exists():
            shutil.rmtree(run)
        (run / "data").mkdir(parents=True)
        (run / "data" / "convs.json").write_text(json.dumps(records))
        (run / "data" / "dataset_info.json").write_text(json.dumps({"convs": {
            "file_name": "convs.json", "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))
        out = run / "out"
        proc = train({
            "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
            "dataset": "convs", "dataset_dir": str(run / "data"), "cutoff_len": 1024, "report_to": "none",
            "tokenized_path": str(run / "tokenized"), "output_dir": str(out), "max_steps": 1,
            "thinkplugin": {"template": "native", "export_serving": False, "on_malformed": "error"}}, out, timeout=600)
        log = proc.stdout + proc.stderr
        assert proc.returncode == expect, log[-3000:]
        if expect:
            assert "1 of 2 samples have malformed think tags" in log and "(`unclosed`), sample indices 1" in log, log[-2000:]
            assert "Traceback" not in log
            continue
        tok = from_pretrained(str(model))
        for conv, row in zip(turns, load_from_disk(str(run / "tokenized" / "train")), strict=True):
            check(tok, shape, conv, True, row["input_ids"], row["labels"])
