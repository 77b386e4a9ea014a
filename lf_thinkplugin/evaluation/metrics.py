"""Does the model think as trained? Classify generated outputs of a reasoning model, and aggregate.

One output is the list of token ids generated after a prompt. `classify` reads it with the tokenizer
and the family's markup (`Markup`: think tags, whether the generation prompt already opens the think
block, the end-of-turn ids) and reports:

- `status`, the shape of the think block:
  think mode: `ok` (opened where the model must open it, closed, reasoning not blank), `empty` (closed,
  blank reasoning), `unclosed` (opened, never closed: cut at the token limit or the turn ended inside
  it), `missing` (no think block at all), `misplaced` (a tag where the format has none: text before
  `<think>`, a second block, `<think>` re-opened after a prompt that opened it, `</think>` without
  `<think>`);
  nothink mode: `ok` (no tag), `thinks_when_off` (a think tag although thinking is off);
- `tags_as_ids`: every think tag in the text was generated as its single token id, not spelled out
  in pieces (`<`, `think`, `>`), which id-based consumers (vLLM's streaming parser) miss;
- `end_of_turn`: an end-of-turn id was generated; `truncated`: none was, and the token limit was hit;
- reasoning and answer lengths in tokens;
- `parsers`: what vLLM's reasoning parsers would split the text into (`split_vllm`), and per parser
  whether the content came out empty or with reasoning leaked into it;
- answer accuracy against a reference (`match_answer`: exact, normalised, numeric).

`well_formed` = status `ok` + tags as single ids + end of turn emitted. `aggregate` gives the rates
per mode (think / nothink).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..templates.format import DATA_MARKUP

THINK, NOTHINK = "think", "nothink"
DATA = "data"  # a mode list of its own: each prompt in the mode its reference shows (`plan`)

# ---------------------------------------------------------------------------------------------------------------
# Family markup


@dataclass(frozen=True)
class Markup:
    """How a family writes reasoning. `prompt_opens_think`: the generation prompt ends inside an open think
    block (DeepSeek-R1 and its distills, QwQ, Qwen3-2507-Thinking: `...<think>\\n`), so the model only closes
    it. `stop_ids`: the ids that end a turn (generation config eos ids and the template's end of turn)."""

    open_tag: str = DATA_MARKUP[0]
    close_tag: str = DATA_MARKUP[1]
    prompt_opens_think: bool = False
    stop_ids: frozenset[int] = frozenset()
    parser: str = "qwen3"  # the vLLM reasoning parser the family is served with (`lf-think export` names it)
    answer_prefix: str = ""  # what the format writes between the closer and the answer (channel headers)
    end_tag: str = ""  # a turn-ending tag that is no stop id (it also closes the reasoning block): not answer text


def markup_for(tokenizer: Any, prompt_opens_think: bool, stop_ids: Iterable[int] = (), parser: str | None = None,
               open_tag: str = DATA_MARKUP[0], close_tag: str = DATA_MARKUP[1]) -> Markup:
    """Markup with the tokenizer's eos id among the stop ids; parser: deepseek_r1 where the prompt opens the
    block (vLLM's qwen3 parser of most releases needs both tags in the output), else qwen3."""
    stops = {int(i) for i in stop_ids}
    if getattr(tokenizer, "eos_token_id", None) is not None:
        stops.add(int(tokenizer.eos_token_id))
    return Markup(open_tag, close_tag, prompt_opens_think, frozenset(stops),
                  parser or ("deepseek_r1" if prompt_opens_think else "qwen3"))


def tag_ids(tokenizer: Any, tag: str) -> list[int]:
    """The tag's own ids (one for `<think>`; several for channel markup such as `<|channel|>analysis<|message|>`)."""
    return list(tokenizer.encode(tag, add_special_tokens=False))


def _find(body: Sequence[int], seq: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """First index of `seq` in body[start:end], or -1."""
    n, stop = len(seq), len(body) if end is None else end
    if n == 0:
        return -1
    for i in range(start, stop - n + 1):
        if body[i] == seq[0] and list(body[i:i + n]) == list(seq):
            return i
    return -1


def _occurrences(body: Sequence[int], seq: Sequence[int]) -> int:
    count, at = 0, _find(body, seq)
    while at >= 0:
        count, at = count + 1, _find(body, seq, at + len(seq))
    return count


# ---------------------------------------------------------------------------------------------------------------
# vLLM's reasoning parsers (non-streaming `extract_reasoning`), re-implemented on text. vLLM detokenizes with
# `skip_special_tokens=True` (SamplingParams' default) and without the stop token, so that is the text they get.


def _qwen3_both_tags(text: str, thinking: bool, start: str, end: str) -> tuple[str | None, str | None]:
    # vllm/reasoning/qwen3_reasoning_parser.py, Qwen3ReasoningParser.extract_reasoning (vLLM releases up to the
    # Qwen3.5 rewrite; e.g. commit 693e2a48): "Qwen3 has stricter requirements - it needs both start and end
    # tokens": `if start_token not in model_output or end_token not in model_output: return None, model_output`;
    # else the text after the first `<think>` is partitioned at the first `</think>`; `content or None`.
    if start not in text or end not in text:
        return None, text
    text = text.partition(start)[2]
    reasoning, _, content = text.partition(end)
    return reasoning, content or None


def _qwen3_think_in_prompt(text: str, thinking: bool, start: str, end: str) -> tuple[str | None, str | None]:
    # vllm/reasoning/qwen3_reasoning_parser.py after the Qwen3.5 rewrite (e.g. commit 00a4c6a1), where the chat
    # template may place `<think>` in the prompt: a generated `<think>` is stripped (text after the first one);
    # with `</think>`: partition at the first one, `content or None`; without it: thinking disabled
    # (chat_template_kwargs enable_thinking false) -> (None, text), else truncated -> (text, None).
    # (The `<tool_call>\n<function=` implicit end of that parser is not modelled: no tool calls here.)
    head, found, tail = text.partition(start)
    text = tail if found else head
    if end in text:
        reasoning, _, content = text.partition(end)
        return reasoning, content or None
    return (text, None) if thinking else (None, text)


def _deepseek_r1(text: str, thinking: bool, start: str, end: str) -> tuple[str | None, str | None]:
    # vllm/reasoning/deepseek_r1_reasoning_parser.py: DeepSeekR1ReasoningParser inherits extract_reasoning from
    # vllm/reasoning/basic_parsers.py BaseThinkingReasoningParser: text after the first `<think>` if present;
    # "For models that may not generate start token, assume the reasoning content is always at the start":
    # no `</think>` -> (text, None); else partition at the first `</think>`, `content or None`.
    head, found, tail = text.partition(start)
    text = tail if found else head
    if end not in text:
        return text, None
    reasoning, _, content = text.partition(end)
    return reasoning, content or None


PARSERS = {"qwen3": _qwen3_both_tags, "qwen3_think_in_prompt": _qwen3_think_in_prompt, "deepseek_r1": _deepseek_r1}


def split_vllm(parser: str, text: str, thinking: bool = True, start: str = DATA_MARKUP[0],
               end: str = DATA_MARKUP[1]) -> tuple[str | None, str | None]:
    """(reasoning, content) as vLLM's `--reasoning-parser PARSER` returns them for the generated text.
    `thinking`: the request's `enable_thinking` (only `qwen3_think_in_prompt` reads it)."""
    return PARSERS[parser](text, thinking, start, end)


# ---------------------------------------------------------------------------------------------------------------
# Answers


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def normalise(text: str) -> str:
    """Lower case, punctuation and articles (a, an, the) removed, whitespace collapsed (SQuAD's rule)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def last_number(text: str) -> float | None:
    """The number an answer gives: inside the last `\\boxed{}` if any, else the last number in the text
    (thousands separators and fractions a/b read)."""
    boxed = _BOXED.findall(text)
    if boxed:
        text = boxed[-1]
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "")
    if "/" in raw:
        num, den = raw.split("/")
        return float(num) / float(den) if float(den) != 0 else None
    return float(raw)


def match_answer(answer: str, reference: str) -> dict[str, bool | None]:
    """exact (after outer whitespace), normalised, numeric (None when the reference has no number)."""
    ref_number = last_number(reference)
    got = last_number(answer) if ref_number is not None else None
    numeric = None if ref_number is None else (got is not None and math.isclose(got, ref_number, rel_tol=1e-6, abs_tol=1e-9))
    return {"exact": answer.strip() == reference.strip(), "normalised": normalise(answer) == normalise(reference),
            "numeric": numeric}


# ---------------------------------------------------------------------------------------------------------------
# One output


@dataclass
class Output:
    mode: str
    status: str
    tokens: int  # generated ids up to and including the end of turn
    end_of_turn: bool
    truncated: bool
    tags_as_ids: bool
    spelled_out: list[str]  # tags that occur in the text more often than as their single id
    reasoning: str | None  # structural reading (None: no closed think block)
    answer: str
    reasoning_tokens: int
    answer_tokens: int
    parsers: dict[str, dict[str, Any]] = field(default_factory=dict)
    match: dict[str, bool | None] | None = None
    text: str = ""

    @property
    def well_formed(self) -> bool:
        return self.status == "ok" and self.tags_as_ids and self.end_of_turn

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "well_formed": self.well_formed}


def _structure(text: str, markup: Markup, mode: str) -> tuple[str, str | None, str]:
    """(status, reasoning, answer) of the decoded body (the text before the end of turn)."""
    if markup.end_tag and text.endswith(markup.end_tag):
        text = text[: -len(markup.end_tag)]
    status, reasoning, answer = _blocks(text, markup, mode)
    prefix = markup.answer_prefix.strip()
    if prefix and answer.lstrip().startswith(prefix):
        answer = answer.lstrip()[len(prefix):]
    return status, reasoning, answer


def _blocks(text: str, markup: Markup, mode: str) -> tuple[str, str | None, str]:
    o, c = markup.open_tag, markup.close_tag
    if mode == NOTHINK:
        return ("thinks_when_off" if (o in text or c in text) else "ok"), None, text
    if markup.prompt_opens_think:
        if o in text:  # the prompt opened the block; the model opened another
            reasoning, _, answer = text.partition(c)
            return "misplaced", (reasoning if c in text else None), (answer if c in text else "")
        if c not in text:
            return "unclosed", None, ""
        reasoning, _, answer = text.partition(c)
        return ("misplaced" if c in answer else "empty" if not reasoning.strip() else "ok"), reasoning, answer
    if o not in text:
        if c in text:  # closed a block it never opened
            reasoning, _, answer = text.partition(c)
            return "misplaced", reasoning, answer
        return "missing", None, text
    lead, _, after = text.partition(o)
    if c not in after:
        return ("misplaced" if lead.strip() else "unclosed"), None, ""
    reasoning, _, answer = after.partition(c)
    if lead.strip() or o in reasoning or o in answer or c in answer:
        return "misplaced", reasoning, answer
    return ("empty" if not reasoning.strip() else "ok"), reasoning, answer


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0


def classify(
    ids: Sequence[int],
    tokenizer: Any,
    markup: Markup,
    mode: str = THINK,
    max_new_tokens: int | None = None,
    reference: str | None = None,
    parsers: Sequence[str] = tuple(PARSERS),
) -> Output:
    """Read one generated sequence (ids after the prompt; padding after the end of turn is ignored)."""
    ids = [int(i) for i in ids]
    stop = next((k for k, i in enumerate(ids) if i in markup.stop_ids), None)
    body = ids if stop is None else ids[:stop]
    tokens = len(ids) if stop is None else stop + 1
    truncated = stop is None and max_new_tokens is not None and len(ids) >= max_new_tokens
    text = tokenizer.decode(body, skip_special_tokens=False)
    status, reasoning, answer = _structure(text, markup, mode)

    spelled = []
    seqs = {}
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for tag in (markup.open_tag, markup.close_tag):
        seqs[tag] = tag_ids(tokenizer, tag)
        # a tag made of the vocabulary's own tag tokens must come out as those ids (a plain-text tag, such as
        # `<reasoning>` without a token of its own, tokenizes with its context and has no id form to check)
        own = len(seqs[tag]) == 1 or bool(added.intersection(seqs[tag]))
        if own and text.count(tag) > _occurrences(body, seqs[tag]):  # written in other pieces than its own ids
            spelled.append(tag)

    # lengths: by position of the closer's ids where the block is made of the tags' ids, else by re-encoding
    close_seq, open_seq = seqs[markup.close_tag], seqs[markup.open_tag]
    close_at = _find(body, close_seq)
    if reasoning is None:
        if status == "unclosed":  # all of it is reasoning (after the model's opener where it opened one)
            open_at = _find(body, open_seq)
            start = open_at + len(open_seq) if open_at >= 0 else 0
            reasoning_tokens, answer_tokens = len(body) - start, 0
        else:  # missing / misplaced without a block / nothink: all of it is answer
            reasoning_tokens, answer_tokens = 0, len(body)
    elif not spelled and close_at >= 0:
        open_at = _find(body, open_seq, 0, close_at)
        start = open_at + len(open_seq) if open_at >= 0 else 0
        reasoning_tokens, answer_tokens = close_at - start, len(body) - close_at - len(close_seq)
    else:
        reasoning_tokens, answer_tokens = _count(tokenizer, reasoning), _count(tokenizer, answer)

    served = tokenizer.decode(body, skip_special_tokens=True)  # what vLLM's parsers read
    parsed = {}
    for name in parsers:
        r, content = split_vllm(name, served, mode == THINK, markup.open_tag, markup.close_tag)
        leaked = content is not None and (
            markup.open_tag in content or markup.close_tag in content
            or (r is None and bool(reasoning and reasoning.strip()))
        )
        parsed[name] = {"reasoning": r, "content": content, "empty_content": content is None or not content.strip(),
                        "leaked": leaked}
    out = Output(mode=mode, status=status, tokens=tokens, end_of_turn=stop is not None, truncated=truncated,
                 tags_as_ids=not spelled, spelled_out=spelled, reasoning=reasoning, answer=answer.strip(),
                 reasoning_tokens=reasoning_tokens, answer_tokens=answer_tokens, parsers=parsed, text=text)
    if reference is not None:
        out.match = match_answer(out.answer, reference)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Aggregates

THINK_STATUSES = ("ok", "empty", "unclosed", "missing", "misplaced")
NOTHINK_STATUSES = ("ok", "thinks_when_off")


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(outputs: Sequence[Output]) -> dict[str, dict[str, Any]]:
    """Per mode: n, well_formed rate, a rate per status, tags spelled out, end of turn, truncated, mean
    reasoning tokens (outputs with reasoning) and answer tokens, per parser the empty-content and leaked
    rates, and answer accuracy (over outputs with a reference; numeric over references with a number)."""
    result: dict[str, dict[str, Any]] = {}
    for mode in (THINK, NOTHINK):
        group = [o for o in outputs if o.mode == mode]
        if not group:
            continue
        statuses = THINK_STATUSES if mode == THINK else NOTHINK_STATUSES
        row: dict[str, Any] = {"n": len(group), "well_formed": _rate([o.well_formed for o in group])}
        row["status"] = {s: _rate([o.status == s for o in group]) for s in statuses}
        row["spelled_out_tags"] = _rate([not o.tags_as_ids for o in group])
        row["end_of_turn"] = _rate([o.end_of_turn for o in group])
        row["truncated"] = _rate([o.truncated for o in group])
        row["reasoning_tokens"] = _mean([o.reasoning_tokens for o in group if o.reasoning_tokens])
        row["answer_tokens"] = _mean([o.answer_tokens for o in group])
        row["tokens"] = _mean([o.tokens for o in group])
        names = list(group[0].parsers)
        row["parsers"] = {n: {"empty_content": _rate([o.parsers[n]["empty_content"] for o in group]),
                              "leaked": _rate([o.parsers[n]["leaked"] for o in group])} for n in names}
        scored = [o.match for o in group if o.match is not None]
        row["accuracy"] = {k: _rate([m[k] for m in scored if m[k] is not None]) for k in ("exact", "normalised", "numeric")}
        result[mode] = row
    return result


def plan(modes: Sequence[str], samples: list) -> list[tuple[str, list]]:
    """(mode, samples) to generate. `data`: each prompt in the mode its reference shows, think where the
    reference reasons (or there is none), nothink where it answers directly (no or an empty think block)."""
    if list(modes) != [DATA]:
        return [(mode, samples) for mode in modes]
    groups = [(THINK, [s for s in samples if s.thinks is not False]), (NOTHINK, [s for s in samples if s.thinks is False])]
    return [(mode, group) for mode, group in groups if group]
