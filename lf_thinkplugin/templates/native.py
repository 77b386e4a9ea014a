"""Training sequences rendered by the model's own chat template (`template: native`), for any family.

The template is read, never re-typed: `analyze` probes the tokenizer's `chat_template` once for
- where it reads reasoning: `reasoning_content`, `thinking` (gpt-oss), or inline in the content;
- its thinking switch: the first of `enable_thinking` / `thinking` that changes the generation prompt;
- the reasoning markup the rendering puts around reasoning (`<think>`, `<seed:think>`, gpt-oss's
  `<|channel|>analysis<|message|>` ... `<|end|>`), for think_loss and span logging;
- whether it can render reasoning in the last turn at all (DeepSeek-R1 / V3.1 cannot).

`encode` then renders the whole conversation once and trains an assistant turn (tool-call turns
too) only where the sequence holds, as token ids, exactly `apply_chat_template(turns before it,
add_generation_prompt=True)` followed by exactly what the template renders for that turn as the
last one (what the model generates there). Turns the template renders differently later (history
reasoning dropped) stay context without loss. Where the template cannot reproduce the last turn
as generated, the DeepSeek output rule applies when the family is DeepSeek's (the generation
prompt ends `<｜Assistant｜>`, optionally with the think opener): after the prompt the model writes
`<think>\\n{reasoning}\\n</think>\\n\\n{answer}` (R1, R1-0528) or `<think>{reasoning}</think>{answer}`
(V3.1), then the end of turn the template renders; otherwise the turn is left untrained and
reported. No LF import: encoders.py wraps this in LF's Template class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .reasoning import split_reasoning, strip_reasoning

SWITCHES = ("enable_thinking", "thinking")  # template kwargs that turn thinking on / off, by probing
_MARK_R, _MARK_A, _MARK_Q = "RSNMARK7", "ANSMARK7", "QSTMARK7"
_TAG = re.compile(r"<[^<>\s]+>")  # one markup tag: `<think>`, `<seed:think>`, `<|end|>`
_LEADING_TAGS = re.compile(r"^(?:\s*<[^<>\s]+>[A-Za-z_]*)+")  # `<|channel|>analysis<|message|>`
DEEPSEEK_ASSISTANT = "<｜Assistant｜>"


class NativeTemplateError(ValueError):
    """The chat template cannot be used for training; the message says why and what to do."""


@dataclass(frozen=True)
class Style:
    """What `analyze` learnt about one chat template."""

    reasoning_field: Optional[str]  # "reasoning_content" | "thinking" | None (inline in the content)
    switch: Optional[str]  # kwarg read as the thinking switch, None when it has none
    switch_default: Optional[bool]  # what the template does when the switch is not passed
    markup: Optional[tuple[str, str]]  # (open, close) around reasoning in the rendering
    renders_reasoning: bool  # False: the last turn's reasoning is never rendered (DeepSeek-R1 / V3.1)
    prompt_opens_think: bool  # the generation prompt (thinking on) already ends inside the think block
    output_rule: Optional[str] = None  # "deepseek" | "deepseek_compact" where renders_reasoning is False
    tools: bool = False  # the template renders a `tools` argument
    string_arguments: bool = False  # tool-call arguments as a JSON string (DeepSeek's templates concatenate them)

    def describe(self) -> dict[str, Any]:
        return {
            "reasoning": self.reasoning_field or "inline",
            "switch": self.switch or "none",
            "markup": list(self.markup) if self.markup else None,
            "last-turn reasoning": "rendered" if self.renders_reasoning else f"rule: {self.output_rule or 'none'}",
            "prompt opens think": self.prompt_opens_think,
            "tools": self.tools,
            "tool arguments": "JSON string" if self.string_arguments else "object",
        }


@dataclass
class Encoded:
    ids: list[int]
    spans: list[tuple[int, int]]  # trained [start, end) token ranges, in order
    untrained: list[tuple[int, str]] = field(default_factory=list)  # (LF message index, why)
    text: str = ""

    def pairs(self) -> list[tuple[list[int], list[int]]]:
        """LF's (source, target) pairs: context before each trained span, the span; a trailing context last."""
        out, at = [], 0
        for start, end in self.spans:
            out.append((self.ids[at:start], self.ids[start:end]))
            at = end
        if at < len(self.ids) or not out:
            out.append((self.ids[at:], []))
        return out


def render(tokenizer: Any, messages: list[dict], generation: bool, tools: Optional[list] = None,
           chat_template: Optional[str] = None, **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=generation, **kwargs)


def _try(fn: Any, *args: Any, **kwargs: Any) -> Optional[str]:
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001  (a template may raise on a probe shape: that shape is unsupported)
        return None


def _assistant(answer: str, reasoning: Optional[str], reasoning_field: Optional[str]) -> dict[str, Any]:
    if reasoning is None:
        return {"role": "assistant", "content": answer}
    if reasoning_field is None:
        return {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
    return {"role": "assistant", "content": answer, reasoning_field: reasoning}


def analyze(tokenizer: Any, chat_template: Optional[str] = None) -> Style:
    """Probe the chat template (a few renders of marker strings); raises NativeTemplateError when unusable."""
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise NativeTemplateError(
            f"the tokenizer at {getattr(tokenizer, 'name_or_path', '?')} has no chat template "
            "(`chat_template` in tokenizer_config.json or chat_template.jinja); pick an LF template by name instead")

    def r(messages: list[dict], generation: bool, **kw: Any) -> Optional[str]:
        return _try(render, tokenizer, messages, generation, chat_template=template, **kw)

    user = [{"role": "user", "content": _MARK_Q}]
    base = r(user, True)
    if base is None:
        raise NativeTemplateError("the chat template fails to render a single user message with a generation prompt")
    switch, default = None, None
    for name in SWITCHES:
        on, off = r(user, True, **{name: True}), r(user, True, **{name: False})
        if on is not None and off is not None and on != off:
            switch, default = name, base == on
            break
    on_kw = {switch: True} if switch else {}
    prompt = r(user, True, **on_kw) or base
    tool = [{"type": "function", "function": {"name": "probe_tool", "description": "d",
                                              "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]
    with_tools = r(user, True, tools=tool, **on_kw)
    call = {"type": "function", "function": {"name": "probe_tool", "arguments": {"x": 1}}}
    string_args = r(user + [{"role": "assistant", "content": "", "tool_calls": [call]}], False, **on_kw) is None and \
        r(user + [{"role": "assistant", "content": "", "tool_calls": [_string_args(call)]}], False, **on_kw) is not None
    field_, full, rule = None, None, None
    for candidate in ("reasoning_content", "thinking"):
        text = r(user + [_assistant(_MARK_A, _MARK_R, candidate)], False, **on_kw)
        if text is not None and _MARK_R in text and _MARK_A in text:
            field_, full = candidate, text
            break
    if full is None and not _block_in_tool_turn(r, user, call, string_args, on_kw):
        text = r(user + [_assistant(_MARK_A, _MARK_R, None)], False, **on_kw)  # inline `<think>` in the content
        if text is not None and _MARK_R in text and _MARK_A in text:
            full = text
    markup, opens = (_markup(prompt, full) if full is not None else (None, False))
    if full is None:
        # The last plain answer's reasoning is never rendered. Kimi-K2-Thinking renders it in tool-call
        # turns and an empty block for answers: the block is filled. DeepSeek: its output rule.
        for candidate in ("reasoning_content", "thinking"):
            shaped = _string_args(call) if string_args else call
            text = r(user + [{"role": "assistant", "content": _MARK_A, candidate: _MARK_R, "tool_calls": [shaped]}], False, **on_kw)
            if text is not None and _MARK_R in text:
                markup, opens = _markup(prompt, text.replace(_MARK_R, _MARK_R + "<|>" + _MARK_A, 1) if _MARK_A not in text else text)
                if markup:
                    field_, rule = candidate, "fill_block"
                break
        if rule is None:
            field_ = None  # inline: the template's own history rule reads the data's text; the rule writes the last turn
            if prompt.rstrip("\n").endswith("<think>") or prompt.endswith(DEEPSEEK_ASSISTANT):
                rule = "deepseek_compact" if prompt.endswith("<think>") else "deepseek"
                markup, opens = ("<think>", "</think>"), prompt.rstrip("\n").endswith("<think>")
    return Style(field_, switch, default, markup, full is not None, opens, rule,
                 bool(with_tools and "probe_tool" in with_tools), string_args)


def _block_in_tool_turn(r: Any, user: list, call: dict, string_args: bool, on_kw: dict) -> bool:
    """The template renders a reasoning field in tool-call turns (Kimi-K2-Thinking), not in plain answers."""
    shaped = _string_args(call) if string_args else call
    return any((r(user + [{"role": "assistant", "content": _MARK_A, c: _MARK_R, "tool_calls": [shaped]}], False, **on_kw)
                or "").count(_MARK_R) == 1 for c in ("reasoning_content", "thinking"))


def _string_args(call: dict) -> dict:
    function = dict(call["function"], arguments=json.dumps(call["function"]["arguments"], ensure_ascii=False))
    return dict(call, function=function)


def _markup(prompt: str, full: str) -> tuple[Optional[tuple[str, str]], bool]:
    """(open, close) tags around the reasoning marker, and whether the generation prompt holds the opener."""
    at = full.index(_MARK_R)
    answer_at = full.find(_MARK_A, at)
    between = full[at + len(_MARK_R):answer_at if answer_at >= 0 else None]
    close = _TAG.search(between)
    if close is None:
        return None, False
    common = len(prompt) if full.startswith(prompt) else 0
    generated = full[common:at]
    lead = _LEADING_TAGS.match(generated)
    if lead and lead.group(0).strip():
        return (lead.group(0).strip(), close.group(0)), False
    before = _TAG.findall(prompt)  # the opener sits at the end of the generation prompt (`<think>\n`)
    if before and prompt.rstrip().endswith(before[-1]):
        return (before[-1], close.group(0)), True
    return None, False


# ---------------------------------------------------------------------------------------------------
# LF messages -> the template's messages

def _tools(tools: Any) -> Optional[list]:
    if not tools:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as err:
            raise NativeTemplateError(f"the `tools` column is not JSON: {err}") from None
    if isinstance(tools, dict):
        tools = [tools]
    return [t if isinstance(t, dict) and t.get("type") == "function" else {"type": "function", "function": t} for t in tools]


def _tool_calls(content: str, string_arguments: bool = False) -> list[dict]:
    try:
        calls = json.loads(content)
    except json.JSONDecodeError as err:
        raise NativeTemplateError(f"a `function_call` message is not JSON ({err}): {content[:80]!r}") from None
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for call in calls:
        if not isinstance(call, dict) or "name" not in call:
            raise NativeTemplateError(f"a `function_call` needs {{\"name\": ..., \"arguments\": ...}}: {content[:80]!r}")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                pass  # a template renders a string argument as given
        call = {"type": "function", "function": {"name": call["name"], "arguments": arguments}}
        out.append(_string_args(call) if string_arguments and not isinstance(arguments, str) else call)
    return out


def has_reasoning(content: str) -> bool:
    return "</think>" in content or "<think>" in content


def to_messages(lf_messages: Sequence[dict], system: Optional[str], style: Style, thinking: bool) -> list[dict]:
    """The template's messages, one per LF message (after an optional system message)."""
    out: list[dict] = [{"role": "system", "content": system}] if system else []
    calls_made, last_call = 0, None
    for message in lf_messages:
        role, content = message["role"], message["content"]
        if role == "user":
            out.append({"role": "user", "content": content})
        elif role == "observation":
            out.append({"role": "tool", "content": content, **({"tool_call_id": last_call} if last_call else {})})
        elif role in ("assistant", "function"):
            reasoning, rest = split_reasoning(content)
            if not thinking:
                reasoning = None
            if role == "assistant":
                if style.reasoning_field is None:  # inline: the data's own text, reasoning removed when off
                    text = content if thinking else strip_reasoning(content)
                    if style.prompt_opens_think and style.switch is None and reasoning is None and style.renders_reasoning:
                        text = "<think>\n\n</think>\n\n" + text.lstrip("\n")  # the prompt opened a block: close it (QwQ)
                    out.append({"role": "assistant", "content": text})
                else:
                    out.append(_assistant(rest, reasoning, style.reasoning_field) if reasoning is not None
                               else {"role": "assistant", "content": rest})
            else:
                calls = _tool_calls(rest.strip(), style.string_arguments)
                for c in calls:  # ids in Kimi-K2's form (`functions.NAME:INDEX`); templates without ids ignore them
                    c["id"] = last_call = f"functions.{c['function']['name']}:{calls_made}"
                    calls_made += 1
                call: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": calls}
                if reasoning is not None:
                    if style.reasoning_field is None:
                        call["content"] = f"<think>\n{reasoning}\n</think>\n\n"
                    else:
                        call[style.reasoning_field] = reasoning
                out.append(call)
        else:
            raise NativeTemplateError(f"unknown role {role!r} (LF roles: user, assistant, function, observation)")
    return out


# ---------------------------------------------------------------------------------------------------
# encoding

class NativeEncoder:
    """Encodes LF conversations with one tokenizer's chat template (analysis done once)."""

    def __init__(self, tokenizer: Any, chat_template: Optional[str] = None, stop_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template or tokenizer.chat_template
        self.style = analyze(tokenizer, self.chat_template)
        eos = tokenizer.eos_token_id
        self.stop_ids = set(stop_ids) | ({eos} if eos is not None else set())
        self._stop_texts = [t for t in tokenizer.convert_ids_to_tokens(sorted(self.stop_ids)) if t]

    def thinking(self, lf_messages: Sequence[dict], enable_thinking: Optional[bool]) -> bool:
        if enable_thinking is None:  # LF's null: per sample, from the data
            return any(m["role"] in ("assistant", "function") and has_reasoning(m["content"]) for m in lf_messages)
        return bool(enable_thinking)

    def kwargs(self, thinking: bool) -> dict[str, Any]:
        return {self.style.switch: thinking} if self.style.switch else {}

    def _render(self, messages: list[dict], generation: bool, tools: Optional[list], kw: dict) -> str:
        return render(self.tokenizer, messages, generation, tools, self.chat_template, **kw)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def rule_output(self, prompt: str, probe_full: str, answer: str, reasoning: Optional[str]) -> Optional[str]:
        """DeepSeek's output after `prompt`: reasoning block, answer, then the end of turn the template renders."""
        common = 0
        while common < min(len(prompt), len(probe_full)) and prompt[common] == probe_full[common]:
            common += 1
        if prompt.rfind("<", 0, common) > prompt.rfind(">", 0, common):
            common = prompt.rfind("<", 0, common)  # never split a tag (`<think>` vs `</think>` share `<`)
        tail, rendered = prompt[common:], probe_full[common:]
        if not rendered.startswith("</think>") and answer and answer not in rendered:
            return None
        if self.style.output_rule != "fill_block" and not probe_full.startswith(prompt[:common]):
            return None
        end = rendered[rendered.rfind(answer) + len(answer):] if answer else rendered.split("</think>")[-1]
        r = (reasoning or "").strip("\n")
        if self.style.output_rule == "fill_block":  # the template's own empty block, reasoning put inside
            open_, close = self.style.markup
            block = re.match(re.escape(open_) + r"\s*" + re.escape(close), prompt[len(prompt) - len(tail):] + rendered)
            if block is None or not r:
                return None
            return (open_ + r + close + rendered[block.end() - len(tail):])[len(tail):]
        if self.style.output_rule == "deepseek_compact":
            body = f"<think>{r}</think>{answer}"
        else:
            body = f"<think>\n{r}\n</think>\n\n{answer}"
        if not body.startswith(tail):
            return None
        return body[len(tail):] + end

    def encode(self, lf_messages: Sequence[dict], system: Optional[str] = None, tools: Any = None,
               enable_thinking: Optional[bool] = True) -> Encoded:
        thinking = self.thinking(lf_messages, enable_thinking)
        kw = self.kwargs(thinking)
        tool_list = _tools(tools)
        messages = to_messages(lf_messages, system, self.style, thinking)
        offset = len(messages) - len(lf_messages)  # the system message
        responses = [i for i, m in enumerate(lf_messages) if m["role"] in ("assistant", "function")]
        untrained: list[tuple[int, str]] = []
        if not responses:
            text = self._render(messages, False, tool_list, kw)
            return Encoded(self._ids(text), [], untrained, text)
        last = responses[-1]
        full = self._render(messages, False, tool_list, kw)
        last_prompt = self._render(messages[: offset + last], True, tool_list, kw)
        sequence, rule_span = full, False
        if not full.startswith(last_prompt):  # gpt-oss: the last turn drops earlier analysis the prompt still shows
            tail = self._last_turn(last_prompt, full, self._render(messages[: offset + last], False, tool_list, kw))
            if tail is not None and not self._why_not(last_prompt + tail, last_prompt, last_prompt + tail,
                                                      lf_messages[last], thinking):
                sequence = full = last_prompt + tail
        if self._why_not(full, last_prompt, full, lf_messages[last], thinking):
            rendered = self._rule(messages, offset, last, lf_messages[last], thinking, last_prompt, tool_list, kw)
            if rendered is not None:
                sequence, rule_span = last_prompt + rendered, True
        # A trained turn: the ids before it are exactly ids(its generation prompt), its target exactly
        # ids(what the template renders after that prompt, tokenized on its own as the model generates it).
        # Later turns win: the last turn fixes the sequence, an earlier one trains where it fits inside.
        spans: list[tuple[int, int]] = []
        anchor: list[int]
        if rule_span or not self._why_not(sequence, last_prompt, sequence, lf_messages[last], thinking):
            prompt_ids = self._ids(last_prompt)
            ids = prompt_ids + self._ids(sequence[len(last_prompt):])
            spans.append((len(prompt_ids), len(ids)))
            anchor = prompt_ids
        else:
            untrained.append((last, self._why_not(sequence, last_prompt, sequence, lf_messages[last], thinking) or ""))
            ids = anchor = self._ids(sequence)
        for k in reversed(responses[:-1]):
            reasoning = split_reasoning(lf_messages[k]["content"])[0] if thinking else None
            if reasoning and reasoning.strip() and reasoning.strip() not in sequence:  # cheap: no render needed
                untrained.append((k, "the template renders this turn differently in later turns' context (history rule)"))
                continue
            prompt = self._render(messages[: offset + k], True, tool_list, kw)
            end_text = self._render(messages[: offset + k + 1], False, tool_list, kw)
            why = self._why_not(sequence, prompt, end_text, lf_messages[k], thinking)
            if why:
                untrained.append((k, why))
                continue
            prompt_ids = self._ids(prompt)
            target = self._ids(end_text[len(prompt):] + self._next_stop(sequence[len(end_text):]))
            if not target or anchor[: len(prompt_ids) + len(target)] != prompt_ids + target:
                untrained.append((k, "in the later turns' context this turn's ids differ from its ids as generated"))
                continue
            spans.insert(0, (len(prompt_ids), len(prompt_ids) + len(target)))
            anchor = prompt_ids
        untrained.sort()
        if spans and spans[-1][1] == len(ids) and not self.stop_ids.intersection(ids[spans[-1][0]:]) \
                and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)  # the template leaves the last turn open (GLM): teach the stop
            spans[-1] = (spans[-1][0], len(ids))
        return Encoded(ids, spans, untrained, sequence)

    @staticmethod
    def _last_turn(prompt: str, full: str, context: str) -> Optional[str]:
        """The last turn's text in `full` where the history before it renders differently from `prompt`:
        after the last message before the turn (its rendering's tail) and the generation prompt's own text."""
        if not prompt.startswith(context) or len(context) < 16:
            return None
        generation, anchor = prompt[len(context):], context[-64:]
        at = full.rfind(anchor)
        if at < 0 or not full.startswith(generation, at + len(anchor)):
            return None
        return full[at + len(anchor) + len(generation):]

    def _next_stop(self, following: str) -> str:
        """A stop token the template writes at the start of the next turn (GLM's `<|user|>`): generated by this turn."""
        for text in self._stop_texts:
            if following.startswith(text):
                return text
        return ""

    def _why_not(self, sequence: str, prompt: str, end_text: str, message: dict, thinking: bool) -> Optional[str]:
        if not end_text.startswith(prompt):
            return "the template does not render this turn after its own generation prompt"
        if not sequence.startswith(end_text):
            return "the template renders this turn differently in later turns' context (history rule)"
        generated = end_text[len(prompt):]
        reasoning, rest = split_reasoning(message["content"])
        if thinking and reasoning and reasoning.strip() and reasoning.strip() not in generated:
            return "the template drops this turn's reasoning"
        if message["role"] == "function":
            names = [c["function"]["name"] for c in _tool_calls(rest.strip())]
            if not all(name in generated for name in names):
                return "the template does not render tool calls in assistant turns"
        elif rest.strip() and rest.strip() not in generated:
            return "the template does not render this turn's answer as written"
        return None

    def _rule(self, messages: list[dict], offset: int, last: int, message: dict, thinking: bool,
              prompt: str, tool_list: Optional[list], kw: dict) -> Optional[str]:
        if self.style.output_rule is None or message["role"] != "assistant":
            return None
        reasoning, answer = split_reasoning(message["content"])
        plain = messages[: offset + last] + [{"role": "assistant", "content": answer}]
        probe_full = self._render(plain, False, tool_list, kw)
        if self.style.output_rule == "fill_block" and not probe_full.startswith(prompt):
            tail = self._last_turn(prompt, probe_full, self._render(messages[: offset + last], False, tool_list, kw))
            probe_full = probe_full if tail is None else prompt + tail
        return self.rule_output(prompt, probe_full, answer, reasoning if thinking else None)
