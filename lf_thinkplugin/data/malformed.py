"""The malformed-think-tag report: `thinkplugin.on_malformed` (error | warn | skip) on aligned datasets.

`report_malformed(dataset, ...)` checks every assistant turn of an aligned dataset (any
formatting: alpaca, sharegpt, openai, reasoning) for malformed think tags and applies the run's
`on_malformed` (warn without a `thinkplugin:` block). Problems are reported by sample index, so
the user can find and fix them.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

from ..options import OptionsError
from .reasoning import CLOSE, OPEN

SHOWN = 5  # offending sample indices listed per problem

PROBLEMS = {
    "close_without_open": "a close tag with no open tag before it",
    "nested_open": "an open tag inside an open think block (nested or repeated)",
    "unclosed": "an open tag that is never closed",
    "think_after_answer": "a think block after answer text",
}


class MalformedSamples(OptionsError):
    """`on_malformed: error` found samples with malformed think tags (the message lists them)."""


def classify(text: str, open_tag: str = OPEN, close_tag: str = CLOSE, open_in_prompt: bool = False) -> str | None:
    """The first problem (a PROBLEMS key) of one assistant turn's think tags, or None when well formed.

    Well formed: no tags, or blocks that open at the start of the turn (after whitespace) and
    close, with answer text after the last block whenever there is answer text between blocks
    (interleaved reasoning). open_in_prompt: the template's generation prompt ends with the open
    tag (R1's official template), so a turn may start inside its block, with a close tag.
    """
    events = list(re.finditer(f"{re.escape(open_tag)}|{re.escape(close_tag)}", text))
    if not events:
        return None
    inside = open_in_prompt and events[0].group() == close_tag
    start, blocks = 0, []
    for m in events:
        if m.group() == open_tag:
            if inside:
                return "nested_open"
            inside, start = True, m.start()
        else:
            if not inside:
                return "close_without_open"
            inside = False
            blocks.append((start, m.end()))
    if inside:
        return "unclosed"
    if text[: blocks[0][0]].strip():
        return "think_after_answer"
    between = any(text[end:nxt].strip() for (_, end), (nxt, _) in itertools.pairwise(blocks))
    if between and not text[blocks[-1][1] :].strip():
        return "think_after_answer"
    return None


def assistant_texts(example: dict[str, Any]) -> list[str]:
    """Every assistant turn of one aligned LF example (history turns and responses)."""
    turns = [m for m in (example.get("_prompt") or []) if m.get("role") == "assistant"]
    turns += [m for m in (example.get("_response") or []) if m.get("role") == "assistant"]
    return [m.get("content") or "" for m in turns]


def template_tags(template_name: str | None) -> tuple[str, str, bool]:
    """(open tag, close tag, open tag ends the generation prompt) of an LF template by name."""
    from llamafactory.data.template import TEMPLATES

    template = TEMPLATES.get(template_name or "")
    if template is None or hasattr(template, "encoder"):  # unknown, or `native`: the data's inline `<think>` tags
        return OPEN, CLOSE, False
    open_tag, close_tag = (w.strip() for w in template.thought_words)
    prompt = "".join(s for s in template.format_user.apply(content="") if isinstance(s, str))
    return open_tag, close_tag, prompt.rstrip().endswith(open_tag)


def report_malformed(dataset: Any, name: str, template_name: str | None = None, on_malformed: str = "warn",
                     family: tuple[str, str, bool] | None = None) -> Any:
    """Count samples with malformed think tags in an aligned dataset; error, warn or drop them.

    `on_malformed` is the run's `thinkplugin.on_malformed` (the run context hands it over; warn
    without a block). Returns the dataset, without the offending samples under `skip`. Streaming
    datasets are filtered lazily under `skip` and not counted.
    """
    data_tags = template_tags(template_name)
    # `family`: (open, close, prompt opens) of the model's own inline markup (template native's reasoning format):
    # a turn written in it (`<reasoning>...</reasoning>`) is checked with it, any other with the data's tags
    other = family if family and family[:2] != data_tags[:2] else None

    def problem(example: dict[str, Any]) -> str | None:
        for text in assistant_texts(example):
            tags = other if other and (other[0] in text or other[1] in text) \
                and data_tags[0] not in text and data_tags[1] not in text else data_tags
            found = classify(text, *tags)
            if found:
                return found
        return None

    if not hasattr(dataset, "__len__"):  # IterableDataset (streaming)
        return dataset.filter(lambda ex: problem(ex) is None) if on_malformed == "skip" else dataset
    found: dict[str, list[int]] = {}
    index = 0
    for rows in dataset.select_columns(["_prompt", "_response"]).iter(batch_size=1024):  # Arrow batches: fast
        for prompt, response in zip(rows["_prompt"], rows["_response"]):
            kind = problem({"_prompt": prompt, "_response": response})
            if kind:
                found.setdefault(kind, []).append(index)
            index += 1
    if not found:
        return dataset
    bad = sorted(i for indices in found.values() for i in indices)
    message = format_report(name, len(dataset), found)
    if on_malformed == "error":
        raise MalformedSamples(message + "\nFix the samples, or set thinkplugin.on_malformed: warn (keep) or skip (drop).")
    if on_malformed == "skip":
        keep = sorted(set(range(len(dataset))) - set(bad))
        _logger().warning_rank0(message + f"\nthinkplugin.on_malformed: skip: dropped {len(bad)} sample(s).")
        return dataset.select(keep)
    _logger().warning_rank0(message + "\nthinkplugin.on_malformed: warn: kept as they are (see docs/think_loss.md).")
    return dataset


def format_report(name: str, total: int, found: dict[str, list[int]]) -> str:
    count = Counter({k: len(v) for k, v in found.items()})
    lines = [f"dataset {name}: {sum(count.values())} of {total} samples have malformed think tags:"]
    for kind, n in count.most_common():
        shown = ", ".join(str(i) for i in found[kind][:SHOWN]) + (", ..." if n > SHOWN else "")
        lines.append(f"  - {n} with {PROBLEMS[kind]} (`{kind}`), sample indices {shown}")
    return "\n".join(lines)


def _logger() -> Any:
    from llamafactory.extras import logging

    return logging.get_logger(__name__)
