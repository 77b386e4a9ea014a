"""A template's chat format as plain strings: the one source of the Ollama and LMDeploy files.

The plugin's templates have hand-written formats (they think, and drop or keep history reasoning
the way their official templates do). Any other LF template is read from its slots (prefix, system,
user, assistant), which renders its turns but none of LF's reasoning handling.
Both engines add the BOS token themselves (tokenizer `add_bos_token`), so the formats never write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..templates.reasoning import split_reasoning

History = Literal["answer", "after_think", "keep", "verbatim"]


@dataclass(frozen=True)
class ChatFormat:
    template: str
    system: str  # around a system message's content
    eosys: str
    default_system: str  # rendered when the conversation has no system message ("" for none)
    user: str  # around a user message; eoh runs up to where the assistant's content starts
    eoh: str
    think_opener: str  # the generation prompt also opens the think block (R1: "<think>\n")
    nothink: str  # appended to the generation prompt when thinking is off (Qwen3's empty block)
    eoa: str  # after an assistant message's content: the end-of-turn string
    separator: str  # after eoa, before the next message
    history: History  # how an earlier assistant turn renders: its answer, the text after </think>, all, as sent
    thinks: bool
    stop: tuple[str, ...]
    reasoning_parser: str | None = None  # vLLM's --reasoning-parser for this format
    bos: bool = False  # a conversation starts with the BOS token, which the engine's tokenizer must add

    def render_history(self, content: str) -> str:
        """An earlier assistant turn's content as this format's official template shows it."""
        reasoning, answer = split_reasoning(content)
        if self.history == "answer":
            return answer
        if self.history == "after_think":
            return content.split("</think>")[-1] if "</think>" in content else content
        if self.history == "keep":
            return "<think>\n" + (reasoning or "").strip("\n") + "\n</think>\n\n" + answer
        return content


_QWEN3 = {
    "system": "<|im_start|>system\n",
    "eosys": "<|im_end|>\n",
    "default_system": "",
    "user": "<|im_start|>user\n",
    "eoh": "<|im_end|>\n<|im_start|>assistant\n",
    "think_opener": "",
    "nothink": "<think>\n\n</think>\n\n",
    "eoa": "<|im_end|>",
    "separator": "\n",
    "thinks": True,
    "stop": ("<|im_end|>",),
    "reasoning_parser": "qwen3",
}
_DEEPSEEK_R1 = {
    "system": "",
    "eosys": "",
    "default_system": "",
    "user": "<｜User｜>",
    "eoh": "<｜Assistant｜>",
    "think_opener": "<think>\n",
    "nothink": "",  # R1 has no switch: its generation prompt always opens the think block
    "eoa": "<｜end▁of▁sentence｜>",
    "separator": "",
    "history": "after_think",
    "thinks": True,
    "stop": ("<｜end▁of▁sentence｜>",),
    "reasoning_parser": "deepseek_r1",
    "bos": True,
}
PLUGIN_FORMATS = {
    "qwen3_think": {**_QWEN3, "history": "answer"},
    "qwen3_think_keep_history": {**_QWEN3, "history": "keep"},
    "r1_distill_qwen": _DEEPSEEK_R1,
    "deepseek_r1": _DEEPSEEK_R1,
}


class FormatError(ValueError):
    """A template whose slots cannot be written as plain strings."""


def _text(slots: list[Any], tokenizer: Any) -> str:
    out = []
    for slot in slots:
        if isinstance(slot, str):
            out.append(slot)
        elif isinstance(slot, dict):
            out.append(str(slot.get("token")))
        elif isinstance(slot, set):
            if "bos_token" in slot:
                continue  # the engine's tokenizer adds BOS
            out.append(tokenizer.eos_token)
    return "".join(out)


def _around(slots: list[Any], tokenizer: Any, what: str) -> tuple[str, str]:
    text = _text(slots, tokenizer)
    if text.count("{{content}}") != 1:
        raise FormatError(f"the {what} slot {slots!r} does not hold one {{{{content}}}}")
    before, after = text.split("{{content}}")
    return before, after


def chat_format(name: str, template: Any, tokenizer: Any) -> ChatFormat:
    """The format of registered template `name` (`template`: the set-up template object)."""
    if name in PLUGIN_FORMATS:
        return ChatFormat(template=name, **PLUGIN_FORMATS[name])
    prefix_slots = template.format_prefix.apply()
    prefix = _text(prefix_slots, tokenizer)
    if prefix:
        raise FormatError(f"template {name!r} starts with {prefix!r}, which Ollama / LMDeploy files cannot write")
    system, eosys = _around(template.format_system.apply(), tokenizer, "system")
    user, eoh = _around(template.format_user.apply(), tokenizer, "user")
    _, eoa = _around(template.format_assistant.apply(), tokenizer, "assistant")
    stop = tuple(dict.fromkeys([*template.stop_words, tokenizer.eos_token]))
    return ChatFormat(
        template=name,
        system=system,
        eosys=eosys,
        default_system=template.default_system or "",
        user=user,
        eoh=eoh,
        think_opener="",
        nothink="",
        eoa=eoa,
        separator="",
        history="verbatim",
        thinks=False,
        stop=tuple(s for s in stop if s),
        bos=any(isinstance(slot, set) and "bos_token" in slot for slot in prefix_slots),
    )
