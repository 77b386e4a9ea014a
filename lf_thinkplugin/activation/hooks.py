"""The plugin's side of a training run: which options are active and what they add to LF's run.

The seam (the only module touching LF internals) calls in here at three moments:
- `prepare_args(block, lf_args)`: LF's raw argument dict was read (YAML + CLI overrides); the
  `thinkplugin:` block was popped from it. Validate, resolve (e.g. `template: auto`) and edit
  `lf_args` in place, before LF's HfArgumentParser sees it and before any model loads.
- `make_collator(base_cls, **kwargs)`: where LF's SFT workflow builds its data collator.
- `make_trainer(base_cls, **kwargs)`: where LF's SFT workflow builds its trainer.
- `check_dataset(dataset, dataset_attr, data_args)`: each dataset after LF aligned it.
- `check_tokenizer(tokenizer, model_args)`: the tokenizer LF loaded (native hook; the patched mode
  routes LF's AutoTokenizer through tokenizer_fidelity instead).
With no `thinkplugin:` block, the last two return LF's own objects built exactly as LF would.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..options import BLOCK, ThinkPluginOptions, check_against_lf, dump_options, parse_options

logger = logging.getLogger("lf_thinkplugin")

_active: Optional[ThinkPluginOptions] = None


def active() -> Optional[ThinkPluginOptions]:
    """Options of the run in this process, or None when the YAML has no `thinkplugin:` block."""
    return _active


def set_active(opts: Optional[ThinkPluginOptions]) -> None:
    global _active
    _active = opts


def prepare_args(block: Any, lf_args: dict[str, Any]) -> ThinkPluginOptions:
    opts = parse_options(block)
    check_against_lf(opts, lf_args)
    if opts.template == "auto":
        from ..templates.doctor import resolve_template  # loads the tokenizer only, never the model

        lf_args["template"] = resolve_template(
            str(lf_args.get("model_name_or_path", "")),
            enable_thinking=lf_args.get("enable_thinking", True),  # LF's defaults where the YAML is silent
            mask_history=bool(lf_args.get("mask_history", False)),
        )
    elif opts.template is not None:
        lf_args["template"] = opts.template
    if opts.token_init:
        from ..tokens.token_init import prepare_lf_args

        prepare_lf_args(opts, lf_args)
    set_active(opts)
    _log_options(opts)
    return opts


def _log_options(opts: ThinkPluginOptions) -> None:
    import json
    import os

    if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # one log line per run, not per rank
        print(f"[lf_thinkplugin] {BLOCK}: " + json.dumps(dump_options(opts), ensure_ascii=False), flush=True)


def check_dataset(dataset: Any, dataset_attr: Any, data_args: Any) -> Any:
    """An aligned dataset after the malformed-think-tag report (`on_malformed`); unchanged without a block."""
    if active() is None:
        return dataset
    from ..data.reasoning import report_malformed

    return report_malformed(dataset, dataset_attr.dataset_name, data_args.template)


def check_tokenizer(tokenizer: Any, model_args: Any) -> Any:
    """A tokenizer LF loaded, replaced where its class corrupts ids (native hook); unchanged without a block."""
    if active() is None:
        return tokenizer
    from ..loading.tokenizer import fix_lf_tokenizer

    return fix_lf_tokenizer(tokenizer, model_args)


def make_collator(base_cls: type, **kwargs: Any) -> Any:
    opts = active()
    if opts is None or not opts.uses_think_collator:
        return base_cls(**kwargs)
    from ..loss.collator import think_collator_class

    return think_collator_class(base_cls)(options=opts, **kwargs)


def make_trainer(base_cls: type, add_callbacks: bool = True, **kwargs: Any) -> Any:
    """LF's trainer, or a subclass carrying the plugin's loss / token training (add_callbacks=False when
    LF adds `run_callbacks()` itself through its native hook)."""
    opts = active()
    if opts is None:
        return base_cls(**kwargs)
    cls = base_cls
    if opts.uses_think_collator:
        from ..loss.trainer import think_trainer_class

        cls = think_trainer_class(cls, opts)
    if opts.token_init:
        from ..tokens.token_init import wrap_trainer_class

        cls = wrap_trainer_class(cls, opts)
    if add_callbacks:
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + run_callbacks()
    return cls(**kwargs)


def run_callbacks() -> list[Any]:
    """The callbacks the active run adds to LF's trainer (none without a `thinkplugin:` block)."""
    opts = active()
    if opts is None:
        return []
    from .callbacks import plugin_callbacks

    return plugin_callbacks(opts)
