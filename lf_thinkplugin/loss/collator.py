"""The think-aware SFT collator: LF's collator, then think_loss policies on the labels.

`think_collator_class(base_cls)` subclasses LF's `SFTDataCollatorWith4DAttentionMask` (or any
subclass of it), so padding, packing, `neat_packing` and 4D attention masks are LF's own: spans
are found on the labels LF's collator returns (already unpadded for packed FA2 batches), then

- `think_loss: mask_empty` sets the labels of empty think blocks to IGNORE_INDEX,
- `think_loss: mask_reasoning` sets the labels of every think block (tags included) to IGNORE_INDEX,

and the batch gains `think_span` (int8, same shape as labels: 0 not trained / 1 answer /
2 reasoning, marked before masking) for the trainer's weighting and span-loss logging.
End-of-turn and EOS tokens are outside every span (see loss/spans.py), whatever the pad token is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..options import ThinkPluginOptions
from ..templates.format import DATA_MARKUP
from .spans import IGNORE_INDEX, ThinkTags, apply_policy, think_tags

SPAN_KEY = "think_span"
KL_SPAN_KEY = "kl_" + SPAN_KEY  # KTO: the span map of the KL responses' labels (`kl_labels`)


def tags_for(tokenizer: Any, template: Any = None) -> ThinkTags:
    """Think tags from the template's thought_words (LF's default when it has none) and stop words."""
    words = getattr(template, "thought_words", None) or DATA_MARKUP
    return think_tags(tokenizer, words, getattr(template, "stop_words", None) or ())


def think_collator_class(base_cls: type, kl: bool = False) -> type:
    """A subclass of LF's collator class `base_cls` (SFT, pairwise, or with `kl` KTO's, whose KL responses'
    labels get the policy too) that applies the think_loss policy; one class per (base, kl)."""
    return _collator_class(base_cls, bool(kl))


@functools.cache
def _collator_class(base_cls: type, kl: bool) -> type:

    @dataclass
    class ThinkCollator(base_cls):  # type: ignore[valid-type, misc]
        options: ThinkPluginOptions | None = None

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.options is None:
                self.options = ThinkPluginOptions()
            if self.tokenizer is None:
                raise ValueError("the think-aware collator needs `tokenizer` to find the think tags")
            self.think_tags = tags_for(self.tokenizer, self.template)

        def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = super().__call__(features)
            labels = batch.get("labels")
            if labels is None or "data" in batch:  # minicpm-v style nested batches: left as LF builds them
                return batch
            # padding has IGNORE_INDEX labels unless LF pads labels with the pad id: only then read the mask
            mask = batch.get("attention_mask") if self.label_pad_token_id != IGNORE_INDEX else None
            # = find(), masked_fill_ of the policy's spans, kinds(): in one scan (apply_policy's doc)
            batch[SPAN_KEY] = apply_policy(self.think_tags, labels, mask, self.options.think_loss)
            if kl:
                kl_mask = batch.get("kl_attention_mask") if mask is not None else None
                batch[KL_SPAN_KEY] = apply_policy(self.think_tags, batch["kl_labels"], kl_mask, self.options.think_loss)
            return batch

        def __reduce__(self):  # a class made at run time pickles by its base (dataloader workers)
            return _rebuild, (base_cls, kl, dict(self.__dict__))

    ThinkCollator.__name__ = ThinkCollator.__qualname__ = f"Think{base_cls.__name__}"
    return ThinkCollator


def _rebuild(base_cls: type, kl: bool, state: dict[str, Any]) -> Any:
    cls = _collator_class(base_cls, kl)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj
