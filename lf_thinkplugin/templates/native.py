"""Training sequences rendered by the model's own chat template (`template: native`), for any family.

The template is read, never re-typed: `format.learn` probes the tokenizer's `chat_template` once for
its reasoning format (where it reads reasoning, the markup, the switch, how the last turn is generated).
`encode` then renders the whole conversation once and trains an assistant turn (tool-call turns
too) only where the sequence holds, as token ids, exactly `apply_chat_template(turns before it,
add_generation_prompt=True)` followed by exactly what the template renders for that turn as the
last one (what the model generates there). Turns the template renders differently later (history
reasoning dropped) stay context without loss. Where the template cannot reproduce the last turn as
generated (reasoning never rendered, an answer without the block the prompt opened, reasoning only in
tool-call turns), the generated text is written from the format's markup and layout after the prompt,
then the end of turn the template renders; otherwise the turn is left untrained and reported.
No LF import: encoders.py wraps this in LF's Template class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .format import NativeTemplateError, ReasoningFormat, _string_args, learn, render  # noqa: F401  (re-exported)
from .reasoning import split_reasoning


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
    """The data's own markup (LF datasets write reasoning inline)."""
    return split_reasoning(content)[0] is not None or "<think>" in content


def _with_flag(text: str, flag: str) -> str:
    return text if not flag or flag in text else (f"{text} {flag}" if text else flag)


def to_messages(lf_messages: Sequence[dict], system: Optional[str], fmt: ReasoningFormat, thinking: bool) -> list[dict]:
    """The template's messages, one per LF message (after an optional system message).

    Reasoning goes where the format reads it; with thinking on and a generation prompt that opens the
    block, an answer without reasoning gets the empty block (the model's own form for it); with a text
    switch the flag for the sample's mode is written into the message the template reads it from."""
    switch = fmt.switch if fmt.switch is not None and fmt.switch.kind == "flag" else None
    flag = (switch.on if thinking else switch.off) if switch else ""
    if switch and switch.name == "system" and flag:
        system = _with_flag(system or "", flag)
    out: list[dict] = [{"role": "system", "content": system}] if system else []
    users = [i for i, m in enumerate(lf_messages) if m["role"] == "user"]
    calls_made, last_call = 0, None
    for index, message in enumerate(lf_messages):
        role, content = message["role"], message["content"]
        if role == "user":
            text = _with_flag(content, flag) if switch and switch.name == "user" and users and index == users[-1] else content
            out.append({"role": "user", "content": text})
        elif role == "observation":
            out.append({"role": "tool", "content": content, **({"tool_call_id": last_call} if last_call else {})})
        elif role in ("assistant", "function"):
            reasoning, rest = fmt.read(content)
            if not thinking:
                reasoning = None
            if reasoning is None and role == "assistant" and fmt.prompt_opens and (thinking or fmt.switch is None):
                reasoning = ""  # the prompt opened the block: the answer closes it empty
            if role == "assistant":
                out.append(fmt.message(rest, reasoning))
            else:
                calls = _tool_calls(rest.strip(), fmt.string_arguments)
                for c in calls:  # ids in Kimi-K2's form (`functions.NAME:INDEX`); templates without ids ignore them
                    c["id"] = last_call = f"functions.{c['function']['name']}:{calls_made}"
                    calls_made += 1
                call: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": calls}
                if reasoning is not None:
                    carrier = fmt.message("", reasoning)
                    call.update({k: v for k, v in carrier.items() if k != "role"})
                out.append(call)
        else:
            raise NativeTemplateError(f"unknown role {role!r} (LF roles: user, assistant, function, observation)")
    return out


# ---------------------------------------------------------------------------------------------------
# encoding

class NativeEncoder:
    """Encodes LF conversations with one tokenizer's chat template (analysis done once)."""

    def __init__(self, tokenizer: Any, chat_template: Optional[str] = None, stop_ids: Sequence[int] = (),
                 fmt: Optional[ReasoningFormat] = None) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template or tokenizer.chat_template
        self.format = fmt or learn(tokenizer, self.chat_template)
        eos = tokenizer.eos_token_id
        self.stop_ids = set(stop_ids) | ({eos} if eos is not None else set())
        self._stop_texts = [t for t in tokenizer.convert_ids_to_tokens(sorted(self.stop_ids)) if t]

    def thinking(self, lf_messages: Sequence[dict], enable_thinking: Optional[bool]) -> bool:
        if enable_thinking is None:  # LF's null: per sample, from the data
            return any(m["role"] in ("assistant", "function") and (has_reasoning(m["content"])
                       or self.format.read(m["content"])[0] is not None) for m in lf_messages)
        return bool(enable_thinking)

    def kwargs(self, thinking: bool) -> dict[str, Any]:
        return self.format.switch.kwargs(thinking) if self.format.switch else {}

    def _render(self, messages: list[dict], generation: bool, tools: Optional[list], kw: dict) -> str:
        return render(self.tokenizer, messages, generation, tools, self.chat_template, **kw)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def rule_output(self, prompt: str, probe_full: str, reasoning: str) -> Optional[str]:
        """What the model writes after `prompt`, from the format: its reasoning block in the family's markup and
        layout (empty where it has none but the prompt opened one), then the turn as the template renders it
        without reasoning (`probe_full`), end of turn included. The part the prompt already holds is left out."""
        fmt = self.format
        common = 0
        while common < min(len(prompt), len(probe_full)) and prompt[common] == probe_full[common]:
            common += 1
        if prompt.rfind("<", 0, common) > prompt.rfind(">", 0, common):
            common = prompt.rfind("<", 0, common)  # never split a tag (`<think>` vs `</think>` share `<`)
        tail, rendered = prompt[common:], probe_full[common:]
        r = reasoning.strip("\n")
        opener, closer = fmt.opener or "", fmt.closer or ""
        if fmt.last_turn == "fill_block" and not tail:  # the template's own empty block, reasoning put inside
            block = re.search(re.escape(opener) + r"\s*" + re.escape(closer), rendered)
            if block is None or not r:
                return None
            return rendered[:block.start()] + opener + r + closer + rendered[block.end():]
        if fmt.last_turn == "tool_block" and fmt.tool_block and not tail and r:
            return fmt.tool_block[0] + r + fmt.tool_block[1] + rendered
        own_empty = re.match(f"(?:{re.escape(opener)}\\s*)?{re.escape(closer)}\\s*", rendered)  # GLM: `</think>A`
        body = fmt.block(r) + rendered[own_empty.end() if own_empty else 0:]
        if not body.startswith(tail):
            return None
        return body[len(tail):]

    def encode(self, lf_messages: Sequence[dict], system: Optional[str] = None, tools: Any = None,
               enable_thinking: Optional[bool] = True) -> Encoded:
        thinking = self.thinking(lf_messages, enable_thinking)
        kw = self.kwargs(thinking)
        tool_list = _tools(tools)
        messages = to_messages(lf_messages, system, self.format, thinking)
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
        reasoning, rest = self.format.read(message["content"])
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
        fmt = self.format
        if fmt.markup is None:
            return None
        opens = prompt.endswith(fmt.opener) or prompt.endswith(fmt.opener + "\n")
        reasoning = self.format.read(message["content"])[0] if thinking else None
        if not opens and (fmt.last_turn in ("rendered", "none") or not thinking
                          or (fmt.last_turn != "rule" and not (reasoning or "").strip())):
            return None  # nothing the template's own rendering lacks, or no rule for it
        plain = dict(messages[offset + last])  # the turn without its reasoning, as the template renders it
        if fmt.source == "field":
            plain.pop(fmt.key, None)
        elif fmt.source == "chunks":
            plain["content"] = "".join(c.get("text", "") for c in plain["content"] if c.get("type") == "text") \
                if isinstance(plain["content"], list) else plain["content"]
        else:
            plain["content"] = self.format.read(message["content"])[1] if message["role"] == "assistant" else ""
        probe_full = self._render(messages[: offset + last] + [plain], False, tool_list, kw)
        if not probe_full.startswith(prompt):
            tail = self._last_turn(prompt, probe_full, self._render(messages[: offset + last], False, tool_list, kw))
            probe_full = probe_full if tail is None else prompt + tail
        return self.rule_output(prompt, probe_full, reasoning or "")
