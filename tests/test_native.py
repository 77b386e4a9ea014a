"""`template: native` (and `auto` falling back to it): training ids equal each family's own chat template.

The oracle is written here, independently of the encoder: conversations are written once in a neutral
form and turned (1) into LF's sharegpt data (reasoning inline in `<think>`, `function_call` JSON,
`observation`, a `tools` column) and (2) into the messages each family's template reads, by a per-family
table typed by hand from the template (reasoning key, thinking switch, tool-argument form). For every
labelled run of a tokenized sample there must be an assistant turn k such that the ids before the run
are exactly `apply_chat_template(messages[:k], add_generation_prompt=True)` and the run is exactly the
ids of the rest of `apply_chat_template(messages[:k+1])` (an EOS may follow where the template leaves
the turn open); the last turn must be trained. DeepSeek's templates never render reasoning: their last
turn's expectation is DeepSeek's output format, written out below.

Tokenizers: real where the fixtures have one (Qwen3, R1-Distill-Qwen, DeepSeek-R1, DeepSeek-V3.1,
gpt-oss-20b); elsewhere a stand-in (Qwen3's tokenizer with the family's special tokens added as special
tokens and the family's official template), marked `stand-in` in the ids. Real-path runs go through
`llamafactory-cli train` with `tokenized_path` (LF tokenizes through its whole data pipeline, saves and
exits before loading weights); the remaining families go through LF's own SFT processor in process.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import require_fixture
from lfrun import train
from oracle import label_runs

IGNORE = -100
TEMPLATES = "chat_templates"

# --- conversations, neutral form ------------------------------------------------------------------------
# ("user", text) | ("assistant", reasoning | None, answer) | ("call", reasoning | None, name, args) | ("tool", text)
TOOLS = [{"name": "get_weather", "description": "Weather of a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CONVERSATIONS: list[dict[str, Any]] = [
    {"turns": [("user", "What is 17 * 3?"), ("assistant", "17 * 3 = 51.", "51.")]},
    {"system": "You are a careful tutor.",
     "turns": [("user", "Name a prime above 10."), ("assistant", "11 has no divisors.", "11."),
               ("user", "And the next one?"), ("assistant", "12 is even, 13 is prime.", "13.")]},
    {"tools": TOOLS,
     "turns": [("user", "Weather in Paris?"), ("call", "I should call the tool.", "get_weather", {"city": "Paris"}),
               ("tool", '{"temp": 21}'), ("assistant", "The tool says 21.", "It is 21 degrees in Paris.")]},
    {"tools": TOOLS,
     "turns": [("user", "Hi"), ("assistant", None, "Hello! Ask me about the weather."),
               ("user", "Rome?"), ("call", None, "get_weather", {"city": "Rome"}), ("tool", '{"temp": 25}'),
               ("assistant", "25 from the tool.", "25 degrees in Rome.")]},
    {"turns": [("user", "Say hello."), ("assistant", None, "Hello!")]},  # a direct answer under the thinking switch
]


def lf_sample(conv: dict[str, Any]) -> dict[str, Any]:
    out = []
    for turn in conv["turns"]:
        kind = turn[0]
        if kind == "user":
            out.append({"from": "human", "value": turn[1]})
        elif kind == "tool":
            out.append({"from": "observation", "value": turn[1]})
        elif kind == "assistant":
            out.append({"from": "gpt", "value": (f"<think>\n{turn[1]}\n</think>\n\n" if turn[1] else "") + turn[2]})
        else:
            call = json.dumps({"name": turn[2], "arguments": turn[3]}, ensure_ascii=False)
            out.append({"from": "function_call", "value": (f"<think>\n{turn[1]}\n</think>\n\n" if turn[1] else "") + call})
    tools = json.dumps(conv["tools"], ensure_ascii=False) if conv.get("tools") else ""
    return {"conversations": out, "system": conv.get("system", ""), "tools": tools}


# --- families: how each template reads messages, typed from the template ------------------------------------
@dataclass
class Family:
    name: str
    tokenizer: str  # fixture folder
    template: Optional[str] = None  # chat_templates/ file for stand-ins (None: the tokenizer's own)
    specials: tuple[str, ...] = ()  # added as special tokens to the stand-in
    reasoning: Optional[str] = "reasoning_content"  # message key the template reads; None: inline `<think>`
    switch: Optional[str] = None  # the template's thinking switch kwarg
    string_args: bool = False
    output_rule: Optional[str] = None  # DeepSeek: the last turn's reasoning is never rendered
    tools: bool = True
    cli: bool = False  # through `llamafactory-cli train`
    # (the opener the thinking prompt ends with, what the model writes before a direct answer's rendering) where
    # the template renders a direct answer without the block its prompt opened (typed from the template)
    empty_block: Optional[tuple[str, str]] = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def standin(self) -> bool:
        return self.template is not None


GLM_SPECIALS = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
KIMI_SPECIALS = ("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|tool_calls_section_begin|>",
                 "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")
MINIMAX_SPECIALS = ("]~!b[", "]~b]", "[e~[")
SEED_SPECIALS = ("<seed:bos>", "<seed:eos>", "<seed:think>", "</seed:think>", "<seed:tool_call>", "</seed:tool_call>")
ACME = (  # a ChatML family with `<think>` and `reasoning_content` that no list in the code names; history reasoning dropped
    "{% set ns = namespace(last_user=-1) %}"
    "{% for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}<|im_start|>system\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>tool\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if m.reasoning_content and loop.index0 > ns.last_user %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}[call {{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}"
    "{% else %}{{ m.content }}{% endif %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FAMILIES = [
    Family("qwen3", "Qwen3-0.6B", switch="enable_thinking", cli=True),
    Family("r1-distill-qwen", "DeepSeek-R1-Distill-Qwen-1.5B", reasoning=None, output_rule="deepseek", tools=False, cli=True),
    Family("deepseek-r1", "DeepSeek-R1", reasoning=None, output_rule="deepseek", tools=False),
    Family("deepseek-v3.1", "DeepSeek-V3.1", reasoning=None, switch="thinking", output_rule="compact", tools=False, cli=True),
    Family("gpt-oss", "gpt-oss-20b", reasoning="thinking", cli=True),
    Family("acme-chatml (unlisted)", "Qwen3-0.6B", template="acme", cli=True),
    Family("qwen3-thinking-2507", "Qwen3-0.6B", template="Qwen-Qwen3-4B-Thinking-2507.jinja"),
    Family("qwen3.5", "Qwen3-0.6B", template="Qwen-Qwen3.5-4B.jinja", switch="enable_thinking"),
    Family("qwen3.6", "Qwen3-0.6B", template="Qwen-Qwen3.6-35B-A3B.jinja", switch="enable_thinking"),
    Family("qwq", "Qwen3-0.6B", template="Qwen-QwQ-32B.jinja", reasoning=None, empty_block=("<think>\n", "\n</think>\n\n")),
    Family("minimax-m2", "Qwen3-0.6B", template="MiniMaxAI-MiniMax-M2.jinja", specials=MINIMAX_SPECIALS, tools=False,
           empty_block=("<think>\n", "\n</think>\n\n")),
    Family("glm-4.5", "Qwen3-0.6B", template="zai-org-GLM-4.5.jinja", specials=GLM_SPECIALS, switch="enable_thinking", cli=True),
    Family("glm-4.7", "Qwen3-0.6B", template="zai-org-GLM-4.7-Flash.jinja", specials=GLM_SPECIALS, switch="enable_thinking",
           empty_block=("<think>", "")),  # GLM-4.7 writes the closer itself: `<|assistant|></think>answer`
    Family("kimi-k2-thinking", "Qwen3-0.6B", template="moonshotai-Kimi-K2-Thinking.jinja", specials=KIMI_SPECIALS,
           output_rule="fill"),
    Family("seed-oss", "Qwen3-0.6B", template="ByteDance-Seed-Seed-OSS-36B-Instruct.jinja", specials=SEED_SPECIALS),
    Family("smollm3", "Qwen3-0.6B", template="HuggingFaceTB-SmolLM3-3B.jinja", reasoning=None, switch="enable_thinking",
           tools=False),
]


def hf_messages(conv: dict[str, Any], fam: Family, thinking: bool) -> tuple[list[dict], Optional[list]]:
    out: list[dict] = [{"role": "system", "content": conv["system"]}] if conv.get("system") else []
    n = 0
    for turn in conv["turns"]:
        kind = turn[0]
        if kind == "user":
            out.append({"role": "user", "content": turn[1]})
        elif kind == "tool":
            out.append({"role": "tool", "content": turn[1], "tool_call_id": f"functions.{last}:{n - 1}"})
        else:
            reasoning = turn[1] if thinking else None
            msg: dict[str, Any] = {"role": "assistant", "content": turn[2] if kind == "assistant" else ""}
            if kind == "call":
                args = json.dumps(turn[3], ensure_ascii=False) if fam.string_args else turn[3]
                msg["tool_calls"] = [{"type": "function", "id": f"functions.{turn[2]}:{n}",
                                      "function": {"name": turn[2], "arguments": args}}]
                last, n = turn[2], n + 1
            if reasoning:
                if fam.reasoning is None:  # inline, in the family's own layout (V3.1: compact)
                    block = f"<think>{reasoning}</think>" if fam.output_rule == "compact" else f"<think>\n{reasoning}\n</think>\n\n"
                    msg["content"] = block + msg["content"]
                else:
                    msg[fam.reasoning] = reasoning
            out.append(msg)
    tools = [{"type": "function", "function": t} for t in conv["tools"]] if conv.get("tools") else None
    return out, tools


def expected_turns(tok: Any, conv: dict[str, Any], fam: Family, thinking: bool) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per assistant turn, from the official template alone."""
    messages, tools = hf_messages(conv, fam, thinking)
    kw = {fam.switch: thinking} if fam.switch else {}

    def ids(msgs: list[dict], gen: bool) -> list[int]:
        return list(tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=gen, tokenize=True,
                                            return_dict=True, **kw)["input_ids"])

    def text(msgs: list[dict], gen: bool) -> str:
        return tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=gen, tokenize=False, **kw)

    out = []
    answers = [m for m in messages if m["role"] == "assistant"]
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, full = text(messages[:k], True), text(messages[: k + 1], False)
        rest = full[len(prompt):] if full.startswith(prompt) else None
        is_last = m is answers[-1]
        if rest is None and is_last and fam.name == "gpt-oss":  # history analysis dropped once a final exists
            i = full.rindex("to=assistant<|channel|>commentary<|message|>")
            rest = full[full.index("<|end|><|start|>assistant", i) + len("<|end|><|start|>assistant"):]
        if rest is None and is_last and fam.name == "kimi-k2-thinking":  # the same: tool-chain reasoning dropped
            rest = full[full.rindex("<|im_assistant|>assistant<|im_middle|>") + len("<|im_assistant|>assistant<|im_middle|>"):]
        neutral = [t for t in conv["turns"] if t[0] in ("assistant", "call")][answers.index(m)]
        if is_last and fam.output_rule in ("deepseek", "compact") and neutral[0] == "assistant":
            r = (neutral[1] or "") if thinking else ""
            eos = "<｜end▁of▁sentence｜>"
            if fam.output_rule == "deepseek":  # R1: the prompt ends `<think>\n`
                rest = f"{r}\n</think>\n\n{neutral[2]}{eos}"
            else:  # V3.1 thinking: prompt ends `<think>`; off: `</think>` and the answer as rendered
                rest = f"{r}</think>{neutral[2]}{eos}" if thinking else rest
        if rest is None and is_last and fam.empty_block and thinking and neutral[0] == "assistant" and not neutral[1]:
            # the prompt opened the block, the template renders a direct answer without it: the model closes it empty
            opener, written = fam.empty_block
            assert prompt.endswith(opener)
            head = prompt[: -len(opener)]
            assert full.startswith(head), (fam.name, full)
            rest = written + full[len(head):]
        if is_last and fam.output_rule == "fill" and neutral[1] and thinking and rest is not None:  # Kimi: `<think></think>` filled
            rest = rest.replace("<think></think>", f"<think>{neutral[1]}</think>", 1)
        out.append((ids(messages[:k], True), None if rest is None else tok.encode(rest, add_special_tokens=False)))
    return out


def check_sample(tok: Any, conv: dict, fam: Family, thinking: bool, input_ids: list[int], labels: list[int]) -> list[int]:
    expected = expected_turns(tok, conv, fam, thinking)
    runs = label_runs(labels)
    trained = []
    eos = tok.eos_token_id
    for s, e in runs:
        matches = [k for k, (p, r) in enumerate(expected) if input_ids[:s] == p and r is not None
                   and (labels[s:e] == r or labels[s:e] == r + [eos])]
        assert matches, (fam.name, thinking, conv["turns"][0], "span", tok.decode(input_ids[s:e]),
                         "after", tok.decode(input_ids[max(0, s - 12):s]))
        assert labels[s:e] == input_ids[s:e]
        trained.append(matches[0])
    assert len(expected) - 1 in trained, (fam.name, thinking, conv["turns"][0], "last turn not trained", trained)
    return trained


# --- tokenizers ---------------------------------------------------------------------------------------------
def model_dir(fam: Family, tmp: Path) -> Path:
    src = require_fixture(fam.tokenizer)
    if not fam.standin:
        return src
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    out = tmp / ("standin-" + fam.name.split()[0])
    if not out.exists():
        tok = from_pretrained(str(src))
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in fam.specials], special_tokens=True)
        template = ACME if fam.template == "acme" else (src.parent / TEMPLATES / fam.template).read_text(encoding="utf-8")
        tok.chat_template = template
        tok.save_pretrained(out)
        shutil.copy(src / "config.json", out / "config.json")
    return out


def trainable_dir(fam: Family, tmp: Path) -> Path:
    """The tokenizer folder plus a tiny random Qwen3-architecture model (only the ids matter here)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_cache import _TINY

    src = model_dir(fam, tmp)
    out = tmp / ("trainable-" + fam.name.split()[0])
    if not out.exists():
        shutil.copytree(src, out, ignore=shutil.ignore_patterns("config.json", "tiktoken"))
        config = AutoConfig.for_model("qwen3", **_TINY, vocab_size=len(load(src)), tie_word_embeddings=True)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    return out


def load(path: Path) -> Any:
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    return from_pretrained(str(path))


def modes(fam: Family) -> list[bool]:
    return [True, False] if fam.switch else [True]


def write_data(folder: Path, fam: Family) -> None:
    convs = [c for c in CONVERSATIONS if fam.tools or not c.get("tools")]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "convs.json").write_text(json.dumps([lf_sample(c) for c in convs], ensure_ascii=False))
    (folder / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "convs.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))


def family_convs(fam: Family) -> list[dict]:
    return [c for c in CONVERSATIONS if fam.tools or not c.get("tools")]


@pytest.mark.parametrize("fam", [f for f in FAMILIES if f.cli], ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_auto_through_llamafactory_cli(fam: Family, tmp_path_factory: pytest.TempPathFactory) -> None:
    from datasets import load_from_disk

    tmp = tmp_path_factory.mktemp("native")
    model = trainable_dir(fam, tmp_path_factory.getbasetemp())
    write_data(tmp / "data", fam)
    tok = load(model)
    for thinking in modes(fam)[:1]:  # thinking on; every mode of every family runs in LF's processor below
        out = tmp / f"run-{thinking}"
        config = {
            "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
            "dataset": "convs", "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "enable_thinking": thinking,
            "tokenized_path": str(out / "tokenized"), "output_dir": str(out), "report_to": "none",
            "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 1, "save_strategy": "no",
            "thinkplugin": {"template": "auto", "export_serving": False},
        }
        proc = train(config, out, timeout=600)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "template: auto -> native" in log, log[-2000:]
        data = load_from_disk(str(out / "tokenized" / "train"))
        assert len(data) == len(family_convs(fam))
        for conv, row in zip(family_convs(fam), data, strict=True):
            check_sample(tok, conv, fam, thinking, row["input_ids"], row["labels"])


def lf_encode(tok: Any, fam: Family, thinking: bool, convs: list[dict], mask_history: bool = False) -> list[tuple]:
    """LF's own SFT processor with the registered `native` template, as `llamafactory-cli train` sets it up."""
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from lf_thinkplugin.templates import register_templates

    register_templates()
    args = DataArguments(template="native", cutoff_len=1 << 20, enable_thinking=thinking, mask_history=mask_history)
    template = get_template_and_fix_tokenizer(tok, args)
    attr = DatasetAttr("file", "convs", formatting="sharegpt", messages="conversations", system="system", tools="tools")
    convert = SharegptDatasetConverter(attr, args)
    aligned = [convert(lf_sample(c)) for c in convs]
    batch = {k: [a[k] for a in aligned] for k in aligned[0]}
    out = SupervisedDatasetProcessor(template=template, tokenizer=tok, processor=None, data_args=args).preprocess_dataset(batch)
    return list(zip(out["input_ids"], out["labels"], strict=True))


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_native_in_lf_processor(fam: Family, tmp_path_factory: pytest.TempPathFactory) -> None:
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    for thinking in modes(fam):
        convs = family_convs(fam)
        rows = lf_encode(tok, fam, thinking, convs)
        for conv, (input_ids, labels) in zip(convs, rows, strict=True):
            check_sample(tok, conv, fam, thinking, input_ids, labels)


@pytest.mark.parametrize("name", ["qwen3", "r1-distill-qwen", "gpt-oss"])
def test_expand_turns(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """N assistant turns -> N samples, each the exact inference context of its turn, only that turn trained."""
    from lf_thinkplugin.data.expand import split_conversation

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[3] if fam.tools else CONVERSATIONS[1]
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    attr = DatasetAttr("file", "convs", formatting="sharegpt", messages="conversations", system="system", tools="tools")
    aligned = SharegptDatasetConverter(attr, DataArguments())(lf_sample(conv))
    pieces = split_conversation(aligned["_prompt"], aligned["_response"])
    responses = [t for t in conv["turns"] if t[0] in ("assistant", "call")]
    assert len(pieces) == len(responses)
    trained_tokens = 0
    for n, (prompt, response) in enumerate(pieces):
        sub = dict(conv, turns=conv["turns"][: conv["turns"].index(responses[n]) + 1])
        (input_ids, labels), = lf_encode(tok, fam, True, [sub], mask_history=True)
        prompt_ids, response_ids = expected_turns(tok, sub, fam, True)[-1]
        start = len(prompt_ids)
        assert input_ids[:start] == prompt_ids and all(label == IGNORE for label in labels[:start])
        got = labels[start:]
        assert got in (response_ids, response_ids + [tok.eos_token_id]), (name, n, tok.decode(got))
        trained_tokens += len(got)
    print(f"{name}: {len(pieces)} samples, {trained_tokens} trained tokens")
    assert trained_tokens > 0


SPAN_FAMILIES = ["gpt-oss", "seed-oss", "glm-4.5", "qwen3.5", "r1-distill-qwen", "kimi-k2-thinking"]


@pytest.mark.parametrize("name", SPAN_FAMILIES)
def test_reasoning_spans_follow_each_familys_markup(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """think_loss finds the reasoning the template produced (`<seed:think>`, gpt-oss's analysis channel, GLM's
    tags without newlines, a prompt that opens the block): mask_reasoning leaves exactly the non-reasoning
    labels, whose text holds every answer and no reasoning."""
    import torch

    from lf_thinkplugin.loss.collator import tags_for
    from lf_thinkplugin.loss.spans import apply_policy
    from llamafactory.data.template import TEMPLATES

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[2] if fam.tools else CONVERSATIONS[0]
    (input_ids, labels), = lf_encode(tok, fam, True, [conv])
    tags = tags_for(tok, TEMPLATES["native"])
    lab = torch.tensor([labels])
    kinds = apply_policy(tags, lab, torch.ones_like(lab), "mask_reasoning")
    kept = tok.decode([t for t in lab[0].tolist() if t != IGNORE])
    masked = tok.decode([t for t, k in zip(labels, kinds[0].tolist(), strict=True) if t != IGNORE and k != 1])
    last = conv["turns"][-1]
    assert last[2] in kept and last[1] not in kept, (name, kept)
    assert last[1] in masked, (name, masked)


@pytest.mark.parametrize("name", ["gpt-oss", "qwen3"])
def test_serving_bundle_of_native_is_the_models_own_template(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from lf_thinkplugin.serving import build_bundle

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    bundle = build_bundle("native", tok, True)
    assert bundle.files["chat_template.jinja"] == tok.chat_template
    assert set(bundle.files) == {"chat_template.jinja", "SERVING.md"} and bundle.parity.ok
    assert "No `Modelfile` or `lmdeploy_chat_template.json` is written for `native`" in bundle.files["SERVING.md"]


def test_gpt_oss_native_equals_the_official_harmony_renderer(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A second oracle for gpt-oss: openai-harmony (OpenAI's renderer) gives the same training ids as
    `template: native` on gpt-oss's own chat template: system, user, analysis, final (`<|return|>`)."""
    import datetime

    folder = require_fixture("gpt-oss-20b")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(folder / "tiktoken"))
    from openai_harmony import (Conversation, HarmonyEncodingName, Message, ReasoningEffort, RenderConversationConfig,
                                Role, SystemContent, load_harmony_encoding)

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    fam = next(f for f in FAMILIES if f.name == "gpt-oss")
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[0]
    (input_ids, labels), = lf_encode(tok, fam, True, [conv])
    today = datetime.date.today().isoformat()  # the HF template writes strftime_now("%Y-%m-%d")
    system = (SystemContent.new().with_model_identity("You are ChatGPT, a large language model trained by OpenAI.")
              .with_knowledge_cutoff("2024-06").with_conversation_start_date(today)
              .with_reasoning_effort(ReasoningEffort.MEDIUM))
    _, reasoning, answer = conv["turns"][1]
    messages = [Message.from_role_and_content(Role.SYSTEM, system),
                Message.from_role_and_content(Role.USER, conv["turns"][0][1])]
    prompt = encoding.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT)
    messages += [Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"),
                 Message.from_role_and_content(Role.ASSISTANT, answer).with_channel("final")]
    # keep the analysis of the turn being trained (harmony drops analysis before a final by default: history rule)
    full = encoding.render_conversation_for_training(Conversation.from_messages(messages),
                                                     RenderConversationConfig(auto_drop_analysis=False))
    assert input_ids == list(full)
    assert all(label == IGNORE for label in labels[: len(prompt)]) and labels[len(prompt):] == list(full)[len(prompt):]


def test_expand_turns_through_llamafactory_cli(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`thinkplugin.expand_turns` in a real run: one tokenized sample per assistant turn, each trained on its turn only."""
    from datasets import load_from_disk

    fam = next(f for f in FAMILIES if f.name == "qwen3")
    tmp = tmp_path_factory.mktemp("expand")
    model = trainable_dir(fam, tmp_path_factory.getbasetemp())
    write_data(tmp / "data", fam)
    tok = load(model)
    out = tmp / "run"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "convs", "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "tokenized_path": str(out / "tokenized"),
        "output_dir": str(out), "report_to": "none", "overwrite_cache": True, "max_steps": 1,
        "per_device_train_batch_size": 1, "save_strategy": "no",
        "thinkplugin": {"template": "native", "expand_turns": True, "export_serving": False},
    }
    proc = train(config, out, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    data = load_from_disk(str(out / "tokenized" / "train"))
    expected = []
    for conv in CONVERSATIONS:
        responses = [t for t in conv["turns"] if t[0] in ("assistant", "call")]
        for r in responses:
            sub = dict(conv, turns=conv["turns"][: conv["turns"].index(r) + 1])
            expected.append(expected_turns(tok, sub, fam, True)[-1])
    assert len(data) == len(expected) == 9
    for (prompt_ids, response_ids), row in zip(expected, data, strict=True):
        start = len(prompt_ids)
        assert row["input_ids"][:start] == prompt_ids and set(row["labels"][:start]) == {IGNORE}
        assert row["labels"][start:] == response_ids


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_auto_refuses_no_fixture_family(fam: Family, tmp_path_factory: pytest.TempPathFactory, capsys) -> None:
    """`template: auto` picks a template with parity on every probe for every fixture family, in each thinking
    mode it has (QwQ, GLM-4.7 with thinking on and MiniMax-M2 included), never refusing."""
    from lf_thinkplugin.templates.diagnose import resolve_template

    folder = model_dir(fam, tmp_path_factory.getbasetemp())
    for thinking in modes(fam):
        chosen = resolve_template(str(folder), enable_thinking=thinking)
        log = capsys.readouterr().out
        assert chosen and f"template: auto -> {chosen}" in log and "although" not in log, (fam.name, thinking, log)
