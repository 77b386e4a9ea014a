"""Preference pairs (DPO, ORPO / SimPO, RM) and KTO samples encoded in one thinking mode, on one prompt.

LF's pairwise processor encodes chosen and rejected separately and keeps the chosen side's prompt ids
for both; its feedback processor (KTO) encodes the KL response the same way. With a hybrid thinking
template and `enable_thinking: null`, each side then picks its own mode: a side without reasoning puts
the empty think block into *its* prompt (Qwen3 nothink), so the other side is trained after a prompt
it was never rendered with (`<think>\\n\\n</think>\\n\\n<think>...`). Here a pair has one mode:

- `enable_thinking: true / false`: that mode, as in SFT;
- `null`: thinking when either side reasons; the side without reasoning takes that mode's empty form
  (Qwen3: `<think>\\n\\n</think>\\n\\n` in the response; R1: the open block closed at once).

Both sides are encoded in that mode by the run's template (native or named, LF's own included) and
their prompt ids must be equal; a pair where they are not, or where the template leaves a side
untrained (native: a turn it cannot reproduce as generated), is a `PairProblem` for `on_malformed`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Optional

logger = logging.getLogger("lf_thinkplugin")


class PairProblem(ValueError):
    """A pair that cannot be trained on one shared prompt (the reason is the message)."""


def reasons(template: Any, tokenizer: Any, content: str) -> bool:
    """Whether one response carries reasoning, read as the run's template reads it."""
    encoder = getattr(template, "encoder", None)
    if callable(encoder):  # native: the model's own markup (and the data's `<think>` convention)
        return bool(encoder(tokenizer).thinking([{"role": "assistant", "content": content}], None))
    words = [w.strip() for w in (getattr(template, "thought_words", None) or ()) if w and w.strip()]
    return any(w in content for w in words)


def pair_mode(template: Any, tokenizer: Any, contents: Sequence[str]) -> bool:
    """The pair's thinking mode: LF's `enable_thinking` where set, else whether any side reasons."""
    forced = getattr(template, "enable_thinking", True)
    if forced is not None:
        return bool(forced)
    return any(reasons(template, tokenizer, c) for c in contents)


@contextlib.contextmanager
def thinking_mode(template: Any, mode: bool) -> Iterator[None]:
    """The template encodes in `mode` (its `enable_thinking`) for the duration; restored after."""
    saved = template.enable_thinking
    template.enable_thinking = mode
    try:
        yield
    finally:
        template.enable_thinking = saved


def encode_sides(template: Any, tokenizer: Any, sides: Sequence[list[dict]], system: Optional[str],
                 tools: Optional[str], mode: bool, names: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """(shared prompt ids, each side's response ids), every side encoded in `mode`; PairProblem where the
    prompts differ or a side has no trained response."""
    prompts, responses = [], []
    with thinking_mode(template, mode):
        for messages in sides:
            prompt_ids, response_ids = template.encode_oneturn(tokenizer, messages, system, tools)
            prompts.append(prompt_ids)
            responses.append(response_ids)
    for name, response in zip(names, responses, strict=True):
        if not response:
            raise PairProblem(f"the template renders no trained response for the {name} side in "
                              f"{'thinking' if mode else 'non-thinking'} mode (it cannot reproduce that turn as generated)")
    for name, prompt in zip(names[1:], prompts[1:], strict=True):
        if prompt != prompts[0]:
            at = next((i for i, (a, b) in enumerate(zip(prompt, prompts[0])) if a != b), min(len(prompt), len(prompts[0])))
            raise PairProblem(
                f"the {names[0]} and {name} sides render different prompts in {'thinking' if mode else 'non-thinking'} "
                f"mode (first difference at token {at}: {tokenizer.decode(prompts[0][at:at + 8])!r} vs "
                f"{tokenizer.decode(prompt[at:at + 8])!r})")
    return prompts[0], responses


class PairReport:
    """Pairs dropped under `on_malformed: warn / skip`, logged the first few times, then at powers of two."""

    def __init__(self, on_malformed: str) -> None:
        self.on_malformed = on_malformed
        self.dropped = 0

    def drop(self, problem: PairProblem, prompt: Sequence[dict]) -> None:
        self.dropped += 1
        count = self.dropped
        if self.on_malformed == "warn" and (count <= 3 or count & (count - 1) == 0):
            first = next((m["content"] for m in prompt if m.get("role") == "user"), "")[:60]
            logger.warning("[lf_thinkplugin] preference sample (first user message %r) dropped: %s (%d dropped so far; "
                           "`thinkplugin.on_malformed: error` stops at the first)", first, problem, count)


def pair_stats(aligned: Sequence[Any], template: Any, tokenizer: Any, stage: str, kept: int) -> str:
    """`lf-think check`'s line on preference data: pairs (KTO: samples) per thinking mode, and how many mix a
    reasoned side with a direct answer (LF alone would encode those two sides after two different prompts)."""
    if not aligned:
        return f"preference data: {kept} tokenized samples read from `tokenized_path` (the pairs' text is not in it)"
    total = thinking = mixed = 0
    for dataset in aligned:
        for response in dataset["_response"]:
            contents = [r["content"] for r in response[:2] if r["content"]] if stage == "kto" else \
                [r["content"] for r in response[:2]]
            total += 1
            thinking += pair_mode(template, tokenizer, contents)
            if stage != "kto" and len({reasons(template, tokenizer, c) for c in contents}) > 1:
                mixed += 1
    what = "samples" if stage == "kto" else "pairs"
    line = (f"preference data: {total} {what}; {thinking} in thinking mode, {total - thinking} in non-thinking mode "
            f"(enable_thinking: {getattr(template, 'enable_thinking', None)})")
    if stage != "kto":
        line += f"; {mixed} pair(s) mix a reasoned side and a direct answer"
        if mixed and getattr(template, "enable_thinking", None) is None:
            line += " (LF alone would encode their sides after two different prompts; here both share the pair's prompt)"
    if kept < total:
        line += f"; {total - kept} dropped (invalid, or no shared prompt: named in the warnings above)"
    return line
