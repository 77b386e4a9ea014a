"""A chat template's reasoning format, learnt once by rendering probes: the one description of how a
model writes reasoning, read by the encoder, the span finder, the loss policies, the malformed report,
eval, check, doctor and the serving bundle.

`learn(tokenizer)` reads the template's source for the names it reads (message keys, keyword
arguments, string literals) and then renders marker strings to find:
- where reasoning goes: a message field (any key the template reads: `reasoning_content`, `thinking`,
  `reasoning`, ...), typed content chunks (`{"type": "thinking", "thinking": ...}`), or inline text;
- the markup around it (opener, closer: `<think>`, `<seed:think>`, `<|channel|>analysis<|message|>` …
  `<|end|>`, any spelling) and its layout (newlines around the reasoning or compact);
- whether the generation prompt opens the block, and whether inline content starts after the opener;
- the thinking switch: a keyword argument (`enable_thinking`, `thinking`, a `reasoning_effort` value,
  ...) or a flag in the message text (`/think`, `/no_think`), with its on / off values;
- how the last turn is generated where the template does not render it as the model writes it
  (reasoning dropped in every turn, an empty block, reasoning only in tool-call turns);
- the history rule, tool-call support, and vLLM's reasoning parser for the markup.

Nothing here is keyed to one family: a family whose template is Jinja needs no code. The data's own
convention (LF datasets write reasoning inline as `<think>...</think>`) is read by `reasoning.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from .reasoning import DATA_MARKUP, split_reasoning  # the data's convention (DATA_MARKUP also re-exported)

MARK_R, MARK_A, MARK_Q, MARK_S = "RSNMARK7", "ANSMARK7", "QSTMARK7", "SYSMARK7"
_TAG = re.compile(r"<[^<>\s]+>")  # one markup tag: `<think>`, `<seed:think>`, `<|end|>`
_LEADING_TAGS = re.compile(r"^(?:\s*<[^<>\s]+>[A-Za-z_]*)+")  # `<|channel|>analysis<|message|>`
_SPLIT_CLOSER = re.compile(r"""split\(\s*['"](</[^'"<>\s]+>)['"]""")  # `content.split('</think>')`: the data closer
# Names every chat template may read that are not reasoning settings.
_STANDARD = {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "pad_token", "unk_token",
             "raise_exception", "strftime_now", "documents", "tools_in_user_message", "date_string", "custom_tools",
             "builtin_tools", "loop_messages", "tool_call", "tool", "message", "range", "namespace", "dict", "list",
             "true", "false", "none", "True", "False", "None", "loop", "ns", "add_vision_id", "xml_tools",
             "python_tools", "keep_past_thinking", "available_tools"}
_NOT_REASONING = {"role", "content", "tool_calls", "function", "name", "arguments", "type", "text", "id", "tool_call_id",
                  "parameters", "properties", "description", "required", "items", "enum", "strip", "split", "lstrip",
                  "rstrip", "startswith", "endswith", "replace", "upper", "lower", "append", "index", "length", "first",
                  "last", "index0", "image", "video", "image_url", "default", "title", "tools", "keys", "values",
                  "get", "format", "join", "count", "find", "revindex", "revindex0", "previtem", "nextitem", "cycle",
                  "changed", "depth", "depth0", "items_", "nullable", "oneOf", "anyOf", "found", "value", "key"}
_PREFERRED_FIELDS = ("reasoning_content", "thinking", "reasoning")
_PREFERRED_SWITCHES = ("enable_thinking", "thinking")


class NativeTemplateError(ValueError):
    """The chat template cannot be used for training; the message says why and what to do."""


@dataclass(frozen=True)
class Switch:
    """How thinking is turned on / off: a keyword argument of the template, or a flag in the message text."""

    kind: str  # "kwarg" | "flag"
    name: str  # the kwarg (kind kwarg); "system" or "user" (kind flag: the message the flag goes in)
    on: Any  # value (kwarg: None leaves the template's default) / flag text ("" for none)
    off: Any
    default: Optional[bool]  # the template's mode when nothing is passed

    def kwargs(self, thinking: bool) -> dict[str, Any]:
        if self.kind != "kwarg":
            return {}
        value = self.on if thinking else self.off
        return {} if value is None else {self.name: value}

    def describe(self) -> str:
        if self.kind == "kwarg":
            return self.name if (self.on, self.off) == (True, False) else f"{self.name}={self.off!r} (off)"
        return f"{self.off!r} in the {self.name} message (off)" + (f", {self.on!r} (on)" if self.on else "")


@dataclass(frozen=True)
class ReasoningFormat:
    """What one chat template does with reasoning (see the module docstring)."""

    source: str  # "field" | "chunks" | "inline"
    key: Optional[str]  # message field (field) or chunk type (chunks)
    chunk_key: Optional[str]  # the chunk's text field (chunks)
    opener: Optional[str]
    closer: Optional[str]
    layout: str  # "newline": opener \n reasoning \n closer \n\n answer; "compact": opener reasoning closer answer
    prompt_opens: bool  # the generation prompt (thinking on) ends inside the block
    content_after_opener: bool  # inline: the template writes the opener itself; content starts after it
    switch: Optional[Switch]
    settings: tuple[str, ...]  # keyword arguments the template reads beyond the standard ones
    last_turn: str  # "rendered" | "rule" (written from the markup) | "fill_block" | "tool_block" | "none"
    tool_block: Optional[tuple[str, str]] = None  # text before / after reasoning in a tool-call turn (tool_block)
    tools: bool = False
    string_arguments: bool = False
    history: str = "?"  # "kept" | "dropped": earlier turns' reasoning once a later user message follows
    reasoning_parser: Optional[str] = None  # vLLM's --reasoning-parser for this markup, where one exists
    end_of_turn: Optional[str] = None  # the tag the template ends an assistant turn with (None: left open, GLM)
    separator: str = ""  # what the model writes between the closer and the answer (`\n\n`, channel headers)
    notes: tuple[str, ...] = field(default=(), compare=False)

    # --- reading -----------------------------------------------------------------------------------
    @property
    def markup(self) -> Optional[tuple[str, str]]:
        return (self.opener, self.closer) if self.opener and self.closer else None

    @property
    def reasoning_field(self) -> Optional[str]:
        return self.key if self.source == "field" else None

    def block(self, reasoning: str) -> str:
        """The reasoning block as the model writes it (opener included), before the answer."""
        opener, closer = self.opener or DATA_MARKUP[0], self.closer or DATA_MARKUP[1]
        r = reasoning.strip("\n")
        if self.layout == "compact":
            return f"{opener}{r}{closer}"
        return f"{opener}\n{r}\n{closer}\n\n"

    def inline(self, reasoning: Optional[str], answer: str) -> str:
        """An assistant message's content for an inline template: the family's own layout (compact data normalised)."""
        if reasoning is None:
            return answer
        text = self.block(reasoning) + answer.lstrip("\n")
        if self.content_after_opener and self.opener and text.startswith(self.opener):
            text = text[len(self.opener):]
            if self.layout == "newline":
                text = text[1:]  # the template writes `opener\n`
        return text

    def message(self, answer: str, reasoning: Optional[str]) -> dict[str, Any]:
        """An assistant message carrying `reasoning` where the template reads it."""
        if reasoning is None:
            return {"role": "assistant", "content": self.inline(None, answer) if self.source == "inline" else answer}
        if self.source == "field":
            return {"role": "assistant", "content": answer, self.key: reasoning}
        if self.source == "chunks":
            chunks = [{"type": self.key, self.chunk_key: reasoning}]
            if answer:
                chunks.append({"type": "text", "text": answer})
            return {"role": "assistant", "content": chunks}
        return {"role": "assistant", "content": self.inline(reasoning, answer)}

    def read(self, content: str) -> tuple[Optional[str], str]:
        """(reasoning, answer) of an assistant message in the data: LF's inline `<think>` convention, or the
        family's own inline markup where the data is written in it (`<reasoning>...</reasoning>`)."""
        reasoning, answer = split_reasoning(content)
        if reasoning is None and self.closer and self.closer != DATA_MARKUP[1] and _TAG.fullmatch(self.closer) \
                and "|" not in self.closer and self.closer in content:
            reasoning, answer = self.split(content)
        return reasoning, answer

    def split(self, text: str) -> tuple[Optional[str], str]:
        """(reasoning, answer) of generated text in this markup; reasoning None when no block closes.
        Generated text starts after the generation prompt, so the opener may already be in the prompt."""
        opener, closer = self.opener or DATA_MARKUP[0], self.closer or DATA_MARKUP[1]
        if closer not in text:
            return None, text
        head, _, tail = text.partition(closer)
        reasoning = head.split(opener)[-1] if opener in head else head
        return reasoning.strip("\n"), tail.lstrip("\n")

    def describe(self) -> dict[str, Any]:
        where = {"field": self.key, "chunks": f"chunks ({self.key})", "inline": "inline"}[self.source]
        return {
            "reasoning": where,
            "switch": self.switch.describe() if self.switch else "none",
            "markup": list(self.markup) if self.markup else None,
            "last-turn reasoning": _LAST_TURN[self.last_turn],
            "prompt opens think": self.prompt_opens,
            "tools": self.tools,
            "tool arguments": "JSON string" if self.string_arguments else "object",
            "settings": list(self.settings),
            "history": self.history,
            "reasoning parser": self.reasoning_parser,
            "end of turn": self.end_of_turn,
            "separator": self.separator,
        }

    # --- the machine-readable record ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReasoningFormat":
        data = dict(data)
        if data.get("switch"):
            data["switch"] = Switch(**data["switch"])
        for key in ("settings", "notes"):
            data[key] = tuple(data.get(key) or ())
        if data.get("tool_block"):
            data["tool_block"] = tuple(data["tool_block"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


# ---------------------------------------------------------------------------------------------------
# learning

def render(tokenizer: Any, messages: list[dict], generation: bool, tools: Optional[list] = None,
           chat_template: Optional[str] = None, **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=generation, **kwargs)


def template_text(tokenizer: Any, chat_template: Optional[str] = None) -> str:
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise NativeTemplateError(
            f"the tokenizer at {getattr(tokenizer, 'name_or_path', '?')} has no chat template "
            "(`chat_template` in tokenizer_config.json or chat_template.jinja)")
    return template


@dataclass
class _Names:
    keys: list[str]  # attribute / item names the template reads (message fields among them)
    variables: list[str]  # undeclared names: keyword arguments the template takes
    literals: list[str]  # short string constants (flag texts, setting values, chunk types)


def _names(template: str) -> _Names:
    try:
        from jinja2 import meta, nodes
        from transformers.utils.chat_template_utils import _compile_jinja_template

        ast = _compile_jinja_template(template).environment.parse(template)
        keys = [n.attr for n in ast.find_all(nodes.Getattr)]
        keys += [n.arg.value for n in ast.find_all(nodes.Getitem)
                 if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str)]
        keys += [n.args[0].value for n in ast.find_all(nodes.Call)  # `message.get('reasoning_content')`
                 if isinstance(n.node, nodes.Getattr) and n.node.attr == "get" and n.args
                 and isinstance(n.args[0], nodes.Const) and isinstance(n.args[0].value, str)]
        variables = sorted(meta.find_undeclared_variables(ast))
        literals = [n.value for n in ast.find_all(nodes.Const) if isinstance(n.value, str)]
    except Exception:  # noqa: BLE001  (a template jinja2 cannot parse alone: read the names from its text)
        keys = re.findall(r"\.\s*([A-Za-z_]\w*)", template) + re.findall(r"""\[\s*['"]([A-Za-z_]\w*)['"]\s*\]""", template)
        variables = sorted(set(re.findall(r"\b([a-z_][a-z0-9_]*) is defined", template)))
        literals = re.findall(r"""['"]([^'"\n]{1,40})['"]""", template)
    seen: dict[str, None] = {}
    for k in keys:
        seen.setdefault(k)
    return _Names(list(seen), [v for v in variables if v not in _STANDARD],
                  sorted({s for s in literals if 0 < len(s) <= 40}))


def _try(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Optional[str]:
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001  (a template may raise on a probe shape: that shape is unsupported)
        return None


def _string_args(call: dict) -> dict:
    function = dict(call["function"], arguments=json.dumps(call["function"]["arguments"], ensure_ascii=False))
    return dict(call, function=function)


_CALL = {"type": "function", "function": {"name": "probe_tool", "arguments": {"x": 1}}}
_TOOL = [{"type": "function", "function": {"name": "probe_tool", "description": "d",
                                           "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]


class _Prober:
    def __init__(self, tokenizer: Any, template: str) -> None:
        self.tokenizer, self.template = tokenizer, template
        self.user = [{"role": "user", "content": MARK_Q}]

    def r(self, messages: list[dict], generation: bool, **kw: Any) -> Optional[str]:
        return _try(render, self.tokenizer, messages, generation, chat_template=self.template, **kw)


def learn(tokenizer: Any, chat_template: Optional[str] = None) -> ReasoningFormat:
    """Probe the chat template (a few dozen renders of marker strings); NativeTemplateError when unusable."""
    template = template_text(tokenizer, chat_template)
    p = _Prober(tokenizer, template)
    names = _names(template)
    base = p.r(p.user, True)
    if base is None:
        raise NativeTemplateError("the chat template fails to render a single user message with a generation prompt")
    switch = _bool_switch(p, names)
    on_kw = switch.kwargs(True) if switch else {}
    prompt = p.r(p.user, True, **on_kw) or base
    with_tools = p.r(p.user, True, tools=_TOOL, **on_kw)
    string_args = p.r(p.user + [{"role": "assistant", "content": "", "tool_calls": [_CALL]}], False, **on_kw) is None \
        and p.r(p.user + [{"role": "assistant", "content": "", "tool_calls": [_string_args(_CALL)]}], False, **on_kw) is not None
    call = _string_args(_CALL) if string_args else _CALL

    # where the template reads reasoning: a field, typed chunks, or (neither) inline text
    source, key, chunk_key, full = "inline", None, None, None
    fields = list(_PREFERRED_FIELDS) + [k for k in names.keys if k not in _PREFERRED_FIELDS and k not in _NOT_REASONING]
    for candidate in fields:
        text = p.r(p.user + [{"role": "assistant", "content": MARK_A, candidate: MARK_R}], False, **on_kw)
        if text is not None and MARK_R in text and MARK_A in text:
            source, key, full = "field", candidate, text
            break
    if full is None:
        for ctype in [t for t in ("thinking", "reasoning") if t in names.literals] or []:
            for ckey in (ctype, "text"):
                chunks = [{"type": ctype, ckey: MARK_R}, {"type": "text", "text": MARK_A}]
                text = p.r(p.user + [{"role": "assistant", "content": chunks}], False, **on_kw)
                if text is not None and MARK_R in text and MARK_A in text:
                    source, key, chunk_key, full = "chunks", ctype, ckey, text
                    break
            if full is not None:
                break
    tool_field = None
    if full is None:  # reasoning rendered only in tool-call turns (Kimi-K2-Thinking, channel-style templates)
        for candidate in fields:
            text = p.r(p.user + [{"role": "assistant", "content": MARK_A, candidate: MARK_R, "tool_calls": [call]}],
                       False, **on_kw)
            if text is not None and text.count(MARK_R) == 1:
                tool_field = (candidate, text)
                break

    opener = closer = None
    prompt_opens = content_after = False
    layout = "newline"
    last_turn = "rendered"
    tool_block = None
    notes: list[str] = []
    if full is not None:
        (opener, closer), prompt_opens = _markup(prompt, full)
        layout = _layout(prompt, full, opener, closer)
    elif tool_field is not None:
        source, key = "field", tool_field[0]
        text = tool_field[1]
        (opener, closer), prompt_opens = _markup(prompt, text)
        plain = p.r(p.user + [{"role": "assistant", "content": MARK_A}], False, **on_kw) or ""
        if opener and closer and re.search(re.escape(opener) + r"\s*" + re.escape(closer), plain[len(prompt) - 1:] if
                                           plain.startswith(prompt[:-1]) else plain):
            last_turn = "fill_block"  # answers render an empty block: it is filled (Kimi-K2-Thinking)
        else:
            tool_block = _tool_block(p, prompt, text, call, on_kw)
            last_turn = "tool_block" if tool_block else "none"
        layout = _layout(prompt, text, opener, closer)
    else:  # inline: the template reads the content as written
        opener, closer, prompt_opens = _inline_markup(prompt, template)
        text = p.r(p.user + [{"role": "assistant", "content": f"{opener}\n{MARK_R}\n{closer}\n\n{MARK_A}"}], False, **on_kw)
        plain = p.r(p.user + [{"role": "assistant", "content": MARK_A}], False, **on_kw) or ""
        content_after = prompt_opens and plain.startswith(prompt)
        layout = "compact" if prompt_opens and not prompt.endswith(opener + "\n") else "newline"
        if content_after:
            text = p.r(p.user + [{"role": "assistant", "content": (MARK_R if layout == "compact" else MARK_R + "\n")
                                  + closer + ("" if layout == "compact" else "\n\n") + MARK_A}], False, **on_kw)
        if text is None or MARK_R not in text:
            last_turn = "rule" if prompt_opens or _SPLIT_CLOSER.search(template) else "none"
    if switch is None:
        switch = _value_switch(p, names, opener, closer, source, key, chunk_key) or _flag_switch(p, names, opener, closer)
    fmt = ReasoningFormat(source, key, chunk_key, opener, closer, layout, prompt_opens, content_after, switch,
                          tuple(v for v in names.variables if _reads(p, v, names)), last_turn, tool_block,
                          bool(with_tools and "probe_tool" in with_tools), string_args, notes=tuple(notes))
    history = _history(p, fmt)
    separator = ""
    if full is not None and closer and closer in full[full.index(MARK_R):]:
        after = full[full.index(MARK_R):]
        separator = after[after.index(closer) + len(closer):after.find(MARK_A)] if MARK_A in after else ""
    elif tool_block is not None:  # the tool-call turn's text after the closer, then the answer's own header
        plain = p.r(p.user + [{"role": "assistant", "content": MARK_A}], False, **on_kw) or ""
        head = plain[len(prompt):plain.find(MARK_A)] if plain.startswith(prompt) and MARK_A in plain else ""
        separator = tool_block[1][len(closer):] + head if tool_block[1].startswith(closer) else ""
    return _with(fmt, history=history, reasoning_parser=_parser(fmt), end_of_turn=_end_of_turn(p, on_kw),
                 separator=separator)


def _end_of_turn(p: _Prober, on_kw: dict) -> Optional[str]:
    """The tag right after an answer in the last turn's rendering (`<|im_end|>`, `<|return|>`), if any."""
    text = p.r(p.user + [{"role": "assistant", "content": MARK_A}], False, **on_kw) or ""
    at = text.rfind(MARK_A)
    found = _TAG.match(text[at + len(MARK_A):]) if at >= 0 else None
    return found.group(0) if found and not found.group(0).startswith("</") else None


_LAST_TURN = {"rendered": "rendered", "rule": "written from the markup", "fill_block": "empty block filled",
              "tool_block": "placed as in tool-call turns", "none": "none"}


def _with(fmt: ReasoningFormat, **changes: Any) -> ReasoningFormat:
    from dataclasses import replace

    return replace(fmt, **changes)


def _bool_switch(p: _Prober, names: _Names) -> Optional[Switch]:
    """A keyword argument whose True / False change the generation prompt (`enable_thinking`, `thinking`, ...)."""
    candidates = [v for v in _PREFERRED_SWITCHES if v in names.variables or v in names.keys] + \
        [v for v in names.variables if v not in _PREFERRED_SWITCHES and re.search("think|reason", v)
         and not re.search("budget|effort|length|tokens", v)]  # settings with values of their own
    base = p.r(p.user, True)
    for name in candidates:
        on, off = p.r(p.user, True, **{name: True}), p.r(p.user, True, **{name: False})
        if on is not None and off is not None and on != off:
            return Switch("kwarg", name, True, False, base == on)
    return None


def _closed_block_at_end(prompt: str, opener: Optional[str], closer: Optional[str]) -> bool:
    return bool(opener and closer and re.search(re.escape(opener) + r"\s*" + re.escape(closer) + r"\s*$", prompt)) or \
        bool(closer and prompt.rstrip().endswith(closer))


def _value_switch(p: _Prober, names: _Names, opener: Optional[str], closer: Optional[str], source: str,
                  key: Optional[str], chunk_key: Optional[str]) -> Optional[Switch]:
    """A keyword argument with string values (`reasoning_effort: none`) one of which turns thinking off."""
    values = [s for s in names.literals if re.fullmatch(r"[a-z][a-z_]{1,15}", s)]
    base = p.r(p.user, True)
    for name in names.variables:
        if not re.search("think|reason|effort|budget|mode", name):
            continue
        for value in values:
            prompt = p.r(p.user, True, **{name: value})
            if prompt is not None and prompt != base and _closed_block_at_end(prompt, opener, closer) \
                    and not _closed_block_at_end(base, opener, closer):
                return Switch("kwarg", name, None, value, True)
    return None


def _flag_switch(p: _Prober, names: _Names, opener: Optional[str], closer: Optional[str]) -> Optional[Switch]:
    """A flag in the message text (`/no_think`) that turns thinking off; its counterpart (`/think`) if any."""
    flags = [s for s in names.literals if re.fullmatch(r"/[a-z_]{2,20}", s)]
    for where in ("system", "user"):
        def prompt_with(flag: str) -> Optional[str]:
            if where == "system":
                return p.r([{"role": "system", "content": f"{MARK_S} {flag}".strip()}] + p.user, True)
            return p.r([{"role": "user", "content": f"{MARK_Q} {flag}".strip()}], True)

        plain = prompt_with("")
        for flag in flags:
            off = prompt_with(flag)
            if off is not None and plain is not None and off != plain and _closed_block_at_end(off, opener, closer) \
                    and not _closed_block_at_end(plain, opener, closer):
                return Switch("flag", where, "", flag, True)  # thinking is the default: only `off` is written
    return None


def _reads(p: _Prober, name: str, names: _Names) -> bool:
    """The template's output depends on the keyword argument `name` (a setting it reads)."""
    base = p.r(p.user, True)
    conversation = p.user + [{"role": "assistant", "content": MARK_A}]
    full = p.r(conversation, False)
    for value in [True, False, "low", "high", 1024] + [s for s in names.literals if re.fullmatch(r"[a-z]{2,10}", s)][:6]:
        if p.r(p.user, True, **{name: value}) not in (None, base) or p.r(conversation, False, **{name: value}) not in (None, full):
            return True
    return False


def _markup(prompt: str, full: str) -> tuple[tuple[Optional[str], Optional[str]], bool]:
    """(open, close) tags around the reasoning marker, and whether the generation prompt holds the opener."""
    at = full.index(MARK_R)
    answer_at = full.find(MARK_A, at)
    between = full[at + len(MARK_R):answer_at if answer_at >= 0 else None]
    close = _TAG.search(between)
    if close is None:
        return (None, None), False
    common = len(prompt) if full.startswith(prompt) else 0
    generated = full[common:at]
    lead = _LEADING_TAGS.match(generated)
    if lead and lead.group(0).strip():
        return (lead.group(0).strip(), close.group(0)), False
    before = _TAG.findall(prompt)  # the opener sits at the end of the generation prompt (`<think>\n`)
    if before and prompt.rstrip().endswith(before[-1]):
        return (before[-1], close.group(0)), True
    if not full.startswith(prompt):  # the prompt opens the block the rendered turn re-opens with other text
        tags = _TAG.findall(full[:at])
        if tags:
            return (tags[-1], close.group(0)), prompt.rstrip().endswith(tags[-1])
    return (None, None), False


def _layout(prompt: str, full: str, opener: Optional[str], closer: Optional[str]) -> str:
    """newline or compact: how the rendering spaces the reasoning inside its markup."""
    if not opener or not closer:
        return "newline"
    at = full.index(MARK_R)
    if full[at - 1:at] == "\n" or full[at + len(MARK_R):at + len(MARK_R) + 1] == "\n":
        return "newline"
    if prompt.endswith(opener + "\n"):
        return "newline"
    return "compact"


def _inline_markup(prompt: str, template: str) -> tuple[str, str, bool]:
    """An inline template's markup: the opener the generation prompt ends with, or the closer the template
    splits the content on (`content.split('</reasoning>')`); the data's `<think>` otherwise."""
    tags = _TAG.findall(prompt)
    tail = prompt.rstrip()
    if tags and tail.endswith(tags[-1]) and not tags[-1].startswith("</") and "|" not in tags[-1] \
            and "｜" not in tags[-1]:
        opener = tags[-1]
        closer = "</" + opener[1:]
        return opener, closer, True
    split = _SPLIT_CLOSER.search(template)
    if split:
        closer = split.group(1)
        return "<" + closer[2:], closer, False
    return DATA_MARKUP[0], DATA_MARKUP[1], False


def _tool_block(p: _Prober, prompt: str, with_reasoning: str, call: dict, on_kw: dict) -> Optional[tuple[str, str]]:
    """Where a tool-call turn puts reasoning: the text before and after it, ahead of the call's own rendering."""
    alone = p.r(p.user + [{"role": "assistant", "content": "", "tool_calls": [call]}], False, **on_kw)
    if alone is None or not alone.startswith(prompt) or not with_reasoning.startswith(prompt):
        return None
    turn, call_text = with_reasoning[len(prompt):], alone[len(prompt):]
    at = turn.find(MARK_R)
    if at < 0 or not turn.endswith(call_text):
        return None
    return turn[:at], turn[at + len(MARK_R):len(turn) - len(call_text)]


def _history(p: _Prober, fmt: ReasoningFormat) -> str:
    kw = fmt.switch.kwargs(True) if fmt.switch else {}
    messages = p.user + [fmt.message("A1", "HISTMARK"), {"role": "user", "content": "Q2"}]
    text = p.r(messages, True, **kw)
    return "?" if text is None else ("kept" if "HISTMARK" in text else "dropped")


# vLLM's reasoning parsers by the markup they split (vllm/reasoning/*.py): (opener, closer, prompt opens) -> name
_PARSERS = {("<think>", "</think>", True): "deepseek_r1", ("<think>", "</think>", False): "qwen3",
            ("<seed:think>", "</seed:think>", False): "seed_oss",
            ("<|channel|>analysis<|message|>", "<|end|>", False): "openai_gptoss"}


def _parser(fmt: ReasoningFormat) -> Optional[str]:
    return _PARSERS.get((fmt.opener or "", fmt.closer or "", fmt.prompt_opens))
