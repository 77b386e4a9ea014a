"""Serving parity for `template: native`: each engine's prompt for every trained turn of the probes, token for
token against the training encoding (`NativeEncoder`, what LF's SFT path trains for `native`).

A trained turn is checked where the engine renders the conversation before it: the prompt ids must equal the
training ids before the turn, and the turn's trained ids must end in a stop the engine stops at. The
renderers are passed in (`Renderer`: conversation -> prompt text), so the same loop checks the Python mirror
of the Ollama TEMPLATE at export time and, in the tests, the Go TEMPLATE run by Go's text/template and
LMDeploy's own chat-template classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..templates.probes import SCAN_PROBES, Probe


@dataclass(frozen=True)
class Turn:
    """One trained turn: the LF messages before it, the training ids before it, its trained ids, its mode."""

    probe: Probe
    index: int  # LF message index of the turn
    thinking: bool  # the sample's mode (LF's enable_thinking, per sample where null)
    prompt_ids: list[int]
    target_ids: list[int]

    @property
    def before(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.probe.messages[: self.index]]


@dataclass
class Parity:
    """Per engine: turns compared and passed, and the first failures."""

    compared: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    probes_ok: set[str] = field(default_factory=set)
    probes_failed: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.compared > 0 and self.passed == self.compared

    def figure(self, total_probes: int) -> str:
        return f"{len(self.probes_ok - self.probes_failed)}/{total_probes} probes ({self.passed}/{self.compared} turns)"


def trained_turns(encoder: Any, enable_thinking: Optional[bool], probes: Sequence[Probe] = SCAN_PROBES) -> list[Turn]:
    """The trained turns of each probe under LF's enable_thinking (True, False, None: per sample)."""
    out = []
    for probe in probes:
        lf = [dict(m) for m in probe.messages]
        try:
            encoded = encoder.encode(lf, probe.system, probe.tools, enable_thinking)
        except Exception:  # noqa: BLE001  (a template that raises on a probe shape trains none of it: nothing to serve)
            continue
        untrained = {i for i, _ in encoded.untrained}
        responses = [i for i, m in enumerate(lf) if m["role"] in ("assistant", "function") and i not in untrained]
        thinking = encoder.thinking(lf, enable_thinking)
        for (start, end), index in zip(encoded.spans, responses):
            out.append(Turn(probe, index, thinking, encoded.ids[:start], encoded.ids[start:end]))
    return out


Renderer = Callable[[Turn], Optional[str]]  # the prompt text, or None: the engine cannot express the conversation


def check(turns: Sequence[Turn], render: Renderer, encode: Callable[[str], list[int]], stops: Sequence[int],
          why_not: Callable[[Turn], Optional[str]] = lambda t: None) -> Parity:
    """Compare `render`'s prompt ids with the training ids for each turn (`why_not`: a declared limit skips it)."""
    result = Parity()
    for turn in turns:
        name = f"{turn.probe.name}[{turn.index}]"
        if why_not(turn):
            result.failures.append(f"{name}: {why_not(turn)}")
            result.probes_failed.add(turn.probe.name)
            continue
        result.compared += 1
        text = render(turn)
        ids = encode(text) if text is not None else None
        stopped = not stops or any(t in stops for t in turn.target_ids[-2:])
        if ids == turn.prompt_ids and stopped:
            result.passed += 1
            result.probes_ok.add(turn.probe.name)
        else:
            result.probes_failed.add(turn.probe.name)
            at = next((k for k, (a, b) in enumerate(zip(ids or [], turn.prompt_ids)) if a != b), None)
            result.failures.append(f"{name}: " + ("no stop token ends the trained turn" if ids == turn.prompt_ids else
                                                  f"prompt differs at token {at} of {len(turn.prompt_ids)}"))
    return result


def ollama_render(slots: Any, fmt: Any, keep_bos: bool) -> Renderer:
    """The Python mirror of the Modelfile TEMPLATE for a turn: Ollama's fields, a thinking request sets `think`."""
    from . import slots as slots_mod

    def render(turn: Turn) -> str:
        messages = ([{"role": "system", "content": turn.probe.system}] if turn.probe.system else []) + \
            slots_mod.ollama_messages(turn.before, fmt, turn.thinking)
        from ..templates.native import _tools

        return slots_mod.render(slots, messages, _tools(turn.probe.tools), think=turn.thinking, is_think_set=True,
                                keep_bos=keep_bos)

    return render


def ollama_why_not(slots: Any) -> Callable[[Turn], Optional[str]]:
    def why(turn: Turn) -> Optional[str]:
        if slots.tools_error and (turn.probe.tools or any(m["role"] == "function" for m in turn.before)):
            return f"tools: {slots.tools_error}"
        return None

    return why


def lmdeploy_json_why_not(slots: Any, adds_bos: bool, limits: Sequence[str]) -> Callable[[Turn], Optional[str]]:
    """Why `lmdeploy_chat_template.json` (serving/native.py lmdeploy_json, whose `limits` these are) cannot express
    a turn's conversation."""
    gen, hist = slots.trans["user>gen:on"], slots.trans["user>assistant"] + slots.answer["E"]
    bare_system = any(limit.startswith("system messages") for limit in limits)

    def why(turn: Turn) -> Optional[str]:
        before = turn.before
        if turn.probe.tools or any(m["role"] in ("function", "observation") for m in before):
            return "tool calls"
        if slots.bos and not adds_bos:
            return "BOS"
        if slots.switch and not turn.thinking:
            return "no thinking switch"
        if turn.probe.system and bare_system:
            return "system message"
        if any(m["role"] == "assistant" for m in before):
            if gen != hist:
                return "earlier answer (the generation prompt's opener)"
            if "L" in slots.answer:
                return "earlier reasoning (the JSON renders the answer a client sends)"
        return None

    return why


def lmdeploy_json_messages(turn: Turn, fmt: Any) -> list[dict[str, str]]:
    """The conversation an OpenAI-style client sends: earlier answers without their reasoning."""
    return [{"role": m["role"], "content": fmt.read(m["content"])[1] if m["role"] == "assistant" else m["content"]}
            for m in turn.before]
