"""`thinkplugin.token_init`: add new tokens and initialise their embedding rows from chosen tokens.

Two moments of a run:
- `prepare_lf_args` (before LF parses its arguments, tokenizer only): validate the specs against
  the real tokenizer, hand the missing tokens to LF's own `add_tokens` (not special, so
  `skip_special_tokens=True` keeps them), and record the plan.
- `token_rows_config` (LoRA / OFT: LF built its PEFT config, the model is loaded and resized):
  make the token_init rows trainable, through PEFT's trainable tokens where they fit, else through
  full trainable copies of the embedding modules (see `token_rows_config`).
- `TokenInitCallback.on_init_end` (model loaded and wrapped by PEFT, trainer built; no optimizer,
  DeepSpeed engine or checkpoint yet): write exactly the rows of the planned token ids. LF 0.9.5
  initialises new rows only when the embedding matrix grows; ids that land in a checkpoint's spare
  rows (Qwen: 151936 rows for 151669 tokens) keep whatever those rows held. This callback writes
  them either way. It must run before `train()`: DeepSpeed (any ZeRO stage) copies the weights into
  its optimizer's fp32 partitions when the engine is built, and its first step copies those back,
  so rows written at `on_train_begin` would silently revert. A resume skips the init (LF sets
  `resume_from_checkpoint`); the checkpoint's rows would overwrite it anyway.

A row is `combination + noise` where the combination is the spec's strategy's (strategies.py: `mean`,
`noisy_mean`, `tokens`, `text`, a registry a new strategy joins with one class).
Noise is Gaussian, truncated at 2 std, with std = noise * mean row norm / sqrt(hidden), so the
noise vector's norm is about `noise` times a typical row norm. Draws come from a generator
seeded by `seed`, so every rank computes the same rows.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from ..options import BLOCK, OptionsError
from .strategies import strategy

if TYPE_CHECKING:
    from ..options import ThinkPluginOptions, TokenInitSpec

NOISE_TRUNCATION = 2.0  # noise is drawn from N(0, std) truncated to [-2 std, 2 std]


@dataclass(frozen=True)
class TokenPlan:
    """What token_init does to one token, decided before the model loads."""

    token: str
    spec: TokenInitSpec
    is_new: bool  # missing from the checkpoint's tokenizer (added through LF's add_tokens)
    initialise: bool  # False: an existing token without `reinit: true` (left as trained)
    source_ids: tuple[tuple[int, ...], ...] = ()  # per source string (tokens) or the one text (text)


@dataclass
class Plan:
    tokens: list[TokenPlan] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # the id LF's tokenizer will give each token
    additional_target: tuple[str, ...] | None = None  # the user's own LF `additional_target`

    @property
    def to_initialise(self) -> list[TokenPlan]:
        return [t for t in self.tokens if t.initialise]


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


# --------------------------------------------------------------------------------------------
# before LF parses its arguments


def _split_tokens(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(t).strip() for t in value]


def _check_single_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    for text in (token, f"a{token}b", f" {token}\n"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tid is None or ids.count(tid) != 1 or (text == token and ids != [tid]):
            raise OptionsError(
                f"`{BLOCK}.token_init.{token}`: {token!r} does not encode to the single id {tid} in {text!r} "
                f"(got {ids}); pick a token string the tokenizer keeps whole."
            )
    return tid


def _source_ids(tokenizer: Any, token: str, spec: TokenInitSpec) -> tuple[tuple[int, ...], ...]:
    texts = strategy(spec.strategy).texts(spec)
    out = []
    for text in texts:
        ids = tuple(tokenizer.encode(text, add_special_tokens=False))
        if not ids:
            raise OptionsError(f"`{BLOCK}.token_init.{token}`: source {text!r} encodes to no token; give non-empty text.")
        out.append(ids)
    return tuple(out)


def build_plan(
    opts: ThinkPluginOptions, tokenizer: Any, add_tokens: list[str] | None = None, add_special_tokens: list[str] | None = None
) -> Plan:
    """Decide, per token_init entry, whether it is new and whether its rows get initialised.

    `tokenizer` is the checkpoint's own (no tokens added yet); it is left unchanged. `add_tokens` /
    `add_special_tokens` are what LF's patch_tokenizer will add, in its order (default: the new
    token_init tokens), so the plan also holds the id each token will get: PEFT needs the ids when
    the adapter is built, before any trainer holds LF's tokenizer (the row writer checks them).
    """
    import copy

    vocab = tokenizer.get_vocab()
    plan = Plan()
    probe = copy.deepcopy(tokenizer)  # the tokenizer LF will have after patch_tokenizer
    probe.add_tokens([t for t in opts.token_init if t not in vocab] if add_tokens is None else add_tokens, special_tokens=False)
    probe.add_tokens(add_special_tokens or [], special_tokens=True)
    for token, spec in opts.token_init.items():
        is_new = token not in vocab
        if not is_new and not opts.reinit and _local_rank() == 0:
            print(f"[lf_thinkplugin] warning: {BLOCK}.token_init: {token!r} already exists (id {vocab[token]}); its rows "
                  f"are left as trained (set {BLOCK}.reinit: true to re-initialise it)", flush=True)
        _check_single_id(probe, token)
        plan.tokens.append(TokenPlan(token, spec, is_new, is_new or opts.reinit, _source_ids(probe, token, spec)))
        plan.ids[token] = probe.convert_tokens_to_ids(token)
    return plan


def prepare_lf_args(opts: ThinkPluginOptions, lf_args: dict[str, Any], tokenizer: Any) -> Plan:
    """Validate token_init against the checkpoint's `tokenizer` (faithfully loaded, left unchanged), add the
    missing tokens through LF's `add_tokens`, and return the plan the run context carries."""
    if opts.train_new_tokens_only or opts.unfreeze:
        for key in ("deepspeed", "fsdp"):
            if lf_args.get(key):
                raise OptionsError(
                    f"`{BLOCK}.train_new_tokens_only` / `{BLOCK}.unfreeze` need the trainer's own optimizer step and "
                    f"are not supported with `{key}`; train the new rows without {key} first, or drop those options."
                )
    from .deepspeed_guard import check_embedding_copies

    check_embedding_copies(lf_args)
    vocab = tokenizer.get_vocab()
    special = _split_tokens(lf_args.get("add_special_tokens"))
    user_tokens = _split_tokens(lf_args.get("add_tokens"))
    ours = [t for t in opts.token_init if t not in vocab and t not in special and t not in user_tokens]
    if ours:  # LF adds them (special_tokens=False) and sets resize_vocab itself, growing the matrix if needed
        lf_args["add_tokens"] = ",".join(user_tokens + ours)
    plan = build_plan(opts, tokenizer, _split_tokens(lf_args.get("add_tokens")), special)
    if lf_args.get("additional_target"):
        plan.additional_target = tuple(_split_tokens(lf_args["additional_target"]))
    if (lf_args.get("finetuning_type") == "freeze" and not opts.train_new_tokens_only
            and not lf_args.get("freeze_extra_modules") and _local_rank() == 0):
        print(f"[lf_thinkplugin] warning: finetuning_type freeze keeps the embeddings frozen, so the {BLOCK}.token_init "
              "rows stay as initialised; set freeze_extra_modules: embed_tokens,lm_head or "
              f"{BLOCK}.train_new_tokens_only: true to train them", flush=True)
    # LoRA / OFT: no `resize_vocab` here. peft_config_for_run makes the rows trainable, and LF sets
    # resize_vocab itself whenever add_tokens adds a token, the only case where the matrix must grow.
    return plan


# --------------------------------------------------------------------------------------------
# when LF builds the LoRA / OFT adapter


def embedding_module_names(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Input then output embedding module, keyed by the last part of its name (LF's `additional_target` naming)."""
    wanted = [model.get_input_embeddings()]
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        wanted.append(out)
    names: dict[str, torch.nn.Module] = {}
    for module in wanted:
        for name, candidate in model.named_modules():
            if candidate is module:
                names.setdefault(name.split(".")[-1], module)
                break
    return names


def _trainable_tokens_misfit(model: torch.nn.Module, peft_config: Any, tied: bool) -> str | None:
    """Why PEFT's trainable tokens cannot carry the rows in this run, or None when they can."""
    from peft import LoraConfig
    from transformers.integrations import is_deepspeed_zero3_enabled, is_fsdp_enabled

    if not isinstance(peft_config, LoraConfig):
        return f"{type(peft_config).__name__} has no trainable_token_indices"
    if peft_config.trainable_token_indices is not None:
        return "trainable_token_indices is already set"
    if is_deepspeed_zero3_enabled():  # PEFT 0.18: saving a checkpoint fails (huggingface/peft#2946)
        return "DeepSpeed ZeRO-3"
    if is_fsdp_enabled():  # PEFT needs use_orig_params=True there; not verified with LF
        return "FSDP"
    if getattr(model, "quantization_method", None) is not None or getattr(model, "is_quantized", False):
        return "a quantized model"
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(model.get_input_embeddings(), torch.nn.Embedding) or (
            out is not None and not tied and type(out) is not torch.nn.Linear):
        return "embedding modules that are not torch Embedding / Linear"
    if out is not None and tied != bool(getattr(model.config, "tie_word_embeddings", False)):
        return "config.tie_word_embeddings disagrees with the weights (PEFT ties the rows by the config)"
    return None


def token_rows_config(model: torch.nn.Module, peft_config: Any, plan: Plan) -> Any:
    """Make the rows of every token_init token trainable in the adapter LF is about to build.

    Where it fits (LoRA; not ZeRO-3, FSDP or a quantized model): PEFT trainable tokens
    (`trainable_token_indices`) on each embedding module the user did not list in
    `additional_target`. Only those rows train, and the full copies LF asks for when it resizes the
    vocabulary (`modules_to_save`) are dropped. A tied output embedding follows the input rows
    (PEFT ties it). Elsewhere: full trainable copies of both modules in `modules_to_save`, as LF
    makes for resized vocabularies, unless the user chose `additional_target` themselves.
    """
    modules = embedding_module_names(model)
    names = list(modules)
    tied = len(names) == 2 and modules[names[1]].weight is modules[names[0]].weight
    user = set(plan.additional_target or ())
    saved = list(peft_config.modules_to_save or [])
    misfit = _trainable_tokens_misfit(model, peft_config, tied)
    rank0 = _local_rank() == 0
    if misfit is None:
        ids = sorted(set(plan.ids.values()))
        rows = model.get_input_embeddings().weight.shape[0]
        if any(not isinstance(i, int) or not 0 <= i < rows for i in ids):
            raise RuntimeError(f"{BLOCK}.token_init: token ids {plan.ids} do not all fall in the {rows}-row embeddings")
        keys = [n for n in names[:1 if tied else 2] if n not in user]
        peft_config.trainable_token_indices = {n: ids for n in keys} or None
        peft_config.modules_to_save = [m for m in saved if m not in names or m in user] or None
        if rank0 and keys:
            print(f"[lf_thinkplugin] token_init: LoRA trains rows {ids} of {', '.join(keys)}"
                  f"{' (tied: ' + names[1] + ' follows)' if tied else ''} as PEFT trainable tokens; "
                  "no full embedding copies (modules_to_save)", flush=True)
    elif not user:
        peft_config.modules_to_save = saved + [n for n in names if n not in saved]
        if rank0:
            print(f"[lf_thinkplugin] token_init: PEFT trainable tokens do not fit here ({misfit}); "
                  f"training full copies of {', '.join(names)} (modules_to_save)", flush=True)
    return peft_config


# --------------------------------------------------------------------------------------------
# after the model loads


@dataclass(frozen=True)
class TokenRows:
    """PEFT trainable tokens on one embedding module: `delta` holds the effective rows of `indices`
    (PEFT replaces those rows of the base weight in forward and merge); `original` is PEFT's copy of
    the base rows, written back on unmerge."""

    delta: torch.nn.Parameter
    original: torch.Tensor
    indices: list[int]

    def positions(self, ids: list[int]) -> list[int]:
        return [self.indices.index(i) for i in ids]


@dataclass(frozen=True)
class Targets:
    """Embedding weights to write: each list holds the base weight first, then trainable copies."""

    inputs: list[torch.nn.Parameter]
    outputs: list[torch.nn.Parameter]  # output weights that are not the input weights themselves
    tied: bool  # the base output weight is the input weight: output copies get the input rows
    input_tokens: list[TokenRows] = field(default_factory=list)
    output_tokens: list[TokenRows] = field(default_factory=list)  # none when tied: PEFT shares the input's

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.inputs + self.outputs + [t.delta for t in self.input_tokens + self.output_tokens]


def _weights_of(module: torch.nn.Module | None) -> list[torch.nn.Parameter]:
    if module is None:
        return []
    original = getattr(module, "original_module", None)  # PEFT ModulesToSaveWrapper / TrainableTokensWrapper
    if original is not None:
        copies = getattr(module, "modules_to_save", {}) or {}
        return [original.weight] + [m.weight for m in copies.values()]
    return [module.weight]


def _token_rows_of(module: torch.nn.Module | None) -> list[TokenRows]:
    adapter = getattr(module, "token_adapter", None)  # PEFT TrainableTokensWrapper
    if adapter is None or adapter.tied_adapter is not None:  # a tied one reads the input's delta
        return []
    return [TokenRows(delta, adapter.trainable_tokens_original[name], list(adapter.token_indices[name]))
            for name, delta in adapter.trainable_tokens_delta.items()]


def embedding_targets(model: torch.nn.Module) -> Targets:
    # stage rm: LF wraps the (PEFT) model in a value-head model whose embedding getters do not delegate
    model = getattr(model, "pretrained_model", model)
    out_module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inputs = _weights_of(model.get_input_embeddings())
    out_all = _weights_of(out_module)
    outputs = [w for w in out_all if all(w is not i for i in inputs)]
    return Targets(inputs, outputs, tied=bool(out_all) and out_all[0] is inputs[0],
                   input_tokens=_token_rows_of(model.get_input_embeddings()), output_tokens=_token_rows_of(out_module))


@contextlib.contextmanager
def gathered(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Full tensors under DeepSpeed ZeRO-3 (rank 0's edits are re-partitioned on exit), else a no-op."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        import deepspeed  # ZeRO-3 runs have it; imported only there

        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            yield
    else:
        yield


def _existing_stats(w: torch.Tensor, ids: list[int], n_tokens: int, need_mean: bool, need_norm: bool):
    """Mean row and mean row norm over existing token rows, in float64 chunks (no full-matrix copy)."""
    excluded = sorted({i for i in ids if i < n_tokens})
    total = torch.zeros(w.shape[1], dtype=torch.float64, device=w.device)
    norms = torch.zeros((), dtype=torch.float64, device=w.device)
    for lo in range(0, n_tokens, 16384) if (need_mean or need_norm) else ():
        chunk = w[lo:min(lo + 16384, n_tokens)].double()
        total += chunk.sum(dim=0) if need_mean else 0
        norms += chunk.norm(dim=1).sum() if need_norm else 0
    if excluded:
        rows = w[excluded].double()
        total -= rows.sum(dim=0) if need_mean else 0
        norms -= rows.norm(dim=1).sum() if need_norm else 0
    count = n_tokens - len(excluded)
    return (total / count).float().cpu(), float(norms / count)


def token_rows(
    weight: torch.Tensor, plan: list[TokenPlan], ids: list[int], n_tokens: int, seed: int
) -> tuple[torch.Tensor, list[float]]:
    """The new rows (float32, on CPU) for `plan` given one embedding matrix; also the noise std used."""
    w = weight.detach()
    need_mean = any(strategy(e.spec.strategy).reads_mean for e in plan)
    mean_row, mean_norm = _existing_stats(w, ids, n_tokens, need_mean, any(e.spec.noise > 0 for e in plan))
    gen = torch.Generator().manual_seed(seed)
    rows, stds = [], []
    for entry in plan:
        spec = entry.spec
        base = strategy(spec.strategy).combine(w, entry.source_ids, mean_row)
        std = spec.noise * mean_norm / math.sqrt(w.shape[1])
        noise = torch.zeros_like(base)
        if std > 0:
            torch.nn.init.trunc_normal_(noise, std=std, a=-NOISE_TRUNCATION * std, b=NOISE_TRUNCATION * std, generator=gen)
        rows.append(base + noise)
        stds.append(std)
    return torch.stack(rows), stds


def initialise_rows(model: torch.nn.Module, tokenizer: Any, plan: Plan, seed: int = 0) -> list[dict[str, Any]]:
    """Write the planned rows into every embedding copy of `model`; return one table row per token."""
    entries = plan.to_initialise
    if not entries:
        return []
    ids = [tokenizer.convert_tokens_to_ids(e.token) for e in entries]
    targets = embedding_targets(model)
    n_tokens = len(tokenizer)
    table = []
    with torch.no_grad(), gathered(targets.params):
        rows_in = targets.inputs[0].shape[0]
        for e, tid in zip(entries, ids):
            if tid is None or tid >= rows_in:
                raise RuntimeError(
                    f"{BLOCK}.token_init: {e.token!r} has id {tid} but the input embeddings have {rows_in} rows; "
                    "LF did not add/resize it (is it in `add_tokens`?)"
                )
            for rows in targets.input_tokens + targets.output_tokens:
                if tid not in rows.indices:
                    raise RuntimeError(
                        f"{BLOCK}.token_init: {e.token!r} has id {tid} in LF's tokenizer, but the adapter's trainable "
                        f"tokens are {rows.indices} (planned {plan.ids}); did something else add tokens before it?"
                    )
        new_in, stds = token_rows(targets.inputs[0], entries, ids, n_tokens, seed)
        for weight in targets.inputs:
            weight.data[ids] = new_in.to(weight.device, weight.dtype)
        new_out = None
        if targets.outputs:
            new_out = new_in if targets.tied else token_rows(targets.outputs[0], entries, ids, n_tokens, seed + 1)[0]
            for weight in targets.outputs:
                weight.data[ids] = new_out.to(weight.device, weight.dtype)
        for group, new in ((targets.input_tokens, new_in), (targets.output_tokens, new_out)):
            for rows in group:  # base, delta and PEFT's original agree: the same rows merged or not
                pos = rows.positions(ids)
                rows.delta.data[pos] = new.to(rows.delta.device, rows.delta.dtype)
                rows.original[pos] = new.to(rows.original.device, rows.original.dtype)
        for k, (e, tid) in enumerate(zip(entries, ids)):
            sources = [[tokenizer.decode([i]) for i in s] for s in e.source_ids]
            table.append({
                "token": e.token, "id": tid, "strategy": e.spec.strategy, "sources": sources,
                "noise_std": stds[k], "norm_in": new_in[k].norm().item(),
                "norm_out": None if new_out is None or targets.tied else new_out[k].norm().item(),
            })
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    head = ("token", "id", "strategy", "source tokens", "row norm (in / out)")
    lines = [head]
    for r in table:
        src = " | ".join(" ".join(repr(t) for t in s) for s in r["sources"]) or "(all existing rows)"
        norm = f"{r['norm_in']:.4f}" + ("" if r["norm_out"] is None else f" / {r['norm_out']:.4f}")
        lines.append((r["token"], str(r["id"]), r["strategy"] + (f"+noise({r['noise_std']:.2g})" if r["noise_std"] else ""), src, norm))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


class TokenInitCallback(TrainerCallback):
    """Initialises the planned rows when the trainer is built, before any optimizer or DeepSpeed engine
    holds a copy of them; never on resume."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.table: list[dict[str, Any]] | None = None

    def on_init_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.table is None and not args.resume_from_checkpoint:
            self._initialise(args, state, model, processing_class)

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step > 0:  # resumed: the checkpoint's (trained) rows are loaded over anything written
            if self.table is None:
                self.table = []
                if state.is_world_process_zero:
                    print(f"[lf_thinkplugin] token_init: resumed at step {state.global_step}; rows kept from the checkpoint", flush=True)
            return
        if self.table is not None:  # initialised at on_init_end, or a second train() call
            return
        if getattr(args, "deepspeed", None):  # the engine's fp32 partitions hold the old rows by now
            raise RuntimeError(
                f"{BLOCK}.token_init: the callback was added after the trainer was built, too late under DeepSpeed; "
                "pass it in `Trainer(callbacks=...)` instead of add_callback()."
            )
        self._initialise(args, state, model, processing_class)

    def _initialise(self, args, state, model, processing_class) -> None:
        tokenizer = getattr(processing_class, "tokenizer", processing_class)  # a processor wraps its tokenizer
        self.table = initialise_rows(model, tokenizer, self.plan, seed=args.seed)
        ranks, zero3 = check_same_rows_on_ranks(model, [r["id"] for r in self.table])
        if state.is_world_process_zero and self.table:
            note = ""
            if ranks > 1:
                note = (f"\n(written on rank 0, re-partitioned across {ranks} ranks by DeepSpeed ZeRO-3)" if zero3
                        else f"\n(identical on all {ranks} ranks)")
            print("[lf_thinkplugin] token_init rows:\n" + format_table(self.table) + note, flush=True)


def check_same_rows_on_ranks(model: torch.nn.Module, ids: list[int]) -> tuple[int, bool]:
    """Under torchrun (not ZeRO-3, where rank 0 wrote them), verify every rank holds the same new rows.

    The rows are computed from the same weights with the same seed on every rank; this makes a
    divergence (e.g. ranks loading different checkpoints) an error instead of silent drift.
    Returns the world size and whether ZeRO-3 partitions the rows.
    """
    import torch.distributed as dist
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not (dist.is_available() and dist.is_initialized()):
        return 1, False
    world, zero3 = dist.get_world_size(), is_deepspeed_zero3_enabled()
    if world == 1 or not ids or zero3:
        return world, zero3
    targets = embedding_targets(model)
    rows = [w.detach()[ids] for w in targets.inputs + targets.outputs]
    rows += [t.delta.detach()[t.positions(ids)] for t in targets.input_tokens + targets.output_tokens]
    digest = [float(r.double().sum().cpu()) for r in rows] + [float(r.double().abs().sum().cpu()) for r in rows]
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, digest)
    if any(d != every[0] for d in every):
        raise RuntimeError(f"{BLOCK}.token_init: the new rows differ between ranks ({every}); do all ranks load the same checkpoint?")
    return len(every), False


def make_callbacks(plan: Plan) -> list[TrainerCallback]:
    return [TokenInitCallback(plan)]

