"""How an assistant message of the data carries its reasoning: LF's inline convention (`DATA_MARKUP`, the
`<think>` tags of LF datasets), read by the rule of Qwen3's official chat template. A family's own markup
(`<seed:think>`, channels) is the learnt ReasoningFormat's (`format.markup`), never read here.

Shared by the plugin's templates and the parity oracle so both read a message the same way.
"""

from __future__ import annotations

DATA_MARKUP = ("<think>", "</think>")  # how LF datasets write reasoning inline (the data's convention)


def split_reasoning(content: str) -> tuple[str | None, str]:
    """(reasoning, answer); reasoning is None when the message has no `</think>`.

    Reasoning is the text before the first `</think>` after the last `<think>` before it, outer
    newlines removed; the answer is the text after the last `</think>`, leading newlines removed.
    `<think>x</think>y` and `<think>\\nx\\n</think>\\n\\ny` both read as ("x", "y").
    """
    opener, closer = DATA_MARKUP
    if closer not in content:
        return None, content
    head, _, _ = content.partition(closer)
    reasoning = head.rstrip("\n").split(opener)[-1].lstrip("\n")
    return reasoning, content.split(closer)[-1].lstrip("\n")


def has_markup(content: str) -> bool:
    """The message carries the data's think tags (either one): LF's hybrid rule for whether a turn thinks."""
    return any(tag in content for tag in DATA_MARKUP)


def strip_reasoning(content: str) -> str:
    """The message without its reasoning (what a non-thinking turn keeps)."""
    return split_reasoning(content)[1]
