"""`thinkplugin.token_init` strategies: how a new token's embedding row is combined from existing rows.

A registry from name to class, as PEFT maps a method name to its implementation: a strategy is one
class with `@register`, and options.py (the `strategy` values and each spec's check), the plan
(which texts are tokenized before the model loads) and the row writer (token_init.py) read it from
here. Built in:
- `mean`, `noisy_mean`: the mean of all existing token rows (ids < len(tokenizer), planned ids
  excluded); `noisy_mean` adds noise 0.02 unless the spec sets its own;
- `tokens`: the mean over `sources` of the mean of each source string's sub-token rows;
- `text`: the mean of the rows of the description's tokens.
token_init.py adds the spec's noise to the combination (module doc there).

No torch here at import: options.py imports this before anything heavy is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

STRATEGIES: dict[str, type[InitStrategy]] = {}  # name -> strategy, in registration order (the option's values)


class InitStrategy:
    name: ClassVar[str]
    reads_mean: ClassVar[bool] = False  # the combination needs the mean of the existing rows
    default_noise: ClassVar[float] = 0.0  # the noise of a spec that sets none

    @classmethod
    def check(cls, spec: Any) -> None:
        """Refuse a spec (a TokenInitSpec) this strategy cannot build from: raise ValueError saying what to write."""

    @classmethod
    def texts(cls, spec: Any) -> list[str]:
        """The strings whose token ids the combination reads (tokenized before the model loads)."""
        return []

    @classmethod
    def combine(cls, weight: Any, source_ids: Sequence[Sequence[int]], mean_row: Any) -> Any:
        """The row (float32 tensor on CPU) from the embedding matrix `weight`, the ids of `texts(spec)` and the
        mean existing row (computed only when `reads_mean`)."""
        raise NotImplementedError


def register(cls: type[InitStrategy]) -> type[InitStrategy]:
    """Class decorator: make `cls` the strategy named `cls.name`."""
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"token_init strategy {cls.name!r} is registered twice ({STRATEGIES[cls.name].__qualname__}, {cls.__qualname__})")
    STRATEGIES[cls.name] = cls
    return cls


def strategy(name: str) -> type[InitStrategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown token_init strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def _mean_of_rows(weight: Any, ids: Sequence[int]) -> Any:
    return weight[list(ids)].float().mean(dim=0).cpu()


@register
class Mean(InitStrategy):
    name = "mean"
    reads_mean = True

    @classmethod
    def check(cls, spec: Any) -> None:
        if spec.sources or spec.text:
            raise ValueError(f"strategy `{spec.strategy}` takes no `sources` / `text`; use strategy `tokens` or `text`")

    @classmethod
    def combine(cls, weight: Any, source_ids: Sequence[Sequence[int]], mean_row: Any) -> Any:
        return mean_row


@register
class NoisyMean(Mean):
    name = "noisy_mean"
    default_noise = 0.02


@register
class Tokens(InitStrategy):
    name = "tokens"

    @classmethod
    def check(cls, spec: Any) -> None:
        if not spec.sources:
            raise ValueError("strategy `tokens` needs a non-empty `sources` list, e.g. sources: ['思考', 'think']")

    @classmethod
    def texts(cls, spec: Any) -> list[str]:
        return list(spec.sources)

    @classmethod
    def combine(cls, weight: Any, source_ids: Sequence[Sequence[int]], mean_row: Any) -> Any:
        import torch

        return torch.stack([_mean_of_rows(weight, ids) for ids in source_ids]).mean(dim=0)


@register
class Text(InitStrategy):
    name = "text"

    @classmethod
    def check(cls, spec: Any) -> None:
        if not (spec.text and spec.text.strip()):
            raise ValueError("strategy `text` needs a non-empty `text`, e.g. text: 'start of reasoning'")

    @classmethod
    def texts(cls, spec: Any) -> list[str]:
        return [spec.text]

    @classmethod
    def combine(cls, weight: Any, source_ids: Sequence[Sequence[int]], mean_row: Any) -> Any:
        return _mean_of_rows(weight, source_ids[0])
