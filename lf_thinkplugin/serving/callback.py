"""After training: the serving bundle in output_dir and every checkpoint, and the saved tokenizer's
chat template set to the one the model was trained with.

The template is the one LF's data collator holds (LF sets it up once, shared with the encoder); its
name is the key it is registered under. The tokenizer's `chat_template` becomes the bundle's Jinja
before LF's final `save_model`, which writes it as `chat_template.jinja` (transformers 5 layout);
the bundle files go beside it.

A vision-language model (serving/media.py): LF's own `SaveProcessorCallback` saves the processor into output_dir
and each checkpoint after this callback's writes (LF adds it later), with the processor's own pixel limits; the
processor's `save_pretrained` is therefore followed, on that instance, by the bundle's processor files and chat
template, so the folder holds the limits the model trained with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger("lf_thinkplugin")


def template_name(template: Any) -> str | None:
    from llamafactory.data.template import TEMPLATES

    return next((name for name, registered in TEMPLATES.items() if registered is template), None)


class _SaveThenBundle:
    """A processor's `save_pretrained` followed by the bundle's processor files and chat template (set on the
    instance; it holds only the processor and file texts, so the processor still pickles)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.files: dict[str, str] = {}  # set once the bundle is built

    def __call__(self, save_directory, *args, **kwargs):
        result = type(self.processor).save_pretrained(self.processor, save_directory, *args, **kwargs)
        if self.files:
            from .files import write_all

            write_all(Path(save_directory), self.files, force=True)
        return result


class ServingBundleCallback(TrainerCallback):
    """Builds the bundle once, lazily, at the first save or at train end (not in the training loop):
    the tokenizer's `chat_template` is set before LF's final `save_model`, and each checkpoint, saved
    just before `on_save`, gets the bundle's `chat_template.jinja` written over the tokenizer's."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings  # () -> the run's template settings record, or None
        self.bundle: Any = None
        self._tokenizer: Any = None
        self._collator: Any = None
        self._hook: Any = None  # _SaveThenBundle on a vision-language model's processor
        self._built = False

    def on_train_begin(self, args, state, control, processing_class=None, train_dataloader=None, **kwargs):
        self._tokenizer = processing_class if processing_class is not None else kwargs.get("tokenizer")
        self._collator = getattr(train_dataloader, "collate_fn", None)
        from .media import is_vlm

        processor = getattr(self._collator, "processor", None)
        if is_vlm(processor):
            hook = processor.__dict__.get("save_pretrained")
            if not isinstance(hook, _SaveThenBundle):
                hook = processor.save_pretrained = _SaveThenBundle(processor)
            self._hook = hook

    def _build(self, args) -> None:
        if self._built:
            return
        self._built = True
        from .bundle import ExportError, build_bundle

        tokenizer, collator = self._tokenizer, self._collator
        name = template_name(getattr(collator, "template", None))
        if tokenizer is None or name is None:
            logger.warning("[lf_thinkplugin] export_serving: cannot find the run's template or tokenizer; no serving bundle")
            return
        enable_thinking = getattr(collator.template, "enable_thinking", True)
        processor = getattr(collator, "processor", None)
        try:
            self.bundle = build_bundle(name, tokenizer, enable_thinking,
                                       settings=self.settings() if self.settings else None, processor=processor)
        except ExportError as err:  # a finished training run must not fail over its serving files
            logger.warning("[lf_thinkplugin] export_serving: no serving bundle for `%s`: %s", name, err)
            return
        tokenizer.chat_template = self.bundle.files["chat_template.jinja"]
        if self.bundle.media is not None:  # the processor saves its own chat_template.jinja: the trained one
            processor.chat_template = self.bundle.files["chat_template.jinja"]
            if self._hook is not None:
                names = [*self.bundle.media.files, "chat_template.jinja"]
                self._hook.files = {n: self.bundle.files[n] for n in names}
        parity = self.bundle.parity
        if args.should_save:
            print(
                f"[lf_thinkplugin] serving bundle for `{name}`: chat_template.jinja has parity with training on "
                f"{parity.passed}/{parity.total} probes; written to output_dir and each checkpoint",
                flush=True,
            )

    def _write(self, args, folder: Path) -> None:
        from .bundle import write_bundle

        self._build(args)
        if self.bundle is not None and folder.is_dir():
            write_bundle(self.bundle, folder, force=True)

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            self._write(args, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if args.should_save:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            self._write(args, Path(args.output_dir))
        else:
            self._build(args)  # other ranks: the same tokenizer template for any later save
