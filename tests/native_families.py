"""The families `template: native` is tested on (tests/test_native.py, tests/test_template_settings.py): the neutral
conversations, each family's hand-typed message form (the oracle, written independently of the encoder), and the
tokenizer folders (real fixtures, or Qwen3's tokenizer with the family's specials and template: `stand-in`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from conftest import require_fixture
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
    n, last = 0, None  # the last tool call's name, for the tool result that follows it
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
