"""The only module that touches LLaMA-Factory internals: version check and every patch.

Two modes:
- native: LF carries `patches/llamafactory-plugins.patch` (module `llamafactory.extras.plugins`),
  so the plugin registers through LF's hooks and patches nothing;
- patched (stock LF 0.9.5): three names are rebound, all reversible by `uninstall()`:
  `read_args` (in `llamafactory.hparams` and `.parser`, and `llamafactory.train.tuner` when already
  imported) strips the `thinkplugin:` block before HfArgumentParser sees it; the SFT workflow's
  collator and trainer classes become factories that defer to `runtime` and build LF's own objects,
  unchanged, when the run has no block; the loader's `align_dataset` also runs the plugin's
  malformed-think-tag report; LF's tokenizer loading avoids classes that corrupt ids
  (tokenizer_fidelity.py); the adapter's `get_peft_model` gets the PEFT config LF built after
  token_init adjusted it (LF's own object without token_init). These are patched lazily, on the
  first block seen, so a run without a block executes LF's code untouched.
An LF version outside the verified set is refused loudly (override: LF_THINKPLUGIN_ALLOW_UNVERIFIED=1).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Callable, Optional

from ..options import BLOCK, OptionsError

VERIFIED_VERSIONS = ("0.9.5",)
SUPPORTED_RANGE = ">=0.9.5,<0.10"
ALLOW_ENV = "LF_THINKPLUGIN_ALLOW_UNVERIFIED"
NATIVE_HOOKS_API = 1  # the `HOOKS_API` our patch gives `llamafactory.extras.plugins`

_originals: dict[tuple[str, str], Any] = {}  # (module, attribute) -> LF's object, for uninstall()
mode: Optional[str] = None  # "native" | "patched" once installed


class UnsupportedLlamaFactory(RuntimeError):
    pass


def lf_version() -> str:
    import llamafactory

    return str(llamafactory.__version__)


def check_version() -> str:
    version = lf_version()
    if version in VERIFIED_VERSIONS:
        return version
    message = (
        f"lf-thinkplugin was verified against llamafactory {', '.join(VERIFIED_VERSIONS)} "
        f"(supported range {SUPPORTED_RANGE}); llamafactory {version} is installed. "
        f"Install llamafactory{SUPPORTED_RANGE}, or set {ALLOW_ENV}=1 to try anyway."
    )
    if os.environ.get(ALLOW_ENV, "").lower() in ("1", "true", "yes"):
        warnings.warn(message + f" ({ALLOW_ENV} is set: going on.)", RuntimeWarning, stacklevel=2)
        return version
    raise UnsupportedLlamaFactory(message)


def native_hooks() -> Any:
    """LF's own plugin-hook module when LF carries our upstream patch, else None."""
    try:
        from llamafactory.extras import plugins
    except ImportError:
        return None
    return plugins if getattr(plugins, "HOOKS_API", None) == NATIVE_HOOKS_API else None


def install() -> list[str]:
    """Hook the plugin into LF; idempotent. Returns a description of each hook."""
    global mode
    from . import hooks as runtime

    native = native_hooks()
    if native is not None:
        if mode != "native":
            native.register_config_block(BLOCK, runtime.prepare_args, on_absent=lambda: runtime.set_active(None))
            native.register_collator_factory("sft", runtime.make_collator)
            native.register_trainer_factory("sft", lambda base_cls, **kw: runtime.make_trainer(base_cls, add_callbacks=False, **kw))
            native.register_callbacks(runtime.run_callbacks)
            native.register_dataset_hook(runtime.check_dataset)
            native.register_tokenizer_hook(runtime.check_tokenizer)
            native.register_peft_config_hook(_peft_config_for_run)
            mode = "native"
        return ["hooks:native (llamafactory.extras.plugins)"]

    import llamafactory.hparams as hparams
    import llamafactory.hparams.parser as parser

    if mode != "patched":
        wrapped = _wrap_read_args(parser.read_args)
        _set(parser, "read_args", wrapped)
        _set(hparams, "read_args", wrapped)
        tuner = sys.modules.get("llamafactory.train.tuner")  # imported before us: rebind its copy too
        if tuner is not None:
            _set(tuner, "read_args", wrapped)
        mode = "patched"
    return ["hooks:read_args (thinkplugin block)", "hooks:sft collator+trainer (on first thinkplugin block)"]


def uninstall() -> None:
    """Restore every LF object this module replaced (tests; a process that wants stock LF back)."""
    global mode
    for (module_name, attr), original in _originals.items():
        setattr(sys.modules[module_name], attr, original)
    _originals.clear()
    mode = None


def _set(module: Any, attr: str, value: Any) -> None:
    _originals.setdefault((module.__name__, attr), getattr(module, attr))
    setattr(module, attr, value)


def _wrap_read_args(read_args: Callable[..., Any]) -> Callable[..., Any]:
    from . import hooks as runtime

    def read_args_with_thinkplugin(args=None):
        result = read_args(args)
        if isinstance(result, dict) and BLOCK in result:
            result = dict(result)  # never edit the caller's dict
            block = result.pop(BLOCK)
            try:
                runtime.prepare_args(block, result)
            except OptionsError as err:
                if args is None:  # the CLI path: a clean message and exit status, no traceback
                    print(f"[lf_thinkplugin] error: {err}", file=sys.stderr, flush=True)
                    raise SystemExit(2) from None
                raise
            _patch_run_hooks()
        elif args is None:  # a fresh read of sys.argv with no block: this run is stock LF
            runtime.set_active(None)
        return result

    read_args_with_thinkplugin.__wrapped__ = read_args  # type: ignore[attr-defined]
    return read_args_with_thinkplugin


def _patch_run_hooks() -> None:
    """Hooks a run with a `thinkplugin:` block needs: SFT collator and trainer, and the malformed-tag
    report on every aligned dataset (LF's loader binds `align_dataset` by name)."""
    from . import hooks as runtime

    import llamafactory.data.loader as loader
    import llamafactory.model.loader as model_loader
    import llamafactory.train.sft.workflow as workflow

    if ("llamafactory.train.sft.workflow", "SFTDataCollatorWith4DAttentionMask") in _originals:
        return
    base_collator = workflow.SFTDataCollatorWith4DAttentionMask
    base_trainer = workflow.CustomSeq2SeqTrainer
    align_dataset = loader.align_dataset
    _set(workflow, "SFTDataCollatorWith4DAttentionMask", lambda **kw: runtime.make_collator(base_collator, **kw))
    _set(workflow, "CustomSeq2SeqTrainer", lambda **kw: runtime.make_trainer(base_trainer, **kw))

    def align_dataset_with_report(dataset, dataset_attr, data_args, training_args):
        return runtime.check_dataset(align_dataset(dataset, dataset_attr, data_args, training_args), dataset_attr, data_args)

    _set(loader, "align_dataset", align_dataset_with_report)
    _set(model_loader, "AutoTokenizer", _FaithfulAutoTokenizer)
    _patch_peft_config()


class _FaithfulAutoTokenizer:
    """What LF's `load_tokenizer` calls as `AutoTokenizer`: the same, but never a corrupting class."""

    @staticmethod
    def from_pretrained(path: str, **kwargs: Any) -> Any:
        from ..loading.tokenizer import from_pretrained

        return from_pretrained(path, **kwargs)


def _patch_peft_config() -> None:
    """LF's adapter builds its LoraConfig / OFTConfig, then calls `get_peft_model(model, config)` by name.
    Rebinding that name (not LoraConfig) lets token_init adjust the config with the loaded, resized
    model in hand: PEFT trainable tokens need the embedding module names, tying and row count."""
    import llamafactory.model.adapter as adapter

    get_peft_model = adapter.get_peft_model

    def get_peft_model_with_thinkplugin(model, peft_config, *args, **kwargs):
        return get_peft_model(model, _peft_config_for_run(model, peft_config), *args, **kwargs)

    _set(adapter, "get_peft_model", get_peft_model_with_thinkplugin)


def _peft_config_for_run(model: Any, peft_config: Any) -> Any:
    from ..tokens.token_init import peft_config_for_run

    return peft_config_for_run(model, peft_config)
