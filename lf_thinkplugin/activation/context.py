"""One run's plugin state: created by each read of LF's arguments that has a `thinkplugin:` block.

`RunContext.create(block, lf_args)` validates the block against LF's arguments, resolves what must
be known before the model loads (the model's files for hub ids, `template: auto`, the token-init
plan) and edits `lf_args` in place before LF's HfArgumentParser sees them. The seam binds the
context to LF's run (patched names or native hooks); every later moment of the run is a method
here that hands the context's own options and plan to the capability that acts:

    dataset(...)        each aligned dataset: the malformed-think-tag report (data/); kept to name failing samples
    template_setup()    LF fixing the template to the tokenizer: a chat template `native` cannot use, refused
    sample_errors()     LF tokenizing: a sample the template cannot encode, refused naming it (data/sample_errors.py)
    check_trained(...)  the tokenized training set: no trained token left (`cutoff_len`), refused
    tokenizer(...)      the tokenizer LF loaded, replaced where its class corrupts ids (loading/)
    peft_config(...)    the PEFT config LF built: token_init rows made trainable (tokens/)
    collator(...)       the SFT collator: think_loss policies and the span map (loss/)
    trainer(...)        the SFT trainer: reasoning weight, span logs, new-rows-only training
    preference_*(...)   DPO / KTO collator and trainer: the same policies, weights and span logs (loss/preference.py)
    callbacks()         every stage: options file, token-init rows, serving bundle; SFT: eval_think

Leaf modules never look the run up: what they need is passed to them. A read without a block
ends the context (the seam unbinds it), so nothing of one run reaches the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..loading.hub import ModelRef, local_dir
from ..options import BLOCK, OptionsError, ThinkPluginOptions, check_against_lf, dump_options, parse_options


def rank0() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("RANK", "0")) == 0


@dataclass
class RunContext:
    options: ThinkPluginOptions
    lf_args: dict[str, Any]  # what LF parses: the block removed, template / add_tokens resolved
    block: Any  # the raw block as the user wrote it
    model: ModelRef
    from_cli: bool = True  # arguments read from the command line: refusals exit 2 without a traceback
    token_plan: Any = None  # tokens.token_init.Plan when token_init is set
    _model_dir: Optional[Path] = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _eval_callback: Any = field(default=None, repr=False)
    _format: Any = field(default=None, repr=False)  # native's ReasoningFormat, learnt on first use
    _aligned: list = field(default_factory=list, repr=False)  # (dataset name, aligned dataset): where samples are found
    # template settings (templates/settings.py): what the chat template reads (probed once), the run's checked
    # `chat_template_kwargs`, the settings the data carries (sorted JSON -> samples) and the carrying datasets
    _template_settings: Any = field(default=None, repr=False)
    run_settings: dict = field(default_factory=dict, repr=False)
    settings_mix: dict = field(default_factory=dict, repr=False)
    settings_columns: dict = field(default_factory=dict, repr=False)  # dataset name -> settings column
    _carried: list = field(default_factory=list, repr=False)

    # --- before LF parses its arguments ---------------------------------------------------------

    @classmethod
    def create(cls, block: Any, lf_args: dict[str, Any], from_cli: bool = True,
               lf_keys: Optional[set[str]] = None) -> "RunContext":
        opts = parse_options(block)
        check_against_lf(opts, lf_args, lf_keys)
        ctx = cls(opts, lf_args, block, ModelRef.from_lf_args(lf_args), from_cli)
        if opts.template == "auto":
            from ..templates.diagnose import resolve_template  # loads the tokenizer only, never the model

            lf_args["template"] = resolve_template(
                str(ctx.model_dir),
                enable_thinking=lf_args.get("enable_thinking", True),  # LF's defaults where the YAML is silent
                mask_history=bool(lf_args.get("mask_history", False)),
            )
        elif opts.template is not None:
            lf_args["template"] = opts.template
        if opts.expand_turns:
            lf_args["mask_history"] = True  # each expanded sample trains its last turn only
        if lf_args.get("template") == "native":  # a multimodal model: media seen as its processor serves them
            from ..templates.media import follow_served_limits

            for line in follow_served_limits(lf_args, ctx.model_dir):
                if rank0():
                    print(f"[lf_thinkplugin] media: {line}", flush=True)
        if opts.chat_template_kwargs is not None:  # checked against the template before anything loads
            ctx.run_settings = ctx.checked_settings(opts.chat_template_kwargs, f"{BLOCK}.chat_template_kwargs")
        spec = opts.eval_think
        if spec is not None and (spec.template_kwargs or spec.sweep):
            from ..evaluation.sweep import settings_list

            sweep = next(iter(spec.sweep.items())) if spec.sweep else None
            for _, kwargs in settings_list({**ctx.run_settings, **(spec.template_kwargs or {})}, sweep):
                ctx.checked_settings(kwargs, f"{BLOCK}.eval_think.{'sweep' if sweep else 'template_kwargs'}")
        if opts.token_init:
            from ..tokens.token_init import prepare_lf_args

            ctx.token_plan = prepare_lf_args(opts, lf_args, ctx.checkpoint_tokenizer())
        if rank0():
            print(f"[lf_thinkplugin] {BLOCK}: " + json.dumps(dump_options(opts), ensure_ascii=False), flush=True)
        return ctx

    @property
    def stage(self) -> str:
        return str(self.lf_args.get("stage", "sft"))

    @property
    def model_dir(self) -> Path:
        """The local folder of the model's tokenizer and config (hub ids resolved as LF resolves them)."""
        if self._model_dir is None:
            self._model_dir = local_dir(self.model)
        return self._model_dir

    def checkpoint_tokenizer(self) -> Any:
        """The checkpoint's own tokenizer, loaded faithfully (no tokens added); loaded once per run."""
        if self._tokenizer is None:
            from ..loading.tokenizer import from_pretrained

            kwargs: dict[str, Any] = {"trust_remote_code": bool(self.lf_args.get("trust_remote_code", False))}
            if self.lf_args.get("use_fast_tokenizer") is not None:
                kwargs["use_fast"] = bool(self.lf_args["use_fast_tokenizer"])
            try:
                self._tokenizer = from_pretrained(str(self.model_dir), **kwargs)
            except (OSError, ValueError) as err:
                raise OptionsError(f"cannot load the tokenizer of `{self.model.key}: {self.model.name_or_path}` "
                                   f"from {self.model_dir}: {err}") from None
        return self._tokenizer

    # --- the moments of LF's run (called through the seam) --------------------------------------

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
        """A refusal raised inside LF's run: on the command line, the message and exit status 2, no traceback."""
        try:
            yield
        except OptionsError as err:
            if not self.from_cli:
                raise
            print(f"[lf_thinkplugin] error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    def template_settings(self) -> Any:
        """The settings the model's chat template reads (templates/settings.py), probed once per run."""
        if self._template_settings is None:
            from ..templates.format import NativeTemplateError, learn
            from ..templates.settings import TemplateSettings

            tokenizer = self.checkpoint_tokenizer()
            try:
                self._template_settings = TemplateSettings(tokenizer, self._format or learn(tokenizer))
            except NativeTemplateError as err:
                raise OptionsError(f"template settings need the model's chat template: {err}") from None
        return self._template_settings

    def checked_settings(self, settings: Any, where: str) -> dict[str, Any]:
        """`settings` checked against the chat template and LF's `enable_thinking` (OptionsError naming the key)."""
        from ..templates.settings import SettingsError

        template = self.lf_args.get("template")
        if template != "native":
            raise OptionsError(f"`{where}` passes settings to the model's own chat template, which only `template: native` "
                               f"renders with (this run's template: {template or 'none'}); set `thinkplugin.template: "
                               "native` (or `auto` where it picks native), or drop the settings")
        try:
            return self.template_settings().check(settings, self.lf_args.get("enable_thinking", True), where)
        except SettingsError as err:
            raise OptionsError(str(err)) from None

    def _carry_settings(self, dataset: Any, raw: Any, data_args: Any, name: str) -> Any:
        """The run's and the dataset column's template settings put into each sample (data/template_settings.py)."""
        from ..data.template_settings import carry, distinct, settings_column
        from ..templates.settings import SettingsError

        column = settings_column(data_args.dataset_dir, name)
        if column is None and not self.run_settings:
            return dataset
        where = column or f"{BLOCK}.chat_template_kwargs"
        if column is not None:
            self.settings_columns[name] = column
            self.checked_settings({}, f"{name}.{column}")  # the template must be native
        try:
            carried = carry(dataset, raw, column, self.run_settings, name)
        except SettingsError as err:
            raise OptionsError(str(err)) from None
        training = name not in [e.strip() for e in str(self.lf_args.get("eval_dataset") or "").split(",")]
        for key, count in distinct(carried).items():  # each distinct mix once, before anything is tokenized
            try:
                self.checked_settings(json.loads(key), where)
            except OptionsError as err:
                raise OptionsError(f"dataset `{name}` (dataset_info.json `columns.chat_template_kwargs: {column}`, "
                                   f"{count} samples with {key}): {err}") from None
            if training:  # the record's and check's mix: the training data's
                self.settings_mix[key] = self.settings_mix.get(key, 0) + count
        if training:
            self._carried.append((name, carried))
        return carried

    def settings_record(self) -> Optional[dict[str, Any]]:
        """The run record's `template_settings` (None where the run passes none)."""
        if not self.run_settings and not self.settings_mix:
            return None
        return {"chat_template_kwargs": self.run_settings, "columns": self.settings_columns,
                "mix": {k: v for k, v in sorted(self.settings_mix.items())},
                "template": self.template_settings().describe()}

    def dataset(self, dataset: Any, dataset_attr: Any, data_args: Any, name: Optional[str] = None, raw: Any = None) -> Any:
        """`name`: the dataset's name in the YAML's `dataset:` (LF hands over its attributes only); `raw`: the dataset
        before LF aligned it (its settings column), where the seam has it."""
        from ..data.malformed import report_malformed

        self._aligned.append((name or str(dataset_attr.dataset_name), dataset))  # as in the file: sample indices
        with self.refusals():
            dataset = self._carry_settings(dataset, raw, data_args, name or str(dataset_attr.dataset_name))
            dataset = report_malformed(dataset, dataset_attr.dataset_name, data_args.template, self.options.on_malformed,
                                       self._family_markup(data_args.template))
            if self.options.expand_turns:
                from ..data.expand import expand_turns

                dataset = expand_turns(dataset, dataset_attr.dataset_name)
            return dataset

    def _family_markup(self, template: Optional[str]) -> Optional[tuple[str, str, bool]]:
        """`native`'s inline markup for the malformed report (the model's own format, learnt once per run)."""
        if template != "native":
            return None
        if self._format is None:
            from ..templates.format import NativeTemplateError, learn

            try:
                self._format = learn(self.checkpoint_tokenizer())
            except NativeTemplateError:
                return None  # refused with the reason when LF sets the template up
        fmt = self._format
        return (fmt.opener, fmt.closer, fmt.prompt_opens) if fmt.source == "inline" and fmt.markup else None

    @contextlib.contextmanager
    def template_setup(self, tokenizer: Any) -> Iterator[None]:
        """LF fixing the run's template to its tokenizer: a chat template `native` cannot use is refused (exit 2)."""
        from ..templates.native import NativeTemplateError

        with self.refusals():
            try:
                yield
            except NativeTemplateError as err:
                try:
                    folder = str(self.model_dir)
                except Exception:  # noqa: BLE001 - only for the message
                    folder = str(getattr(tokenizer, "name_or_path", "") or self.model.name_or_path)
                which = {"native": "`thinkplugin.template: native`",
                         "auto": "`thinkplugin.template: auto` (which chose `native`)"}.get(
                    str(self.options.template), "`template: native`")
                raise OptionsError(
                    f"{which} trains with the model's own chat template, and the model folder {folder} has none it can "
                    f"use: {err}. Fix: give that folder the model's chat template (`chat_template.jinja`, or "
                    "`chat_template` in tokenizer_config.json, as the base model ships it), or set `thinkplugin.template` "
                    f"to a named template (`lf-think doctor --model {folder}` shows which match the model)") from None

    @contextlib.contextmanager
    def sample_errors(self, names: list[str]) -> Iterator[None]:
        """LF tokenizing a dataset: a sample the template cannot encode is refused, named (exit 2).

        `names`: the datasets being tokenized, for the message when the sample is not found again.
        """
        from ..data.sample_errors import find_sample_error, sample_message

        with self.refusals():
            try:
                yield
            except Exception as err:  # noqa: BLE001 - `datasets` and its worker pool re-raise or wrap
                found = find_sample_error(err)
                if found is None:
                    raise
                raise OptionsError(sample_message(found, self._aligned, names)) from None

    def check_trained(self, dataset: Any, names: list[str], cutoff_len: int, ignore_index: int) -> None:
        """A tokenized training set in which no sample keeps a trained token is refused (exit 2), naming `cutoff_len`."""
        from ..data.sample_errors import no_trained_token, no_trained_token_message, trained_summary

        longest = no_trained_token(dataset, ("labels", "chosen_labels", "rejected_labels"), ignore_index)
        if longest is not None:
            with self.refusals():
                raise OptionsError(no_trained_token_message(names, len(dataset), longest, cutoff_len))
        summary = trained_summary(dataset, "labels", ignore_index)
        if summary is not None and rank0():
            trained, total, turns = summary
            print(f"[lf_thinkplugin] training data: {trained} of {total} samples train, {turns} trained turns"
                  + (f"; {total - trained} samples carry no loss (named above where a turn was left untrained)"
                     if trained < total else ""), flush=True)

    def media_report(self, dataset: Any, tokenizer: Any, processor: Any = None) -> None:
        """The image tokens that train against those the model's processor serves (templates/media.py)."""
        from ..templates.media import image_token_report

        line = image_token_report(dataset, self.model_dir, tokenizer, getattr(processor, "image_processor", None))
        if line and rank0():
            print(f"[lf_thinkplugin] media: {line}", flush=True)

    def tokenizer(self, tokenizer: Any, model_args: Any) -> Any:
        from ..loading.tokenizer import fix_lf_tokenizer

        return fix_lf_tokenizer(tokenizer, model_args)

    def peft_config(self, model: Any, peft_config: Any) -> Any:
        if self.token_plan is None:
            return peft_config
        from ..tokens.token_init import token_rows_config

        return token_rows_config(model, peft_config, self.token_plan)

    def collator(self, base_cls: type, **kwargs: Any) -> Any:
        if not self.options.uses_think_collator:
            return base_cls(**kwargs)
        from ..loss.collator import think_collator_class

        return think_collator_class(base_cls)(options=self.options, **kwargs)

    def trainer(self, base_cls: type, **kwargs: Any) -> Any:
        cls = base_cls
        if self.options.uses_think_collator:
            from ..loss.trainer import think_trainer_class

            cls = think_trainer_class(cls, self.options)
        if self.options.train_new_tokens_only:
            from ..tokens.new_rows import wrap_trainer_class

            cls = wrap_trainer_class(cls, self.options)
        with self.refusals():
            trainer = cls(**kwargs)
        if self._eval_callback is not None:  # its metrics go through this trainer's log
            self._eval_callback.bind_trainer(trainer)
        return trainer

    def preference_collator(self, base_cls: type, **kwargs: Any) -> Any:
        """DPO's pairwise or KTO's collator: the think_loss policy on the labels (and KTO's KL labels)."""
        if not self.options.uses_think_collator:
            return base_cls(**kwargs)
        from ..loss.preference import preference_collator_class

        return preference_collator_class(base_cls)(options=self.options, **kwargs)

    def preference_trainer(self, base_cls: type, **kwargs: Any) -> Any:
        """DPO's or KTO's trainer: reasoning weight in each sequence's score, reward parts in the logs."""
        cls = base_cls
        if self.options.uses_think_collator:
            from ..loss.preference import think_preference_trainer_class

            cls = think_preference_trainer_class(base_cls, self.options)
        with self.refusals():
            return cls(**kwargs)

    def callbacks(self) -> list[Any]:
        from .callbacks import plugin_callbacks

        callbacks = plugin_callbacks(self.options, self.token_plan, settings=self.settings_record)
        if self.options.eval_think is not None:
            from ..evaluation.callback import ThinkEvalCallback

            self._eval_callback = ThinkEvalCallback(
                self.options.eval_think, self.lf_args.get("template"), str(self.model_dir),
                str(self.lf_args.get("dataset_dir") or "data"), self.lf_args.get("eval_dataset"), self.run_settings)
            callbacks.append(self._eval_callback)
        return callbacks
