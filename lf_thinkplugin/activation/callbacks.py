"""The callbacks a run with a `thinkplugin:` block adds to LF's trainer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import yaml
from transformers import TrainerCallback

from ..options import OPTIONS_FILE, dump_options

if TYPE_CHECKING:
    from ..options import ThinkPluginOptions


class SaveOptionsCallback(TrainerCallback):
    """Writes the resolved options (defaults filled in) to output_dir/thinkplugin_args.yaml."""

    def __init__(self, opts: "ThinkPluginOptions") -> None:
        self.opts = opts

    def on_train_begin(self, args, state, control, **kwargs):
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)
            path = os.path.join(args.output_dir, OPTIONS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump({"thinkplugin": dump_options(self.opts)}, f, allow_unicode=True, sort_keys=False)


class RunRecordCallback(TrainerCallback):
    """Writes output_dir/thinkplugin_run.json: the run's LF template and its reasoning format (for eval / export)."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings  # () -> the run's template settings record (read once the data is loaded)

    def on_train_begin(self, args, state, control, processing_class=None, train_dataloader=None, **kwargs):
        if not args.should_save:
            return
        from ..serving.callback import template_name
        from ..templates.record import format_of, media_record, write_record

        tokenizer = processing_class if processing_class is not None else kwargs.get("tokenizer")
        collator = getattr(train_dataloader, "collate_fn", None)
        template = getattr(collator, "template", None)
        if tokenizer is None or template is None:
            return
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor: its tokenizer
        write_record(args.output_dir, template_name(template), getattr(template, "enable_thinking", None),
                     format_of(template, tokenizer), self.settings() if self.settings else None,
                     media_record(getattr(collator, "processor", None)))  # LF set its pixel limits on it


def plugin_callbacks(opts: "ThinkPluginOptions", token_plan: Any = None, settings: Any = None) -> list[TrainerCallback]:
    """The run's callbacks, for every stage: options file, run record, token-init rows (with the run's plan), serving bundle."""
    callbacks: list[TrainerCallback] = [SaveOptionsCallback(opts), RunRecordCallback(settings)]
    if token_plan is not None:
        from ..tokens.token_init import make_callbacks

        callbacks += make_callbacks(token_plan)
    if opts.export_serving:
        from ..serving import make_callbacks as serving_callbacks

        callbacks += serving_callbacks(opts, settings)
    return callbacks
