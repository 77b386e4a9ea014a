"""An Ollama TEMPLATE learnt from a chat template: the literal text it writes between messages, found by
rendering marker conversations (the way `templates/format.py` learns the reasoning format), then written as
a Go text/template and, identically, rendered here in Python (the export's own check, no Go needed).

What a chat template writes is cut into pieces (`Slots`):
- the head up to the first user message's content, in four variants (system message or not, tools or not),
  with holes for the system text and the tool definitions;
- transitions between consecutive messages (`user>assistant`, `assistant>user`, `call>tool`, `tool>tool`,
  `tool>assistant`) and the generation prompt after the last message (`user>gen`, `tool>gen`, thinking on
  and off);
- an answer turn as history: its reasoning block (or what the template leaves of it) and the answer;
- a tool-call turn: reasoning, then each call's name and JSON arguments.
Ollama hands a template the answer in `.Content` and the reasoning its parser split off in `.Thinking`, so
the reasoning block is written back from the format's markup. A template that writes something these
pieces cannot hold (arguments as XML, tools as TypeScript, a switch in the message text) is reported by
what differs, never approximated: `SlotsError`, or `tools_error` for the tool parts alone.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Optional

Q, Q2, A, R, S = "QSTMARK7", "QSTMARKB7", "ANSMARK7", "RSNMARK7", "SYSMARK7"
NAME, ARG, RESP, RESP2 = "NAMEMARK7", "ARGMARK7", "RESPMARK7", "RESPMARKB7"
KEY, KEY2, ARG2 = "KEYMARK7", "KEYMARKB7", "ARGMARKB7"  # sorted as Go ranges over a map, and as inserted
SYSTEM, TOOLS, DATE = "\x00system", "\x00tools", "\x00date"  # holes in the head's pieces
_TOOL_DEFS = [{"type": "function", "function": {"name": f"TOOLMARK7{i}", "description": "d",
                                                 "parameters": {"type": "object", "properties": {"x": {"type": "string"}},
                                                                "required": ["x"]}}} for i in (1, 2)]


class SlotsError(ValueError):
    """The chat template writes something an Ollama TEMPLATE over Ollama's message fields cannot."""


@dataclass(frozen=True)
class Slots:
    bos: str  # the BOS text every rendering starts with (the engine's tokenizer adds it where the GGUF says so)
    heads: dict[str, tuple[str, ...]]  # "", "s", "t", "st" -> pieces (literals and SYSTEM / TOOLS / DATE holes)
    tool_sep: str  # between two tool definitions
    trans: dict[str, str]  # "user>assistant", "assistant>user", "call>tool", "tool>tool", "tool>assistant", "user>gen:on", ...
    answer: dict[str, str]  # "L", "M": around history reasoning, or "D": what replaces it; "E": lead with no reasoning
    # a call turn: "LK", "MK" around its reasoning, or "DK" where the template drops it; "EK": lead with none;
    # "NEXT": between two calls; arguments as JSON ("P2": name -> arguments) or one piece per argument
    # ("KA": name -> first key, "KS": value -> next key, "KB": key -> value; Qwen3.5's `<parameter=k>`, GLM's `<arg_key>`)
    call: dict[str, str]
    switch: bool  # thinking has an on / off switch
    default_on: bool  # the template's mode when the client sets none
    tools_error: Optional[str] = None  # why tool definitions / calls are left out, None where they are written
    markup: Optional[tuple[str, str]] = None  # the reasoning's opener and closer (Ollama infers them from the TEMPLATE)
    user_off: str = ""  # written after every user message with thinking off (GLM-4.5 / 4.6: `/nothink`)
    notes: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------
# learning


def _lf(messages: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


def _call(name: str = NAME, n: int = 1, two_args: bool = False) -> str:
    arguments = {KEY: ARG, KEY2: ARG2} if two_args else {KEY: ARG}
    calls = [{"name": name if n == 1 else f"{name}{i}", "arguments": arguments} for i in range(n)]
    return json.dumps(calls[0] if n == 1 else calls, ensure_ascii=False)


def _common_prefix(a: str, b: str, opener: Optional[str], closer: Optional[str] = None) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    common = a[:n]
    cut = common.rfind("<")
    if cut > common.rfind(">"):  # never split a tag
        common = common[:cut]
    if opener and opener in common:  # keep the block (GLM's empty `<think></think>` too) with the reasoning lead
        common = common[: common.rfind(opener)]
    if closer and closer in common:  # a closer alone (GLM-4.7-Flash: `<|assistant|></think>` before an answer)
        common = common[: common.rfind(closer)]
    return common


def _between(text: str, start: str, end: str, after: int = 0) -> str:
    i = text.index(start, after) + len(start)
    return text[i: text.index(end, i)]


class _Learner:
    def __init__(self, tokenizer: Any, chat_template: str, fmt: Any) -> None:
        from ..templates.native import to_messages
        from ..templates.format import render

        self.tok, self.template, self.fmt = tokenizer, chat_template, fmt
        self._to, self._render = to_messages, render

    def kw(self, thinking: bool) -> dict[str, Any]:
        return self.fmt.switch.kwargs(thinking) if self.fmt.switch else {}

    def r(self, lf: list[dict], gen: bool = True, system: Optional[str] = None, tools: Optional[list] = None,
          thinking: bool = True) -> str:
        messages = self._to(lf, system, self.fmt, thinking)
        try:
            return self._render(self.tok, messages, gen, tools, self.template, **self.kw(thinking))
        except Exception as err:  # noqa: BLE001  (a template that raises on a marker conversation)
            raise SlotsError(f"the chat template fails on a {'/'.join(m['role'] for m in lf)} conversation: {err}") from None


def learn_slots(tokenizer: Any, chat_template: str, fmt: Any) -> Slots:
    """The pieces of `chat_template` (reasoning format `fmt`); SlotsError where they do not describe it."""
    try:
        return _learn(tokenizer, chat_template, fmt)
    except SlotsError:
        raise
    except ValueError as err:  # a marker not where the pieces put it (`str.index`): the pieces do not fit
        raise SlotsError(f"the chat template does not write its messages as fixed text around them ({err})") from None


def _learn(tokenizer: Any, chat_template: str, fmt: Any) -> Slots:
    if fmt.switch is not None and fmt.switch.kind != "kwarg":
        raise SlotsError(f"the thinking switch is {fmt.switch.describe()}: Ollama has no field for text in a message")
    p = _Learner(tokenizer, chat_template, fmt)
    from ..templates.format import DATA_MARKUP

    think = f"{DATA_MARKUP[0]}\n{R}\n{DATA_MARKUP[1]}\n\n"  # the data's inline reasoning, which to_messages reads
    on = p.r(_lf([("user", Q)]))
    if on.count(Q) != 1:
        raise SlotsError("the user message is not rendered once as sent")
    head0 = on[: on.index(Q)]
    bos = tokenizer.bos_token or ""
    bos = bos if bos and head0.startswith(bos) else ""
    today = datetime.date.today().strftime("%Y-%m-%d")

    def pieces(text: str, system: bool, tools: Optional[str]) -> tuple[str, ...]:
        text = text[len(bos):] if bos and text.startswith(bos) else text
        out: list[str] = []
        marks = [(SYSTEM, S)] * system + ([(TOOLS, tools)] if tools else [])
        for hole, mark in sorted(marks, key=lambda m: text.find(m[1])):
            if text.count(mark) != 1:
                raise SlotsError(f"the {'system message' if hole == SYSTEM else 'tool definitions'} are not written once as sent")
            before, text = text.split(mark)
            out += [before, hole]
        out.append(text)
        dated: list[str] = []
        for piece in out:  # gpt-oss writes today's date (`strftime_now`): Ollama's `currentDate`
            if piece not in (SYSTEM, TOOLS) and today in piece:
                for k, part in enumerate(piece.split(today)):
                    dated += ([DATE] if k else []) + [part]
            else:
                dated.append(piece)
        return tuple(d for d in dated if d != "")

    heads = {"": pieces(head0, False, None)}
    with_system = p.r(_lf([("user", Q)]), system=S)
    heads["s"] = pieces(with_system[: with_system.index(Q)], True, None)
    trans = {"user>gen:on": on[on.index(Q) + len(Q):]}
    switch = fmt.switch is not None
    if switch:
        off = p.r(_lf([("user", Q)]), thinking=False)
        if not off.startswith(head0 + Q):
            raise SlotsError("thinking off changes the text before the generation prompt")
        trans["user>gen:off"] = off[len(head0) + len(Q):]
    default = p._render(tokenizer, [{"role": "user", "content": Q}], True, None, chat_template)
    default_on = not switch or default == on

    # an answer turn as history (a later user message follows)
    opener = fmt.opener
    with_r = p.r(_lf([("user", Q), ("assistant", think + A), ("user", Q2)]))
    no_r = p.r(_lf([("user", Q), ("assistant", A), ("user", Q2)]))
    for text in (with_r, no_r):
        if text.count(A) != 1 or not text.endswith(Q2 + trans["user>gen:on"]):
            raise SlotsError("an earlier answer or the following user turn is not rendered as sent")
    pre_r, pre_0 = _between(with_r, Q, A), _between(no_r, Q, A)
    post_r, post_0 = _between(with_r, A, Q2), _between(no_r, A, Q2)
    if post_r != post_0:
        raise SlotsError("the end of an earlier answer depends on its reasoning")
    ua = _common_prefix(pre_r, pre_0, opener, fmt.closer)
    trans["user>assistant"], trans["assistant>user"] = ua, post_0
    lead_r, lead_0 = pre_r[len(ua):], pre_0[len(ua):]
    answer = {"E": lead_0}
    if R in lead_r:
        answer["L"], answer["M"] = lead_r.split(R)
    else:
        answer["D"] = lead_r  # the template drops history reasoning; what it leaves (R1: the `\n\n` after `</think>`)

    user_off = ""
    if switch:  # thinking off may mark every user message (GLM: `/nothink`): learnt where that is all it changes
        off_turns = p.r(_lf([("user", Q), ("assistant", A), ("user", Q2)]), thinking=False)
        between_on, between_off = _between(no_r, Q, A), _between(off_turns, Q, A)
        if between_off != between_on and between_off.endswith(between_on):
            mark = between_off[: len(between_off) - len(between_on)]
            gen_off = trans["user>gen:off"]
            if gen_off.startswith(mark) and off_turns == no_r.replace(Q + between_on, Q + mark + between_on).replace(
                    Q2 + trans["user>gen:on"], Q2 + gen_off):
                user_off, trans["user>gen:off"] = mark, gen_off[len(mark):]
    slots = Slots(bos, heads, "", trans, answer, {}, switch, default_on, markup=fmt.markup, user_off=user_off)
    try:
        return _with_tools(p, slots, fmt, think, today)
    except ValueError as err:  # SlotsError, or a marker not where the tool pieces put it
        from dataclasses import replace

        return replace(slots, tools_error=str(err))


def _with_tools(p: _Learner, slots: Slots, fmt: Any, think: str, today: str) -> Slots:
    from dataclasses import replace

    if not fmt.tools:
        raise SlotsError("the chat template renders no tool definitions")
    tools_json = [json.dumps(t, ensure_ascii=False) for t in _TOOL_DEFS]
    both = p.r(_lf([("user", Q)]), tools=_TOOL_DEFS)
    if not all(t in both for t in tools_json):
        raise SlotsError("tool definitions are not written as JSON (Ollama's template functions write JSON only)")
    tool_sep = _between(both, tools_json[0], tools_json[1])
    block = tools_json[0] + tool_sep + tools_json[1]
    heads = dict(slots.heads)
    for key, system in (("t", None), ("st", S)):
        text = p.r(_lf([("user", Q)]), system=system, tools=_TOOL_DEFS)
        if block not in text or not text.endswith(Q + slots.trans["user>gen:on"]):
            raise SlotsError("the tool definitions change the generation prompt or are not written together")
        head = text[: text.index(Q)].replace(block, TOOLS_MARK)
        heads[key] = _pieces_with(slots, head, system is not None, today)

    args = json.dumps({KEY: ARG}, ensure_ascii=False)
    ua = slots.trans["user>assistant"]
    chains = {}
    for key, content in (("r", think + _call()), ("0", _call())):
        text = p.r(_lf([("user", Q), ("function", content), ("observation", RESP)]), tools=_TOOL_DEFS)
        turn = _between(text, Q, RESP)
        if not turn.startswith(ua) or turn.count(NAME) != 1 or turn.count(ARG) != 1:
            raise SlotsError("a tool call is not written once, as its name and its arguments")
        chains[key] = (turn[len(ua):], text[text.index(RESP) + len(RESP):])
    (call_r, gen_r), (call_0, _) = chains["r"], chains["0"]
    call = {"EK": call_0[: call_0.index(NAME)]}
    if R in call_r:
        call["LK"], call["MK"] = call_r[: call_r.index(R)], call_r[call_r.index(R) + len(R): call_r.index(NAME)]
    else:  # QwQ, R1-0528: a call turn's reasoning is not shown; what the turn writes before the call instead
        call["DK"] = call_r[: call_r.index(NAME)]
    after_name = call_0[call_0.index(NAME) + len(NAME):]
    if args in after_name:
        call["P2"] = after_name[: after_name.index(args)]
        end = args
    else:  # one piece per argument: key and value as text
        if after_name.count(KEY) != 1 or after_name.index(KEY) > after_name.index(ARG):
            raise SlotsError("tool-call arguments are written neither as JSON nor as key then value")
        call["KA"], call["KB"] = after_name[: after_name.index(KEY)], _between(after_name, KEY, ARG)
        pair = p.r(_lf([("user", Q), ("function", _call(two_args=True)), ("observation", RESP)]), tools=_TOOL_DEFS)
        if pair.count(KEY2) != 1 or pair.count(ARG2) != 1:
            raise SlotsError("a second tool-call argument is not written after the first")
        call["KS"] = _between(pair, ARG, KEY2)
        if _between(pair, KEY2, ARG2) != call["KB"]:
            raise SlotsError("tool-call arguments are not written alike")
        end = ARG
    trans = dict(slots.trans)
    trans["call>tool"] = call_0[call_0.index(end) + len(end):]
    trans["tool>gen:on"] = gen_r
    if slots.switch:
        off = p.r(_lf([("user", Q), ("function", _call()), ("observation", RESP)]), tools=_TOOL_DEFS, thinking=False)
        trans["tool>gen:off"] = off[off.index(RESP) + len(RESP):]
    two = p.r(_lf([("user", Q), ("function", _call(n=2)), ("observation", RESP), ("observation", RESP2)]), tools=_TOOL_DEFS)
    first, second = f"{NAME}0", f"{NAME}1"
    if two.count(first) != 1 or two.count(second) != 1:
        raise SlotsError("two tool calls in one turn are not written one after the other")
    call["NEXT"] = _between(two, end, second, two.index(first))
    trans["tool>tool"] = _between(two, RESP, RESP2)
    after = p.r(_lf([("user", Q), ("function", _call()), ("observation", RESP), ("assistant", A), ("user", Q2)]),
                tools=_TOOL_DEFS)
    tool_answer = _between(after, RESP, A)
    if not tool_answer.endswith(slots.answer["E"]):
        raise SlotsError("an answer after tool results starts differently from other answers")
    trans["tool>assistant"] = tool_answer[: len(tool_answer) - len(slots.answer["E"])]
    return replace(slots, heads=heads, tool_sep=tool_sep, trans=trans, call=call)


TOOLS_MARK = "\x00toolsmark"


def _pieces_with(slots: Slots, head: str, system: bool, today: str) -> tuple[str, ...]:
    if slots.bos and head.startswith(slots.bos):
        head = head[len(slots.bos):]
    out: list[str] = []
    for mark, hole in sorted([(TOOLS_MARK, TOOLS)] + [(S, SYSTEM)] * system, key=lambda m: head.find(m[0])):
        if head.count(mark) != 1:
            raise SlotsError("the system message is not written once beside the tool definitions")
        before, head = head.split(mark)
        out += [before, hole]
    out.append(head)
    dated: list[str] = []
    for piece in out:
        if piece not in (SYSTEM, TOOLS) and today in piece:
            for k, part in enumerate(piece.split(today)):
                dated += ([DATE] if k else []) + [part]
        else:
            dated.append(piece)
    return tuple(d for d in dated if d != "")


# ---------------------------------------------------------------------------------------------------
# Ollama's view of a conversation, and the rendering (Python; the Go TEMPLATE below writes the same)


def ollama_messages(lf_messages: list[dict[str, str]], fmt: Any, thinking: bool) -> list[dict[str, Any]]:
    """LF messages as a client sends them to Ollama: answers in `content`, reasoning in `thinking` (as Ollama's
    parser split it off, and only for a thinking request), calls in `tool_calls`, results as `tool` messages."""
    from ..templates.native import _tool_calls

    out: list[dict[str, Any]] = []
    for message in lf_messages:
        role, content = message["role"], message["content"]
        if role in ("assistant", "function"):
            reasoning, rest = fmt.read(content)
            entry: dict[str, Any] = {"role": "assistant", "content": rest if role == "assistant" else "",
                                     "thinking": (reasoning or "").strip("\n") if thinking else ""}
            if role == "function":
                calls = _tool_calls(rest.strip())
                entry["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                                       for c in calls]
            out.append(entry)
        elif role == "observation":
            out.append({"role": "tool", "content": content})
        else:
            out.append({"role": role, "content": content})
    return out


def _json(value: Any) -> str:
    """Go's encoding/json (Ollama's `json` template function): compact, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=isinstance(value, dict))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def tool_json(tool: dict[str, Any]) -> str:
    """A tool definition as the TEMPLATE writes it from Ollama's fields: OpenAI's key order, properties sorted."""
    function = tool.get("function", tool)
    params = function.get("parameters") or {}
    props = params.get("properties") or {}
    items = []
    for key in sorted(props):
        prop = props[key]
        text = f"{_json(key)}: {{\"type\": {_json(prop.get('type'))}"
        if prop.get("description"):
            text += f", \"description\": {_json(prop['description'])}"
        items.append(text + "}")
    out = f"{{\"type\": {_json(tool.get('type', 'function'))}, \"function\": {{\"name\": {_json(function['name'])}"
    if function.get("description"):
        out += f", \"description\": {_json(function['description'])}"
    out += f", \"parameters\": {{\"type\": {_json(params.get('type', 'object'))}, \"properties\": {{{', '.join(items)}}}"
    if params.get("required"):
        out += ", \"required\": [" + ", ".join(_json(r) for r in params["required"]) + "]"
    return out + "}}}"


def args_json(arguments: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{_json(k)}: {_json(arguments[k])}" for k in sorted(arguments)) + "}"


def render(slots: Slots, messages: list[dict[str, Any]], tools: Optional[list] = None, think: bool = True,
           is_think_set: bool = False, keep_bos: bool = False) -> str:
    """The prompt Ollama renders from the TEMPLATE (`template_text(slots)`), for a conversation ending in a
    user or tool message: Ollama's collate (system messages joined), then the pieces."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    tools = tools if tools and slots.tools_error is None else None
    key = ("s" if system else "") + ("t" if tools else "")
    out = [slots.bos] if keep_bos else []
    for piece in slots.heads[key]:
        if piece == SYSTEM:
            out.append(system)
        elif piece == TOOLS:
            out.append(slots.tool_sep.join(tool_json(t) for t in tools or []))
        elif piece == DATE:
            out.append(datetime.date.today().strftime("%Y-%m-%d"))
        else:
            out.append(piece)
    rest = [m for m in messages if m["role"] != "system"]
    thinking = think if is_think_set else slots.default_on
    off = slots.switch and not thinking
    prev = "start"
    tooled = slots.tools_error is None
    for m in rest:
        role = m["role"]
        if role == "tool" and not tooled:  # the TEMPLATE has no tool branch then: nothing is written
            prev = role
            continue
        if role == "assistant" and m.get("tool_calls") and tooled:
            out.append(slots.trans.get(f"{prev}>assistant", ""))
            c = slots.call
            if m.get("thinking"):
                out += [c["LK"], m["thinking"], c["MK"]] if "LK" in c else [c["DK"]]
            else:
                out.append(c["EK"])
            for j, call in enumerate(m["tool_calls"]):
                out += [c["NEXT"] if j else "", call["function"]["name"]]
                arguments = call["function"]["arguments"]
                if "P2" in c:
                    out += [c["P2"], args_json(arguments)]
                    continue
                for i, key in enumerate(sorted(arguments)):
                    value = arguments[key]
                    out += [c["KS"] if i else c["KA"], key, c["KB"], value if isinstance(value, str) else _json(value)]
            prev = "call"
            continue
        if role != "user" or prev != "start":
            out.append(slots.trans.get(f"{prev}>{role}", ""))
        if role == "assistant":
            if m.get("thinking"):
                out += [slots.answer["L"], m["thinking"], slots.answer["M"]] if "L" in slots.answer else [slots.answer["D"]]
            else:
                out.append(slots.answer["E"])
        out.append(m["content"])
        if role == "user" and off:
            out.append(slots.user_off)
        prev = role
    mode = "off" if off else "on"
    out.append(slots.trans.get(f"{prev}>gen:{mode}", ""))
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# the Go TEMPLATE


def _lit(text: str) -> str:
    """Literal text in a Go template: raw where it has no braces (so Ollama finds the think tags in text
    nodes), else a quoted string action."""
    if not text:
        return ""
    if "{" in text or "}" in text:
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


_GO_ARGS = ('{{ "{" }}{{ $f := true }}{{ range $k, $v := .Function.Arguments }}{{ if not $f }}, {{ end }}{{ $f = false }}'
            '{{ json $k }}: {{ json $v }}{{ end }}{{ "}" }}')
_GO_TOOL = ('{{ "{" }}"type": {{ json .Type }}, "function": {{ "{" }}"name": {{ json .Function.Name }}'
            '{{ if .Function.Description }}, "description": {{ json .Function.Description }}{{ end }}'
            ', "parameters": {{ "{" }}"type": {{ json .Function.Parameters.Type }}, "properties": {{ "{" }}'
            '{{ $f := true }}{{ range $k, $v := .Function.Parameters.Properties }}{{ if not $f }}, {{ end }}{{ $f = false }}'
            '{{ json $k }}: {{ "{" }}"type": {{ json $v.Type }}{{ if $v.Description }}, "description": {{ json $v.Description }}'
            '{{ end }}{{ "}" }}{{ end }}{{ "}" }}{{ if .Function.Parameters.Required }}, "required": ['
            '{{ range $j, $r := .Function.Parameters.Required }}{{ if $j }}, {{ end }}{{ json $r }}{{ end }}]{{ end }}'
            '{{ "}}}" }}')


def _head(slots: Slots, key: str) -> str:
    out = []
    for piece in slots.heads[key]:
        if piece == SYSTEM:
            out.append("{{ .System }}")
        elif piece == TOOLS:
            out.append("{{ range $k, $t := .Tools }}{{ if $k }}" + _lit(slots.tool_sep) + "{{ end }}" + _GO_TOOL + "{{ end }}")
        elif piece == DATE:
            out.append("{{ currentDate }}")
        else:
            out.append(_lit(piece))
    return "".join(out)


def _by_prev(slots: Slots, role: str) -> str:
    branches = [(prev, slots.trans[f"{prev}>{role}"]) for prev in ("user", "assistant", "call", "tool")
                if slots.trans.get(f"{prev}>{role}")]
    out = ""
    for k, (prev, text) in enumerate(branches):
        out += ("{{ if" if k == 0 else "{{ else if") + f' eq $prev "{prev}" }}}}' + _lit(text)
    return out + ("{{ end }}" if branches else "")


def template_text(slots: Slots, keep_bos: bool = False, declare_tags: bool = True) -> str:
    """The Go TEMPLATE that renders what `render` does (Ollama's fields: .System, .Tools, .Messages with .Role,
    .Content, .Thinking, .ToolCalls; .Think, .IsThinkSet)."""
    tools = slots.tools_error is None
    head = ("{{ if and .System .Tools }}" + _head(slots, "st") + "{{ else if .System }}" + _head(slots, "s")
            + "{{ else if .Tools }}" + _head(slots, "t") + "{{ else }}" + _head(slots, "") + "{{ end }}") if tools else \
        ("{{ if .System }}" + _head(slots, "s") + "{{ else }}" + _head(slots, "") + "{{ end }}")
    a = slots.answer
    reasoning = (_lit(a["L"]) + "{{ .Thinking }}" + _lit(a["M"])) if "L" in a else _lit(a["D"])
    answer = "{{ if .Thinking }}" + reasoning + "{{ else }}" + _lit(a["E"]) + "{{ end }}{{ .Content }}"
    if tools:
        c = slots.call
        closer = slots.markup[1] if slots.markup else None
        mk = c.get("MK", "")
        cut = mk.index(closer) + len(closer) if closer and closer in mk else 0
        while cut and mk[cut:cut + 1] == "\n":
            cut += 1
        # the block alone in its own `if` (text, .Thinking, text): Ollama's thinking.InferTags reads the tags there
        if "LK" in c:
            lead = ("{{ if .Thinking }}" + _lit(c["LK"]) + "{{ .Thinking }}" + _lit(c["MK"][:cut]) + "{{ end }}"
                    + "{{ if .Thinking }}" + _lit(c["MK"][cut:]) + "{{ else }}" + _lit(c["EK"]) + "{{ end }}")
        else:
            lead = "{{ if .Thinking }}" + _lit(c["DK"]) + "{{ else }}" + _lit(c["EK"]) + "{{ end }}"
        if "P2" in c:
            arguments = _lit(c["P2"]) + _GO_ARGS
        else:  # a string value as text, others through `json` (printf "%T" tells them apart)
            arguments = ('{{ $f := true }}{{ range $k, $v := .Function.Arguments }}{{ if $f }}' + _lit(c["KA"])
                         + "{{ else }}" + _lit(c["KS"]) + "{{ end }}{{ $f = false }}{{ $k }}" + _lit(c["KB"])
                         + '{{ if eq (printf "%T" $v) "string" }}{{ $v }}{{ else }}{{ json $v }}{{ end }}{{ end }}')
        calls = (lead + "{{ range $j, $c := .ToolCalls }}{{ if $j }}" + _lit(c["NEXT"]) + "{{ end }}{{ .Function.Name }}"
                 + arguments + "{{ end }}")
        assistant = ('{{ else if eq .Role "assistant" }}' + _by_prev(slots, "assistant")
                     + "{{ if .ToolCalls }}" + calls + '{{ $role = "call" }}{{ else }}' + answer + "{{ end }}"
                     + '{{ else if eq .Role "tool" }}' + _by_prev(slots, "tool") + "{{ .Content }}")
    else:
        assistant = '{{ else if eq .Role "assistant" }}' + _by_prev(slots, "assistant") + answer
    body = ('{{ $prev := "start" }}{{ range $i, $m := .Messages }}{{ if ne .Role "system" }}{{ $role := .Role }}'
            '{{ if eq .Role "user" }}' + _by_prev(slots, "user") + "{{ .Content }}"
            + ("{{ if $off }}" + _lit(slots.user_off) + "{{ end }}" if slots.user_off else "") + assistant
            + "{{ end }}{{ $prev = $role }}{{ end }}{{ end }}")

    def gen(mode: str) -> str:
        return _by_gen(slots, mode)

    if slots.switch:
        default = gen("on" if slots.default_on else "off")
        tail = "{{ if $.IsThinkSet }}{{ if $.Think }}" + gen("on") + "{{ else }}" + gen("off") + "{{ end }}{{ else }}" \
            + default + "{{ end }}"
    else:
        tail = gen("on")
    # $off: thinking off for this request (`--think=false`, or the template's default where none is set)
    off = ("{{ $off := " + ("false" if slots.default_on else "true") + " }}{{ if $.IsThinkSet }}{{ $off = not $.Think }}{{ end }}"
           if slots.user_off else "")
    return (_lit(slots.bos) if keep_bos else "") + off + head + body + tail + (_declare(slots.markup) if declare_tags else "")


def _declare(markup: Optional[tuple[str, str]]) -> str:
    """A block that never renders and names the reasoning tags to Ollama (thinking/template.go InferTags: the
    text around `.Thinking` inside a range over .Messages), where no rendered block shows them (history
    reasoning dropped): Ollama then splits the reasoning, also after a prompt that opens the block."""
    if not markup or any(ch in "{}" for ch in "".join(markup)):
        return ""
    return "{{ range .Messages }}{{ if and false .Thinking }}" + markup[0] + "{{ .Thinking }}" + markup[1] + "{{ end }}{{ end }}"


def _by_gen(slots: Slots, mode: str) -> str:
    branches = [(prev, slots.trans[f"{prev}>gen:{mode}"]) for prev in ("user", "tool") if slots.trans.get(f"{prev}>gen:{mode}")]
    out = ""
    for k, (prev, text) in enumerate(branches):
        out += ("{{ if" if k == 0 else "{{ else if") + f' eq $prev "{prev}" }}}}' + _lit(text)
    return out + ("{{ end }}" if branches else "")
