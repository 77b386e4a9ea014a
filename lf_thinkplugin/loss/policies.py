"""`thinkplugin.think_loss` policies: which think blocks carry no loss.

A registry from name to class, as PEFT maps a method name to its implementation: a policy is one
class with `@register`, and options.py (the `think_loss` values and their description), the
collator's masking (spans.apply_policy) and the option checks read it from here. The span finder
(spans.py) sorts every think block of a response into one of three kinds; a policy says which kinds
lose their loss (tags and the whitespace after a closing tag included):
- *empty*: closed, with only whitespace between its tags (LF's empty block before a direct answer);
- *closed*: closed, with reasoning in it;
- *open*: no closing tag before the end of the turn or of the sample (cut by cutoff_len).

No torch or numpy here: options.py imports it before anything heavy is loaded.
"""

from __future__ import annotations

from typing import ClassVar

POLICIES: dict[str, type[ThinkLossPolicy]] = {}  # name -> policy, in registration order (the option's values)


class ThinkLossPolicy:
    name: ClassVar[str]
    description: ClassVar[str]  # one clause for the option's reference ("`name`: description")
    mask_empty: ClassVar[bool] = False
    mask_closed: ClassVar[bool] = False
    mask_open: ClassVar[bool] = False
    # (mask_open, mask_closed, mask_empty, tests_empty, masks_anything), set by `register`: what the collator's
    # hot path reads, one attribute of the class's own (spans.apply_policy)
    flags: ClassVar[tuple[bool, bool, bool, bool, bool]]

    @classmethod
    def masks_anything(cls) -> bool:
        """Whether the policy changes any label (else the collator only maps spans)."""
        return cls.mask_empty or cls.mask_closed or cls.mask_open

    @classmethod
    def trains_reasoning(cls) -> bool:
        """Whether some reasoning keeps its loss (so `think_loss_weight` has something to weigh)."""
        return not (cls.mask_empty and cls.mask_closed and cls.mask_open)

    @classmethod
    def tests_empty(cls) -> bool:
        """Whether telling empty from closed blocks changes what is masked (the span finder then reads the content)."""
        return cls.mask_empty != cls.mask_closed


def register(cls: type[ThinkLossPolicy]) -> type[ThinkLossPolicy]:
    """Class decorator: make `cls` the policy named `cls.name`."""
    if cls.name in POLICIES and POLICIES[cls.name] is not cls:
        raise ValueError(f"think_loss policy {cls.name!r} is registered twice ({POLICIES[cls.name].__qualname__}, {cls.__qualname__})")
    cls.flags = (cls.mask_open, cls.mask_closed, cls.mask_empty, cls.tests_empty(), cls.masks_anything())
    POLICIES[cls.name] = cls
    return cls


def policy(name: str) -> type[ThinkLossPolicy]:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown think_loss {name!r}; known: {', '.join(POLICIES)}") from None


def reference() -> str:
    """The `think_loss` option's description: each policy's clause, in registration order."""
    return "; ".join(f"`{name}`: {cls.description}" for name, cls in POLICIES.items()) + "."


@register
class Full(ThinkLossPolicy):
    name = "full"
    description = "every response token"


@register
class MaskEmpty(ThinkLossPolicy):
    name = "mask_empty"
    description = "whitespace-only think blocks carry no loss"
    mask_empty = True


@register
class MaskReasoning(ThinkLossPolicy):
    name = "mask_reasoning"
    description = "whole think blocks (tags included) carry no loss"
    mask_empty = mask_closed = mask_open = True
