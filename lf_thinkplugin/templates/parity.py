"""Token-level parity between LF's training encoder and a tokenizer's own chat template.

Parity, for every assistant turn a template trains: the training sequence up to the turn's response
equals `tokenizer.apply_chat_template(messages_before_the_turn, add_generation_prompt=True)`, and the
response equals what the model should generate after that prompt: the official full rendering minus
that prompt, where the full rendering extends the prompt (Qwen3, Qwen2.5, DeepSeek-V3). Where the
generation prompt opens a think block the full rendering never shows (DeepSeek-R1: the prompt ends
`<think>\\n` and rendered turns keep only the answer) the response is the model's output format:
`{reasoning}\\n</think>\\n\\n{answer}` then the rendered turn's end. Assistant turns a template does
not train (history) are covered by the prompt check of the next trained turn.

The LF side is LF's real SFT path: a copy of the registered template, set up as
`get_template_and_fix_tokenizer` sets it up (enable_thinking, preserve_thinking, fix_special_tokens),
encoded by `SupervisedDatasetProcessor.preprocess_dataset`. Trained turns are the runs of labels that
are not IGNORE_INDEX, matched to the last assistant turns.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .probes import PROBES, Probe
from .reasoning import has_markup, strip_reasoning

THINK_OPENER = "<think>\n"
CONTEXT_TOKENS = 12


class TokenizerView:
    """The tokenizer as LF's `fix_special_tokens` would leave it, without changing or copying it.

    LF's fix replaces the EOS, sets a pad token and adds stop words as special tokens: it mutates the
    tokenizer, and a real copy of a 150k-token tokenizer costs about a second, too slow for a scan of
    every registered template. The view records those changes: tokens it adds split text exactly where
    the tokenizer's added-token matcher would, with the ids the tokenizer would give them (tests compare
    views with real deep copies).
    """

    def __init__(self, tokenizer: Any, vocab: dict[str, int], added: set[str], size: int) -> None:
        self._tok = tokenizer
        self._vocab = vocab  # vocabulary, added tokens and len(tokenizer): computed once per scan (slow calls)
        self._added = added
        self._size = size
        self._eos = tokenizer.eos_token
        self._pad = tokenizer.pad_token
        self._atomic: dict[str, int] = {}  # tokens the fix made unsplittable -> id
        self._split: re.Pattern | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __len__(self) -> int:
        return self._size + sum(1 for t in self._atomic if t not in self._vocab)

    @property
    def eos_token(self) -> str | None:
        return self._eos

    @property
    def eos_token_id(self) -> int | None:
        return None if self._eos is None else self.convert_tokens_to_ids(self._eos)

    @property
    def pad_token(self) -> str | None:
        return self._pad

    @pad_token.setter
    def pad_token(self, value: str) -> None:
        self._pad = value

    @property
    def pad_token_id(self) -> int | None:
        return None if self._pad is None else self.convert_tokens_to_ids(self._pad)

    def add_special_tokens(self, special_tokens_dict: dict[str, Any], **_: Any) -> int:
        added = 0
        for key, value in special_tokens_dict.items():
            for token in map(str, value if isinstance(value, (list, tuple)) else [value]):
                if token in self._added or token in self._atomic:
                    continue
                if token not in self._vocab:
                    added += 1
                self._atomic[token] = self._vocab.get(token, len(self))
            if key == "eos_token":
                self._eos = str(value)
            elif key == "pad_token":
                self._pad = str(value)
        if self._atomic:
            alternatives = sorted(self._atomic, key=len, reverse=True)
            self._split = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        return added

    def convert_tokens_to_ids(self, token: Any) -> Any:
        if isinstance(token, str) and token in self._atomic:
            return self._atomic[token]
        return self._tok.convert_tokens_to_ids(token)

    def convert_ids_to_tokens(self, index: int) -> str:
        for token, token_id in self._atomic.items():
            if token_id == index:
                return token
        return self._tok.convert_ids_to_tokens(index)

    def decode(self, ids: list[int], **kwargs: Any) -> str:
        """Text of ids, tokens only the view knows (LF would add them) included."""
        if not any(i >= self._size for i in ids):
            return self._tok.decode(ids, **kwargs)
        return "".join(self.convert_ids_to_tokens(i) if i >= self._size else self._tok.decode([i], **kwargs) for i in ids)

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        if self._split is None:
            return self._tok.encode(text, add_special_tokens=add_special_tokens, **kwargs)
        if add_special_tokens:
            raise NotImplementedError("TokenizerView encodes without special tokens only (as LF's templates do)")
        ids: list[int] = []
        for piece in self._split.split(text):
            if piece in self._atomic:
                ids.append(self._atomic[piece])
            elif piece:
                ids += self._tok.encode(piece, add_special_tokens=False, **kwargs)
        return ids


@dataclass
class Expected:
    """The official side of one assistant turn."""

    prompt_ids: list[int]
    response_ids: list[int] | None  # None: the official template says nothing about this response
    prompt_text: str
    response_text: str | None


@dataclass
class Divergence:
    turn: int  # 1-based assistant turn
    part: str  # "prompt" | "response" | "turns"
    position: int  # token index within the part
    expected_id: int | None = None
    got_id: int | None = None
    expected_token: str = ""
    got_token: str = ""
    expected_context: str = ""
    got_context: str = ""
    message: str = ""

    def summary(self) -> str:
        if self.part == "turns":
            return self.message
        def side(token: str, token_id: int | None) -> str:
            return "ends here" if token_id is None else f"{token!r} ({token_id})"

        return (
            f"turn {self.turn} {self.part} token {self.position}: official {side(self.expected_token, self.expected_id)}, "
            f"template {side(self.got_token, self.got_id)}"
        )


@dataclass
class ProbeResult:
    probe: str
    ok: bool
    turns: int
    trained_turns: list[int] = field(default_factory=list)  # 1-based
    divergence: Divergence | None = None
    error: str | None = None

    def summary(self) -> str:
        if self.ok:
            return "ok"
        return self.error or (self.divergence.summary() if self.divergence else "mismatch")


@dataclass
class TemplateResult:
    template: str
    plugin: bool
    probes: list[ProbeResult]
    total: int  # probes in the suite (a scan stops at the first failure)

    @property
    def ok(self) -> bool:
        return len(self.probes) == self.total and all(p.ok for p in self.probes)

    @property
    def passed(self) -> int:
        return sum(p.ok for p in self.probes)

    @property
    def first_failure(self) -> ProbeResult | None:
        return next((p for p in self.probes if not p.ok), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "plugin": self.plugin,
            "parity": self.ok,
            "probes_passed": self.passed,
            "probes_run": len(self.probes),
            "probes_total": self.total,
            "probes": [asdict(p) for p in self.probes],
        }


class OfficialReference:
    """What the tokenizer's own chat template renders for each probe (cached per probe)."""

    def __init__(self, tokenizer: Any, enable_thinking: bool | None = True, settings: dict | None = None) -> None:
        self.tokenizer = tokenizer
        self.enable_thinking = enable_thinking
        self.settings = settings or {}  # the template's other keyword arguments (templates/settings.py)
        self._cache: dict[str, list[Expected]] = {}
        self._native: NativeReference | None = None

    def _render(self, conversation: list[dict[str, str]], generation: bool, thinking: bool) -> tuple[str, list[int]]:
        tok = self.tokenizer
        kw = {**self.settings, "enable_thinking": thinking}
        text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation, **kw)
        ids = tok.apply_chat_template(
            conversation, tokenize=True, return_dict=True, add_generation_prompt=generation, **kw
        )["input_ids"]
        return text, list(ids)

    def turns(self, probe: Probe) -> list[Expected]:
        if probe.name not in self._cache:
            self._cache[probe.name] = self._turns(probe)
        return self._cache[probe.name]

    def _turns(self, probe: Probe) -> list[Expected]:
        if probe.tools or any(m["role"] in ("function", "observation") for m in probe.messages):
            return self._tool_turns(probe)
        messages = [dict(m) for m in probe.messages]
        if self.enable_thinking is False:  # a non-thinking run drops the data's reasoning everywhere
            messages = [dict(m, content=strip_reasoning(m["content"])) if m["role"] == "assistant" else m for m in messages]
        head = [{"role": "system", "content": probe.system}] if probe.system else []
        expected = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            original = probe.messages[i]["content"]
            thinking = has_markup(original) if self.enable_thinking is None else bool(self.enable_thinking)
            prompt_text, prompt_ids = self._render(head + messages[:i], True, thinking)
            full_text, _ = self._render(head + messages[: i + 1], False, thinking)
            response_text = expected_generation(prompt_text, full_text, original if thinking else "")
            response_ids = None if response_text is None else self.tokenizer.encode(response_text, add_special_tokens=False)
            expected.append(Expected(prompt_ids, response_ids, prompt_text, response_text))
        return expected

    def _tool_turns(self, probe: Probe) -> list[Expected]:
        """Tool-call probes: the conversation as the template's own messages (tool_calls, tool role, tools)."""
        if self._native is None:
            self._native = NativeReference(self.tokenizer, self.enable_thinking, self.settings)
        return self._native.turns(probe)


class NativeReference:
    """The official side for `template: native`: probes mapped to the template's own message fields and switch.

    Each assistant turn's expectation: ids(apply_chat_template(turns before, add_generation_prompt=True)) and
    ids(the rest of the rendering with the turn last), or DeepSeek's output rule where the template cannot
    render the turn's reasoning (native.py). A trained span must match the expectation of some turn.
    """

    def __init__(self, tokenizer: Any, enable_thinking: bool | None = True, settings: dict | None = None) -> None:
        from .native import NativeEncoder

        self.tokenizer = tokenizer
        self.enable_thinking = enable_thinking
        self.settings = settings or {}
        self.encoder = NativeEncoder(tokenizer)
        self._cache: dict[str, list[Expected]] = {}

    def turns(self, probe: Probe) -> list[Expected]:
        if probe.name not in self._cache:
            self._cache[probe.name] = self._turns(probe)
        return self._cache[probe.name]

    def _turns(self, probe: Probe) -> list[Expected]:
        from .native import render, to_messages
        from .reasoning import split_reasoning

        from .native import _tools

        enc, tok = self.encoder, self.tokenizer
        tools = _tools(probe.tools)
        lf = [dict(m) for m in probe.messages]
        thinking = enc.thinking(lf, self.enable_thinking)
        kw = {**self.settings, **enc.kwargs(thinking)}
        messages = to_messages(lf, probe.system, enc.format, thinking)
        offset = len(messages) - len(lf)
        expected = []
        for i, message in enumerate(lf):
            if message["role"] not in ("assistant", "function"):
                continue
            prompt = render(tok, messages[: offset + i], True, tools, enc.chat_template, **kw)
            full = render(tok, messages[: offset + i + 1], False, tools, enc.chat_template, **kw)
            rest = full[len(prompt):] if full.startswith(prompt) else None
            if rest is None and i == len(lf) - 1:  # gpt-oss / Kimi: history reasoning dropped under the last turn
                rest = enc._last_turn(prompt, full, render(tok, messages[: offset + i], False, tools, enc.chat_template, **kw))
            reasoning, answer = split_reasoning(message["content"])
            dropped = thinking and bool((reasoning or "").strip()) and (rest is None or reasoning.strip() not in rest)
            if rest is None or dropped:
                ruled = enc._rule(messages, offset, i, message, thinking, prompt, tools, kw)
                rest = ruled if ruled is not None else rest
            ids = tok.encode(prompt, add_special_tokens=False)
            expected.append(Expected(ids, None if rest is None else tok.encode(rest, add_special_tokens=False), prompt, rest))
        return expected


def compare_any(tok: Any, probe: Probe, official: list[Expected], input_ids: list[int], labels: list[int],
                stop_ids: set[int]) -> ProbeResult:
    """Every trained span is some turn's expectation (prompt and response); the last turn is trained."""
    runs = _label_runs(labels)
    result = ProbeResult(probe=probe.name, ok=False, turns=len(official))
    for start, end in runs:
        turn = next((k for k, e in enumerate(official, start=1) if e.prompt_ids == input_ids[:start]), None)
        if turn is None:
            result.divergence = Divergence(turn=0, part="prompt", position=start,
                                           message=f"the span at token {start} follows no turn's generation prompt")
            return result
        expected, got = official[turn - 1].response_ids or [], labels[start:end]
        # a stop id the template writes after the turn (GLM's `<|user|>`, an EOS for an open last turn) is trained too
        if got != expected and not (got[: len(expected)] == expected and set(got[len(expected):]) <= stop_ids):
            at = first_difference(expected, got) or 0
            result.divergence = _divergence(tok, turn, "response", expected, got, at)
            return result
        result.trained_turns.append(turn)
    if len(official) not in result.trained_turns:
        result.divergence = Divergence(turn=len(official), part="turns", position=0, message="the last turn is not trained")
        return result
    result.ok = True
    return result


def expected_generation(prompt_text: str, full_text: str, content: str) -> str | None:
    """What the model should generate after `prompt_text`, given the official rendering `full_text`."""
    if full_text.startswith(prompt_text):
        return full_text[len(prompt_text) :]
    head = prompt_text[: -len(THINK_OPENER)]
    if prompt_text.endswith(THINK_OPENER) and full_text.startswith(head):
        # R1-style: the prompt opened the think block; the rendered turn lost it with the reasoning.
        from .reasoning import split_reasoning

        reasoning = (split_reasoning(content)[0] or "").strip("\n")
        return reasoning + "\n</think>\n\n" + full_text[len(head) :].lstrip("\n")
    return None


class Encoder:
    """LF's SFT encoding of probes with one registered template, on a view of the tokenizer."""

    def __init__(self, name: str, view: TokenizerView, enable_thinking: bool | None, mask_history: bool = False,
                 settings: dict | None = None) -> None:
        from llamafactory.data.processor import SupervisedDatasetProcessor
        from llamafactory.data.template import TEMPLATES, ReasoningTemplate
        from llamafactory.hparams import DataArguments

        self.view = view
        self.settings = settings if name == "native" else None  # only native reads them (carried in `_system`)
        template = copy.deepcopy(TEMPLATES[name])  # LF's registered objects stay untouched
        if isinstance(template, ReasoningTemplate):  # what get_template_and_fix_tokenizer sets from data_args
            template.enable_thinking = enable_thinking
            template.preserve_thinking = False
        template.fix_special_tokens(self.view)
        self.template = template
        data_args = DataArguments(template=name, cutoff_len=1 << 30, enable_thinking=enable_thinking, mask_history=mask_history)
        self.processor = SupervisedDatasetProcessor(template=template, tokenizer=self.view, processor=None, data_args=data_args)

    def encode(self, probe: Probe) -> tuple[list[int], list[int]]:
        from .settings import embed

        messages = [dict(m) for m in probe.messages]
        batch = {
            "_prompt": [messages[:-1]],
            "_response": [messages[-1:]],
            "_system": [embed(probe.system, self.settings) if self.settings else probe.system or ""],
            "_tools": [probe.tools or ""],
            "_images": [None],
            "_videos": [None],
            "_audios": [None],
        }
        out = self.processor.preprocess_dataset(batch)
        if not out["input_ids"]:
            raise ValueError("LF dropped the example")
        return out["input_ids"][0], out["labels"][0]


def _label_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    from llamafactory.extras.constants import IGNORE_INDEX

    runs, start = [], None
    for i, label in enumerate(list(labels) + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def first_difference(expected: Sequence[Any], got: Sequence[Any]) -> int | None:
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return i
    return None if len(expected) == len(got) else min(len(expected), len(got))


def _token(tok: Any, token_id: int | None) -> str:
    if token_id is None:
        return "<end>"
    return tok.decode([token_id])


def _context(tok: Any, ids: Sequence[int], at: int) -> str:
    def text(part: Sequence[int]) -> str:
        return "".join(_token(tok, i) for i in part)

    return text(ids[max(0, at - CONTEXT_TOKENS) : at]) + "▶" + text(ids[at : at + CONTEXT_TOKENS])


def _divergence(tok: Any, turn: int, part: str, expected: Sequence[int], got: Sequence[int], at: int) -> Divergence:
    exp_id = expected[at] if at < len(expected) else None
    got_id = got[at] if at < len(got) else None
    return Divergence(
        turn=turn,
        part=part,
        position=at,
        expected_id=exp_id,
        got_id=got_id,
        expected_token=_token(tok, exp_id),
        got_token=_token(tok, got_id),
        expected_context=_context(tok, expected, at),
        got_context=_context(tok, got, at),
    )


def compare(tok: Any, probe: Probe, official: list[Expected], input_ids: list[int], labels: list[int]) -> ProbeResult:
    runs = _label_runs(labels)
    result = ProbeResult(probe=probe.name, ok=False, turns=len(official))
    if not runs or len(runs) > len(official):
        result.divergence = Divergence(
            turn=0, part="turns", position=0, message=f"trains {len(runs)} spans for {len(official)} assistant turns"
        )
        return result
    first = len(official) - len(runs)
    result.trained_turns = [first + j + 1 for j in range(len(runs))]
    for turn, (start, end) in enumerate(runs, start=first + 1):
        expected = official[turn - 1]
        prompt = input_ids[:start]
        at = first_difference(expected.prompt_ids, prompt)
        if at is not None:
            result.divergence = _divergence(tok, turn, "prompt", expected.prompt_ids, prompt, at)
            return result
        if expected.response_ids is None:
            result.error = f"turn {turn}: the official template's rendering does not extend its generation prompt"
            return result
        response = labels[start:end]
        at = first_difference(expected.response_ids, response)
        if at is not None:
            result.divergence = _divergence(tok, turn, "response", expected.response_ids, response, at)
            return result
    if runs[-1][1] != len(input_ids):
        tail = input_ids[runs[-1][1] :]
        result.divergence = _divergence(tok, len(official), "response", [], tail, 0)
        return result
    result.ok = True
    return result


@contextlib.contextmanager
def quiet_lf() -> Iterator[None]:
    """LF logs a line per template set-up (`Add <x> to stop words`, ...): silence it during a scan."""
    lf_logger = logging.getLogger("llamafactory")
    level = lf_logger.level
    lf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lf_logger.setLevel(level)


class Scanner:
    """Parity of registered templates against one tokenizer's chat template, over the probe suite."""

    def __init__(
        self,
        tokenizer: Any,
        enable_thinking: bool | None = True,
        probes: Sequence[Probe] = PROBES,
        mask_history: bool = False,
        facts: tuple[dict[str, int], set[str], int] | None = None,
        settings: dict | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.settings = settings or {}  # template settings of the run (templates/settings.py), checked by the caller
        self.enable_thinking = enable_thinking  # LF's data arguments of the run the scan stands for
        self.mask_history = mask_history
        self.probes = tuple(probes)
        self.official = OfficialReference(tokenizer, enable_thinking, self.settings)
        self._native: NativeReference | None = None
        # vocabulary, added tokens, len(tokenizer): about 0.1 s on a 150k vocabulary under transformers 5,
        # so scanners over the same vocabulary (a copy with another chat_template) share them
        self.facts = facts or (tokenizer.get_vocab(), set(tokenizer.get_added_vocab()), len(tokenizer))
        self._vocab, self._added, self._size = self.facts

    def view(self) -> TokenizerView:
        return TokenizerView(self.tokenizer, self._vocab, self._added, self._size)

    def check(self, name: str, stop_at_first_failure: bool = False) -> TemplateResult:
        from . import NAMES

        results: list[ProbeResult] = []
        with quiet_lf():
            try:
                encoder = Encoder(name, self.view(), self.enable_thinking, self.mask_history, self.settings)
            except Exception as err:  # noqa: BLE001  (any of LF's templates may fail on a foreign tokenizer: no parity)
                results.append(ProbeResult(self.probes[0].name, False, 0, error=f"LF cannot set up the template: {err}"))
                return TemplateResult(name, name in NAMES, results, len(self.probes))
            for probe in self.probes:
                try:
                    input_ids, labels = encoder.encode(probe)
                    if name == "native":
                        if self._native is None:
                            self._native = NativeReference(self.tokenizer, self.enable_thinking, self.settings)
                        result = compare_any(encoder.view, probe, self._native.turns(probe), input_ids, labels,
                                             encoder.template.encoder(encoder.view).stop_ids)
                    else:
                        result = compare(encoder.view, probe, self.official.turns(probe), input_ids, labels)
                except Exception as err:  # noqa: BLE001  (same: the failure is the probe's result)
                    result = ProbeResult(probe.name, False, 0, error=f"{type(err).__name__}: {err}")
                results.append(result)
                if stop_at_first_failure and not result.ok:
                    break
        return TemplateResult(name, name in NAMES, results, len(self.probes))

    def scan(self, names: Sequence[str] | None = None) -> list[TemplateResult]:
        from llamafactory.data.template import TEMPLATES

        return [self.check(name, stop_at_first_failure=True) for name in (names or list(TEMPLATES))]
