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
import types
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .format import DATA_MARKUP, NativeTemplateError, ReasoningFormat, _string_args, learn, render  # noqa: F401  (re-exported)
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


def generation_stop_ids(tokenizer: Any) -> list[int]:
    """generation_config.json's eos ids beside the tokenizer (GLM: `<|user|>`, gpt-oss: `<|return|>`, `<|call|>`)."""
    from pathlib import Path

    path = Path(str(getattr(tokenizer, "name_or_path", ""))) / "generation_config.json"
    try:
        eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id") if path.is_file() else None
    except (OSError, ValueError):
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def has_reasoning(content: str) -> bool:
    """The data's own markup (LF datasets write reasoning inline)."""
    return split_reasoning(content)[0] is not None or DATA_MARKUP[0] in content


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
               enable_thinking: Optional[bool] = True, settings: Optional[dict[str, Any]] = None) -> Encoded:
        """The conversation's ids and trained spans (the module docstring says which turns train and how).

        Cost: the renders of the whole conversation and of the last turn's prompt, one tokenization of the
        text before the last trained turn (the rest sliced from it, see `_Cuts`), and for each earlier turn
        that may train, the two renders of its own check; an earlier turn whose reasoning is absent from the
        text it would have to sit in needs none. Linear in the turns where few earlier turns train (history
        reasoning dropped: only the turns after the last user message); a render per trained turn otherwise.
        `settings`: the template's other keyword arguments (templates/settings.py, checked there), the switch's last.
        """
        thinking = self.thinking(lf_messages, enable_thinking)
        kw = {**settings, **self.kwargs(thinking)} if settings else self.kwargs(thinking)
        tool_list = _tools(tools)
        messages = to_messages(lf_messages, system, self.format, thinking)
        offset = len(messages) - len(lf_messages)  # the system message
        responses = [i for i, m in enumerate(lf_messages) if m["role"] in ("assistant", "function")]
        untrained: list[tuple[int, str]] = []
        linear = _linear(self)
        render = linear.renderer(self, tool_list, kw)  # exactly self._render's text (see _Linear)
        if not responses:
            text = render(messages, False)
            return Encoded(linear.ids(self, text), [], untrained, text)
        last = responses[-1]
        full = render(messages, False)
        last_prompt = render(messages[: offset + last], True)
        sequence, rule_span = full, False
        if not full.startswith(last_prompt):  # gpt-oss: the last turn drops earlier analysis the prompt still shows
            tail = self._last_turn(last_prompt, full, render(messages[: offset + last], False))
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
        # Cost: the anchor text (the last trained prompt, else the sequence) is tokenized once; an earlier
        # turn's prompt and target ids are slices of it where the text is cut at an added token (_Cuts: the
        # same ids as tokenizing the piece alone), else tokenized on their own as before; a turn whose
        # reasoning the anchor text lacks is left untrained without rendering its prompt (see below).
        spans: list[tuple[int, int]] = []
        why_last = None if rule_span else self._why_not(sequence, last_prompt, sequence, lf_messages[last], thinking)
        anchor_text = sequence if why_last else last_prompt
        cuts = linear.cuts(self.tokenizer, anchor_text)
        anchor: list[int] = cuts.ids if cuts is not None else linear.ids(self, anchor_text)
        anchor_cut: Optional[int] = len(anchor) if cuts is not None else None  # anchor == cuts.ids[:anchor_cut]
        limit = len(anchor_text)  # the anchor's text: sequence[:limit]
        if why_last:
            untrained.append((last, why_last))
            ids = anchor
        else:
            ids = anchor + linear.ids(self, sequence[len(last_prompt):])
            spans.append((len(anchor), len(ids)))
        # Where a token's bytes are its text (the byte-level BPE tokenizers _Cuts admits, NFC text), a trained
        # earlier turn's prompt + target ids being a prefix of the anchor ids make its prompt + turn text a
        # prefix of the anchor's text: a turn whose reasoning (which _why_not requires in its turn's text) is
        # not in the anchor's text cannot train. Elsewhere only the whole sequence is searched, as before.
        exact = cuts is not None and cuts.exact and unicodedata.is_normalized("NFC", sequence)
        earlier: list[tuple[int, int]] = []
        for k in reversed(responses[:-1]):
            reasoning = self.format.read(lf_messages[k]["content"])[0] if thinking else None  # as _why_not reads it
            r = reasoning.strip() if reasoning else ""
            if r and (r not in sequence or (exact and sequence.find(r, 0, limit) < 0)):  # cheap: no render needed
                untrained.append((k, "the template renders this turn differently in later turns' context (history rule)"))
                continue
            prompt = render(messages[: offset + k], True)
            end_text = render(messages[: offset + k + 1], False)
            why = self._why_not(sequence, prompt, end_text, lf_messages[k], thinking)
            if why:
                untrained.append((k, why))
                continue
            start = len(prompt)
            end = len(end_text) + len(self._stop_at(sequence, len(end_text)))  # target text: sequence[start:end]
            at = cuts.at(start) if cuts is not None and end <= len(anchor_text) else None
            to = cuts.at(end) if at is not None else None
            if at is not None and to is not None:  # ids(prompt) == cuts.ids[:at], ids(target text) == cuts.ids[at:to]
                fits = to > at and (to <= anchor_cut if anchor_cut is not None else anchor[:to] == cuts.ids[:to])
                prompt_len, target_len = at, to - at
            else:
                prompt_ids = linear.ids(self, prompt)
                target = linear.ids(self, sequence[start:end])
                size = len(prompt_ids) + len(target)  # the anchor is anchor[:anchor_cut] where that is set
                fits = bool(target) and size <= (len(anchor) if anchor_cut is None else anchor_cut) \
                    and anchor[:size] == prompt_ids + target
                prompt_len, target_len, at = len(prompt_ids), len(target), None
            if not fits:
                untrained.append((k, "in the later turns' context this turn's ids differ from its ids as generated"))
                continue
            earlier.append((prompt_len, prompt_len + target_len))
            if at is not None:
                anchor_cut = at
            else:
                anchor, anchor_cut = prompt_ids, None
            limit = start
        spans[:0] = reversed(earlier)
        untrained.sort()
        if spans and spans[-1][1] == len(ids) and not self.stop_ids.intersection(ids[spans[-1][0]:]) \
                and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)  # the template leaves the last turn open (GLM): teach the stop
            spans[-1] = (spans[-1][0], len(ids))
        return Encoded(ids, spans, untrained, sequence)

    def _stop_at(self, sequence: str, at: int) -> str:
        """`_next_stop(sequence[at:])` without copying the rest of the sequence."""
        for text in self._stop_texts:
            if sequence.startswith(text, at):
                return text
        return ""

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


# ---------------------------------------------------------------------------------------------------
# linear cost: what `encode` reuses across conversations (the same texts and ids, found with less work)

_DICT_ATTRIBUTES = frozenset(dir(dict))
_APPLY_PARAMETERS = frozenset({"conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
                               "continue_final_message", "tokenize", "padding", "truncation", "max_length",
                               "return_tensors", "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs"})
_MISSING = object()
_PROBE_TEXT = "Hello wörld,\n\n  the answer is 42.\tDone! 你好。 x = [1, 2]\n"


class _Cuts:
    """One text tokenized once, with the token offsets, and where it may be cut.

    `at(p)` is the token index j with ids(text[:p]) == ids[:j], and for two such points p <= e,
    ids(text[p:e]) == ids[at(p):at(e)]; None where that is not known. Known at the ends of the text and at
    the start or end of an added token the tokenizer split out (`points`: not normalized, no strip flags, no
    single-word tokens, special tokens split out): the tokenizer splits added tokens out of the raw text
    first (leftmost-longest, so no match crosses such a point and the text on either side holds the same
    matches alone) and then normalizes, pre-tokenizes and tokenizes each piece between them on its own;
    `_cut_points` admits only tokenizers whose per-piece steps do not look at where the piece sits
    (byte-level BPE with split patterns, NFC or no normalizer). `exact`: a token's bytes are its text
    (byte-level, and the normalizer is NFC or none: the identity on NFC text).
    """

    __slots__ = ("exact", "ids", "offsets", "points", "text")

    def __init__(self, tokenizer: Any, points: dict[int, str], text: str) -> None:
        backend = _backend(tokenizer)
        if backend is not None:
            encoded = backend.encode(text, add_special_tokens=False)
            self.ids, offsets = encoded.ids, encoded.offsets
        else:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            self.ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
        self.text, self.points, self.exact = text, points, True
        self.offsets = offsets if not offsets or type(offsets[0]) is tuple else [tuple(o) for o in offsets]

    def _point(self, i: int) -> bool:
        content = self.points.get(self.ids[i])
        if content is None:
            return False
        start, end = self.offsets[i]
        return end - start == len(content) and self.text.startswith(content, start)

    def at(self, p: int) -> Optional[int]:
        if p == 0:
            return 0
        if p == len(self.text):
            return len(self.ids)
        if not 0 < p < len(self.text):
            return None
        i = bisect_left(self.offsets, (p,))  # the first token starting at or after p
        if i < len(self.ids) and self.offsets[i][0] == p and self._point(i):
            return i
        if i > 0 and self.offsets[i - 1][1] == p and self._point(i - 1):
            return i
        return None


def _backend(tokenizer: Any) -> Optional[Any]:
    """The Rust tokenizer where calling it gives what `tokenizer.encode(text, add_special_tokens=False)` gives
    (its `_encode_plus` sets no truncation, no padding and the special-token splitting, then calls it and
    keeps `.ids`; `_cut_points` checked that it is that method): None where its state differs from that."""
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None or backend.padding is not None \
            or backend.encode_special_tokens != bool(tokenizer.split_special_tokens):
        return None
    return backend


def _cut_points(tokenizer: Any) -> Optional[dict[int, str]]:
    """The added tokens `_Cuts` may cut at (id -> text), or None where the tokenizer is not one `_Cuts` knows."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:
        return None
    kind = type(tokenizer)
    if not isinstance(tokenizer, TokenizersBackend) or getattr(tokenizer, "split_special_tokens", True) \
            or kind.encode is not PreTrainedTokenizerBase.encode or kind.__call__ is not PreTrainedTokenizerBase.__call__ \
            or kind._encode_plus is not TokenizersBackend._encode_plus:
        return None  # `encode` and `__call__` may not reach the same backend call unchanged
    try:  # the pipeline's parts, each read alone (the whole tokenizer's JSON holds the vocabulary: slow)
        backend = tokenizer.backend_tokenizer
        normalizer = json.loads(backend.normalizer.__getstate__()) if backend.normalizer is not None else None
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else None
        model = type(backend.model).__name__
        added = list(backend.get_added_tokens_decoder().items())
    except Exception:  # noqa: BLE001
        return None
    normalizers = normalizer.get("normalizers", []) if normalizer and normalizer.get("type") == "Sequence" else [normalizer]
    if any(n is not None and n.get("type") != "NFC" for n in normalizers):
        return None
    parts = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
    byte_level = False
    for part in parts:
        kind_ = (part or {}).get("type")
        if kind_ == "ByteLevel" and not part.get("add_prefix_space"):
            byte_level = True
        elif not (kind_ == "Digits" or (kind_ == "Split" and part.get("behavior") != "Removed")):
            return None
    if not byte_level or model != "BPE" or not all(backend.token_to_id(c) is not None for c in _byte_symbols()):
        return None  # (every byte has its token: nothing is dropped or replaced by an unknown token)
    if any(t.lstrip or t.rstrip or t.single_word for _, t in added):
        return None
    points = {i: t.content for i, t in added if not t.normalized and t.content and t.content == t.content.strip()}
    if not points or not _cuts_hold(tokenizer, points):
        return None
    return points


def _byte_symbols() -> list[str]:
    """The 256 characters byte-level BPE writes bytes as (GPT-2's table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def _cuts_hold(tokenizer: Any, points: dict[int, str]) -> bool:
    """A check of `_Cuts` on one text with added tokens in it (the reasoning above is what it rests on)."""
    tags = sorted(points.values())[:3]
    text = "".join(f"{tag}{_PROBE_TEXT[: 7 * (i + 2)]}\n" for i, tag in enumerate(tags * 2)) + tags[0]
    try:
        encode = lambda piece: list(tokenizer.encode(piece, add_special_tokens=False))
        cuts = _Cuts(tokenizer, points, text)
        if cuts.ids != encode(text) or _ids(tokenizer, text) != encode(text):
            return False
        at = [(p, cuts.at(p)) for p in range(len(text) + 1)]
        at = [(p, j) for p, j in at if j is not None]
        if len(at) < 4:
            return False
        return all(encode(text[p:e]) == cuts.ids[j:k] for p, j in at for e, k in at if p <= e)
    except Exception:  # noqa: BLE001
        return False


def _fast_template(tokenizer: Any, chat_template: str, encoder: NativeEncoder) -> Optional[Any]:
    """The chat template compiled once more in an overlay of the environment transformers renders it in,
    whose attribute lookup and call skip the sandbox's checks only where the sandbox returns the value
    anyway: a key of a plain dict that is not a dict attribute (what the sandbox's getattr falls back to),
    a public attribute of a str, loop or namespace that is not `format` / `format_map` (safe and not
    wrapped), a call of a builtin method other than those (safely callable). Everything else goes through
    the sandbox's own code. Same text; a few times faster (most of a render is those checks). Checked
    against `apply_chat_template` on a few conversations; None where jinja2 or transformers differ from
    what this reads."""
    try:
        import jinja2
        from jinja2.runtime import LoopContext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from jinja2.utils import Namespace
        from transformers.utils.chat_template_utils import _compile_jinja_template

        compiled = _compile_jinja_template(chat_template)
    except Exception:  # noqa: BLE001
        return None
    env = compiled.environment
    if type(env) is not ImmutableSandboxedEnvironment or not jinja2.__version__.startswith("3.1."):
        return None
    fast = env.overlay()
    sandbox_getattr = ImmutableSandboxedEnvironment.getattr.__get__(fast)
    sandbox_call = ImmutableSandboxedEnvironment.call.__get__(fast)
    plain = (str, LoopContext, Namespace)
    methods = (types.MethodType, types.BuiltinMethodType)
    builtin = types.BuiltinMethodType
    formats = ("format", "format_map")

    def getattr_(obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict:
            if attribute not in _DICT_ATTRIBUTES:
                value = obj.get(attribute, _MISSING)
                return fast.undefined(obj=obj, name=attribute) if value is _MISSING else value
        elif kind in plain and attribute[:1] != "_":
            try:
                value = getattr(obj, attribute)
            except AttributeError:
                return sandbox_getattr(obj, attribute)
            if not (isinstance(value, methods) and value.__name__ in formats):
                return value
        return sandbox_getattr(obj, attribute)

    def call_(context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if type(obj) is builtin and obj.__name__ not in formats:
            return context.call(obj, *args, **kwargs)
        return sandbox_call(context, obj, *args, **kwargs)

    fast.getattr = getattr_
    fast.call = call_
    try:
        template = fast.from_string(chat_template)
    except Exception:  # noqa: BLE001
        return None
    special, compared = tokenizer.special_tokens_map, 0
    for thinking in (True, False):  # the check: the same text as apply_chat_template on probe conversations
        kw = encoder.kwargs(thinking)
        lf = [{"role": "user", "content": "What is 2 + 2?"},
              {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4." if thinking else "4."},
              {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6."}]
        try:
            messages = to_messages(lf, "Be brief.", encoder.format, thinking)
        except Exception:  # noqa: BLE001
            return None
        for n in range(1, len(messages) + 1):
            for generation in (True, False):
                try:
                    want = encoder._render(messages[:n], generation, None, kw)
                except Exception:  # noqa: BLE001, S112  (a shape the template refuses: nothing to compare)
                    continue
                try:
                    got = template.render(messages=messages[:n], tools=None, documents=None,
                                          add_generation_prompt=generation, **{**special, **kw})
                except Exception:  # noqa: BLE001
                    return None
                if got != want:
                    return None
                compared += 1
    return template if compared else None


class _Linear:
    """Per encoder, built on first use: the fast renderers (by template text) and the tokenizer's cut points."""

    def __init__(self, encoder: NativeEncoder) -> None:
        self.key: tuple = ()
        self.points = _cut_points(encoder.tokenizer)
        self.templates: dict[str, Optional[Any]] = {}

    def renderer(self, encoder: NativeEncoder, tool_list: Optional[list], kw: dict) -> Callable[[list, bool], str]:
        """(messages, generation) -> encoder._render(messages, generation, tool_list, kw), the same text."""
        tokenizer = encoder.tokenizer
        exact = lambda messages, generation: encoder._render(messages, generation, tool_list, kw)
        try:  # the template apply_chat_template picks for this call (a name in a dict of templates resolves)
            source = tokenizer.get_chat_template(encoder.chat_template, tool_list or None)
        except Exception:  # noqa: BLE001
            return exact
        if not isinstance(source, str) or _APPLY_PARAMETERS.intersection(kw):
            return exact  # (a keyword argument apply_chat_template would take for itself: its own rendering)
        if source not in self.templates:
            self.templates[source] = _fast_template(tokenizer, source, encoder)
        template = self.templates[source]
        if template is None:
            return exact
        arguments = {**tokenizer.special_tokens_map, **kw}
        tools_arg = tool_list or None

        def render_(messages: list, generation: bool) -> str:
            try:
                return template.render(messages=messages, tools=tools_arg, documents=None,
                                       add_generation_prompt=generation, **arguments)
            except Exception:  # noqa: BLE001  (the template's own error: raised as apply_chat_template raises it)
                return exact(messages, generation)

        return render_

    def cuts(self, tokenizer: Any, text: str) -> Optional[_Cuts]:
        return _Cuts(tokenizer, self.points, text) if self.points else None

    def ids(self, encoder: NativeEncoder, text: str) -> list[int]:
        """encoder._ids(text), through the Rust tokenizer directly where that is the same call."""
        return _ids(encoder.tokenizer, text) if self.points else encoder._ids(text)


def _ids(tokenizer: Any, text: str) -> list[int]:
    backend = _backend(tokenizer)
    if backend is None:
        return tokenizer.encode(text, add_special_tokens=False)
    return backend.encode(text, add_special_tokens=False).ids


def _linear(encoder: NativeEncoder) -> _Linear:
    """The encoder's `_Linear` (held by the encoder: no module state), built again for another tokenizer object
    or special-token splitting. Like the encoder itself (its format, stop ids), it reads the tokenizer once:
    tokens added later are not seen."""
    tokenizer = encoder.tokenizer
    key = (id(tokenizer), getattr(tokenizer, "split_special_tokens", None))
    found = encoder.__dict__.get("_linear_state")
    if found is None or found.key != key:
        found = encoder.__dict__["_linear_state"] = _Linear(encoder)
        found.key = key
    return found
