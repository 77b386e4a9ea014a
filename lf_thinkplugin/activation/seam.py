"""The only module that touches LLaMA-Factory internals: version check, every patch, the run binding.

Each read of LF's arguments that carries a `thinkplugin:` block creates a `RunContext`
(context.py) and binds it to LF's run; any other read unbinds it, so a programmatic `run_exp`
without a block after one with it is stock LF. LF re-reads the dict its first read returned
(`get_ray_args`, `get_train_args`): those re-reads keep the binding (recognised by identity).

Two modes:
- native: LF carries `patches/llamafactory-0.9.5-plugins.patch` (module `llamafactory.extras.plugins`),
  so the plugin registers through LF's hooks and patches nothing; the hooks call the bound context;
- patched (stock LF 0.9.5): `read_args` (in `llamafactory.hparams` and `.parser`, and
  `llamafactory.train.tuner` when already imported) is wrapped at registration; while a context is
  bound, these LF names are rebound to closures over it (restored when it is unbound):
  the SFT workflow's collator and trainer classes; the loader's `align_dataset` (malformed-tag
  report) and `_get_preprocessed_dataset` (a sample the template cannot encode, or a training set
  with no trained token: exit 2 naming it); each workflow's `get_template_and_fix_tokenizer` (a chat
  template `native` cannot use: exit 2 before the model loads); the model loader's `AutoTokenizer`
  (faithful tokenizers); the loader's pairwise and feedback processors (one thinking mode and one prompt
  per preference pair: processors.py); the DPO / KTO collators and trainers (think_loss in preference
  training); the adapter's `get_peft_model` (token_init rows); and the tuner's
  `run_pt / run_sft / run_rm / run_dpo / run_kto`, which get the run's callbacks, for every stage.
  A run without a block executes LF's code untouched. (LF's native hooks have no tokenization or
  template-setup hook: there these failures stay LF's exceptions.)

Launchers: torchrun workers re-read the YAML themselves. `USE_RAY=1` (LF's Ray launcher) with a
block is refused before any work (`RAY_REFUSAL`): LF 0.9.5's Ray path cannot train on CPU, so the
plugin in Ray workers is unverified; torchrun is the alternative. LF's `use_mca`,
`use_hyper_parallel` and KTransformers back ends bypass the hooked workflows: refused by name
(options.py). An LF version outside the verified set is refused loudly (override:
LF_THINKPLUGIN_ALLOW_UNVERIFIED=1).
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

NATIVE_HOOKS_API = 2  # the `HOOKS_API` our patch gives `llamafactory.extras.plugins`

_originals: dict[tuple[str, str], Any] = {}  # (module, attribute) -> LF's object, for uninstall()
mode: Optional[str] = None  # "native" | "patched" once installed
_RUN_NAMES: set[tuple[str, str]] = set()  # the names of `_originals` that a bound run rebinds


class _Binding:
    """The context bound to LF's run in this process, and the dict LF will re-read for it."""

    context: Any = None  # RunContext
    returned: Any = None  # the dict the read that created it returned


_bound = _Binding()


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
    native = native_hooks()
    if native is not None:
        if mode != "native":
            native.register_config_block(BLOCK, _native_block, on_absent=_native_absent)
            native.register_collator_factory("sft", lambda base_cls, **kw: _call("collator", base_cls, **kw))
            native.register_trainer_factory("sft", lambda base_cls, **kw: _call("trainer", base_cls, **kw))
            native.register_callbacks(lambda: bound().callbacks() if bound() else [])
            native.register_dataset_hook(
                lambda ds, attr, data_args: bound().dataset(ds, attr, data_args, dataset_key(attr, data_args)) if bound() else ds)
            native.register_tokenizer_hook(lambda tok, model_args: bound().tokenizer(tok, model_args) if bound() else tok)
            native.register_peft_config_hook(lambda model, cfg: bound().peft_config(model, cfg) if bound() else cfg)
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
    return ["hooks:read_args (thinkplugin block)", "hooks:run (while a thinkplugin block is bound)"]


def uninstall() -> None:
    """Restore every LF object this module replaced (tests; a process that wants stock LF back)."""
    global mode
    for (module_name, attr), original in _originals.items():
        setattr(sys.modules[module_name], attr, original)
    _originals.clear()
    _RUN_NAMES.clear()
    _bound.context = _bound.returned = None
    mode = None


def _set(module: Any, attr: str, value: Any) -> None:
    _originals.setdefault((module.__name__, attr), getattr(module, attr))
    setattr(module, attr, value)


def bound() -> Any:
    """The RunContext bound to LF's run in this process, or None (stock LF)."""
    return _bound.context


def _call(method: str, base_cls: type, **kwargs: Any) -> Any:
    ctx = bound()
    return base_cls(**kwargs) if ctx is None else getattr(ctx, method)(base_cls, **kwargs)


# --- binding a run ------------------------------------------------------------------------------


def lf_argument_names() -> set[str]:
    """Every key LF's training parser knows (its five argument dataclasses)."""
    import dataclasses

    from llamafactory.hparams.parser import _TRAIN_ARGS

    return {f.name for cls in _TRAIN_ARGS for f in dataclasses.fields(cls)}


# Measured with ray 2.60 on CPU (LF 0.9.5 `_ray_training_function`): `get_ray_head_node_ip` needs the Ray
# dashboard (ray[default]) unless `master_addr` is set; then `get_placement_group(total_devices)` asks for
# one {"CPU": 10} bundle per CPU of the cluster (total_devices = cluster CPUs on a CPU-only machine), 10x
# what the cluster has, so `ray.get(pg.ready())` waits forever ("No available node types can fulfill
# resource request {'CPU': 10.0}"), whatever `ray_init_kwargs: {num_cpus: N}`.
RAY_REFUSAL = (
    "`USE_RAY=1` (LLaMA-Factory's Ray launcher) is not supported with a `thinkplugin:` block: LLaMA-Factory "
    "0.9.5's Ray path cannot train on CPU (its placement group asks for 10 CPUs per bundle, one bundle per CPU "
    "of the cluster, so it never becomes ready and the run hangs), so the plugin's options in Ray workers are "
    "unverified. Launch the same YAML with torchrun, where the plugin acts in every rank: unset USE_RAY and run "
    "`FORCE_TORCHRUN=1 NPROC_PER_NODE=<workers> llamafactory-cli train <config>.yaml` (on CPU with "
    "`ddp_backend: gloo`), or drop `thinkplugin:`"
)


def begin_run(block: Any, lf_args: dict[str, Any], from_cli: bool) -> Any:
    """Create the run's context from its block (editing `lf_args` in place) and bind it to LF's run."""
    from llamafactory.extras.misc import use_ray

    from .context import RunContext

    end_run()
    # LF's keys are always checked in a plugin run: under ALLOW_EXTRA_ARGS LF would silently drop a typo
    keys = lf_argument_names()
    try:
        if use_ray():  # before any work: no options parsed, no model, no ray.init, no output_dir
            raise OptionsError(RAY_REFUSAL)
        ctx = RunContext.create(block, lf_args, from_cli=from_cli, lf_keys=keys)
        if mode == "native":
            _native_refusals(ctx)
    except OptionsError as err:
        if not from_cli:
            raise
        print(f"[lf_thinkplugin] error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    _bound.context, _bound.returned = ctx, lf_args  # LF re-reads this very dict (get_train_args)
    if mode == "patched":
        _bind_patched(ctx)
    return ctx


def _native_refusals(ctx: Any) -> None:
    """What LF's upstream hooks (HOOKS_API 2) cannot reach: its pairwise and feedback processors (one thinking
    mode per pair) and the preference trainers (think_loss). Refused by name rather than trained wrong."""
    import llamafactory.data.template  # noqa: F401  (_thinks reads its TEMPLATES)

    from ..options import _thinks

    if ctx.stage not in ("dpo", "kto", "rm"):
        return
    if _thinks(ctx.lf_args.get("template")) or ctx.options.uses_think_collator:
        raise OptionsError(
            f"stage {ctx.stage} with a reasoning template under LF's native plugin hooks (llamafactory.extras.plugins): "
            "those hooks reach neither LF's preference data processors (which would encode a pair's two sides in two "
            "thinking modes, on the chosen side's prompt) nor its preference trainers (think_loss); run it with "
            "LLaMA-Factory as released, where lf-thinkplugin hooks both, or use a template without reasoning")


def end_run() -> None:
    """Unbind the current run: LF's own objects everywhere again."""
    for key in list(_RUN_NAMES):
        module_name, attr = key
        setattr(sys.modules[module_name], attr, _originals.pop(key))
        _RUN_NAMES.discard(key)
    _bound.context = _bound.returned = None


def _wrap_read_args(read_args: Callable[..., Any]) -> Callable[..., Any]:
    def read_args_with_thinkplugin(args=None):
        if args is not None and args is _bound.returned:  # LF re-reading what the block's read returned
            return args
        result = read_args(args)
        if isinstance(result, dict) and BLOCK in result:
            result = dict(result)  # never edit the caller's dict
            block = result.pop(BLOCK)
            ctx = begin_run(block, result, from_cli=args is None)
            ctx.lf_args, _bound.returned = result, result
            return result
        end_run()  # a read without a block: this run is stock LF
        return result

    read_args_with_thinkplugin.__wrapped__ = read_args  # type: ignore[attr-defined]
    return read_args_with_thinkplugin


def _native_block(block: Any, args: dict[str, Any], fresh: bool = True) -> None:
    """Native config-block handler: `args` is the dict LF will parse (edited in place)."""
    ctx = begin_run(block, args, from_cli=fresh)
    ctx.lf_args = _bound.returned = args


def _native_absent(args: Any = None) -> None:
    if args is None or args is not _bound.returned:
        end_run()


def _set_run(module: Any, attr: str, value: Any) -> None:
    _set(module, attr, value)
    _RUN_NAMES.add((module.__name__, attr))


def _bind_patched(ctx: Any) -> None:
    """Rebind LF's run names to closures over `ctx` (restored by end_run)."""
    import functools
    import importlib

    import llamafactory.data.loader as loader
    import llamafactory.model.adapter as adapter
    import llamafactory.model.loader as model_loader
    import llamafactory.train.sft.workflow as workflow
    import llamafactory.train.tuner as tuner

    base_collator, base_trainer = workflow.SFTDataCollatorWith4DAttentionMask, workflow.CustomSeq2SeqTrainer
    align_dataset, get_peft_model = loader.align_dataset, adapter.get_peft_model
    _set_run(workflow, "SFTDataCollatorWith4DAttentionMask", lambda **kw: ctx.collator(base_collator, **kw))
    _set_run(workflow, "CustomSeq2SeqTrainer", lambda **kw: ctx.trainer(base_trainer, **kw))

    def align_dataset_with_report(dataset, dataset_attr, data_args, training_args):
        aligned = align_dataset(dataset, dataset_attr, data_args, training_args)
        return ctx.dataset(aligned, dataset_attr, data_args, dataset_key(dataset_attr, data_args), raw=dataset)

    _set_run(loader, "align_dataset", align_dataset_with_report)

    # LF tokenizes each (merged) dataset through `_get_preprocessed_dataset` (by name, from `get_dataset`), before
    # it saves `tokenized_path`: a sample the template cannot encode, or a training set with no trained token,
    # is refused there (exit 2), nothing saved.
    preprocess = loader._get_preprocessed_dataset

    def get_preprocessed_dataset_with_checks(dataset, data_args, training_args, stage, template, tokenizer,
                                             processor=None, is_eval=False):
        names = list((data_args.eval_dataset if is_eval and data_args.eval_dataset else data_args.dataset) or [])
        with ctx.sample_errors(names):
            out = preprocess(dataset, data_args, training_args, stage, template, tokenizer, processor, is_eval)
        if out is not None and not is_eval:
            from llamafactory.extras.constants import IGNORE_INDEX

            ctx.check_trained(out, names, data_args.cutoff_len, IGNORE_INDEX)
            ctx.media_report(out, tokenizer, processor)
        return out

    _set_run(loader, "_get_preprocessed_dataset", get_preprocessed_dataset_with_checks)

    # Preference data (DPO / RM pairs, KTO with its KL response): one thinking mode per pair, one prompt for
    # both sides (processors.py); `_get_dataset_processor` constructs them by these names.
    from .processors import processor_classes

    for name, constructor in processor_classes(ctx.options.on_malformed).items():
        _set_run(loader, name, constructor)

    # Preference stages: the think-aware collators and trainers (think_loss, weight, span logs) by the names
    # each workflow constructs them by (DPO imports its trainer class inside `run_dpo`: its module's name).
    import llamafactory.train.dpo.trainer as dpo_trainer
    import llamafactory.train.dpo.workflow as dpo_workflow
    import llamafactory.train.kto.workflow as kto_workflow

    for module, name, make in ((dpo_workflow, "PairwiseDataCollatorWithPadding", ctx.preference_collator),
                               (dpo_trainer, "CustomDPOTrainer", ctx.preference_trainer),
                               (kto_workflow, "KTODataCollatorWithPadding", ctx.preference_collator),
                               (kto_workflow, "CustomKTOTrainer", ctx.preference_trainer)):
        _set_run(module, name, functools.partial(make, getattr(module, name)))

    # Each stage's workflow fixes the template to the tokenizer (by name) before it loads the model: a chat
    # template that `native` cannot use is refused there, before any weight is read.
    for stage in ("pt", "sft", "rm", "dpo", "kto"):
        module = importlib.import_module(f"llamafactory.train.{stage}.workflow")
        if hasattr(module, "get_template_and_fix_tokenizer"):
            _set_run(module, "get_template_and_fix_tokenizer", _with_template_setup(module.get_template_and_fix_tokenizer, ctx))

    class FaithfulAutoTokenizer:  # what LF's `load_tokenizer` calls as `AutoTokenizer`
        @staticmethod
        def from_pretrained(path: str, **kwargs: Any) -> Any:
            from ..loading.tokenizer import from_pretrained

            return from_pretrained(path, **kwargs)

    _set_run(model_loader, "AutoTokenizer", FaithfulAutoTokenizer)

    # LF's adapter builds its LoraConfig / OFTConfig, then calls `get_peft_model(model, config)` by name:
    # token_init adjusts the config with the loaded, resized model in hand.
    def get_peft_model_with_thinkplugin(model, peft_config, *args, **kwargs):
        return get_peft_model(model, ctx.peft_config(model, peft_config), *args, **kwargs)

    _set_run(adapter, "get_peft_model", get_peft_model_with_thinkplugin)

    # LF's `_training_function` calls each stage's workflow by name with its callbacks list last.
    for name in ("run_pt", "run_sft", "run_rm", "run_dpo", "run_kto"):
        _set_run(tuner, name, _with_callbacks(getattr(tuner, name), ctx))


def _with_template_setup(get_template: Callable[..., Any], ctx: Any) -> Callable[..., Any]:
    def get_template_and_fix_tokenizer_with_thinkplugin(tokenizer: Any, data_args: Any) -> Any:
        with ctx.template_setup(tokenizer):
            return get_template(tokenizer, data_args)

    return get_template_and_fix_tokenizer_with_thinkplugin


def dataset_key(dataset_attr: Any, data_args: Any) -> Optional[str]:
    """The name the YAML's `dataset:` / `eval_dataset:` gives this aligned dataset (LF passes its attributes only)."""
    from llamafactory.data.parser import get_dataset_list

    for names in (data_args.dataset, data_args.eval_dataset):
        if not names:
            continue
        try:
            attrs = get_dataset_list(list(names), data_args.dataset_dir)
        except Exception:  # noqa: BLE001 - only for messages: fall back to LF's own name
            continue
        for name, attr in zip(names, attrs):
            if attr == dataset_attr:
                return str(name)
    return None


def _with_callbacks(run: Callable[..., Any], ctx: Any) -> Callable[..., Any]:
    def run_with_thinkplugin(*args: Any) -> Any:
        *head, callbacks = args
        return run(*head, list(callbacks or []) + ctx.callbacks())

    return run_with_thinkplugin

