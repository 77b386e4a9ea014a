"""`thinkplugin.train_new_tokens_only` and `thinkplugin.unfreeze`: train the token_init rows first, then more.

How "only the new rows change" is made exact, for any torch optimizer:
- every parameter outside the schedule gets `requires_grad=False` (not in the optimizer at all);
- under LoRA with PEFT trainable tokens the trainable embedding weights are PEFT's
  `trainable_tokens_delta`, which hold the new rows and nothing else: they train as they are;
- full embedding weights (the model's own, or PEFT's trainable `modules_to_save` copy) get a
  gradient hook that zeroes every other row, so gradient clipping and the optimizer's moments see
  the new rows only;
- a mask alone is not enough: AdamW's decoupled weight decay (`p -= lr * wd * p`) and any state an
  optimizer carries still move every row. So after each optimizer step the other rows are copied
  back from a snapshot taken when training starts (one extra copy of the embedding matrix).

Staged unfreezing: `unfreeze: [{step: 100, modules: ["*layers.23.*"]}]`. Every parameter a stage
names is in the optimizer from the start (so the optimizer and LR scheduler are built once, by
LF), but until its step its gradient is zeroed in backward and dropped before the optimizer step,
so it gets no update, no weight decay and no optimizer state. A stage naming the embedding weight
opens all of its rows. Patterns are fnmatch patterns over `model.named_parameters()` names and
may only name parameters LF's `finetuning_type` made trainable (LoRA: the adapters, trainable
tokens and modules_to_save copies), plus the embedding weights.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from ..options import BLOCK, OptionsError
from .token_init import embedding_targets

if TYPE_CHECKING:
    from ..options import ThinkPluginOptions


def _trainable_embedding_weights(model: torch.nn.Module, row_ids: list[int]) -> list[tuple[torch.nn.Parameter, list[int]]]:
    """The embedding weights that training updates, each with the positions of `row_ids` in it: PEFT's
    trainable-token rows when there are, else PEFT's copies, else the model's own weights."""
    targets = embedding_targets(model)
    out: list[tuple[torch.nn.Parameter, list[int]]] = []
    for tokens in targets.input_tokens + targets.output_tokens:
        missing = [i for i in row_ids if i not in tokens.indices]
        if missing:
            raise RuntimeError(f"{BLOCK}.train_new_tokens_only: rows {missing} are not among the adapter's "
                               f"trainable tokens {tokens.indices}")
        out.append((tokens.delta, tokens.positions(row_ids)))
    for group, tokens in ((targets.inputs, targets.input_tokens), (targets.outputs, targets.output_tokens)):
        if not group or tokens:
            continue
        for w in group[1:] or group[:1]:
            if all(w is not o for o, _ in out):
                out.append((w, row_ids))
    return out


class NewRowsSchedule(TrainerCallback):
    """Applies train_new_tokens_only and the unfreeze stages to one model (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, row_ids: list[int], opts: ThinkPluginOptions) -> None:
        rows = model.get_input_embeddings().weight.shape[0]
        bad = [i for i in row_ids if not isinstance(i, int) or not 0 <= i < rows]
        if bad:
            raise RuntimeError(f"{BLOCK}.train_new_tokens_only: token ids {bad} are not rows of the {rows}-row embeddings")
        self.row_ids = sorted(set(row_ids))
        names = {id(p): n for n, p in model.named_parameters()}
        row_weights = _trainable_embedding_weights(model, self.row_ids)
        if any(id(w) not in names for w, _ in row_weights):
            raise RuntimeError(f"{BLOCK}.train_new_tokens_only: embedding weights are not parameters of the model")
        adapter_parts = (".modules_to_save.", ".trainable_tokens_delta.")
        if hasattr(model, "peft_config") and any(all(p not in names[id(w)] for p in adapter_parts) for w, _ in row_weights):
            raise OptionsError(
                f"`{BLOCK}.train_new_tokens_only` with LoRA trains PEFT's trainable tokens or embedding copies "
                "(modules_to_save), and your `additional_target` leaves the embeddings out; drop `additional_target` "
                "or add the embedding modules to it, e.g. additional_target: embed_tokens,lm_head"
            )
        self.rows = {names[id(w)]: w for w, _ in row_weights}
        self.positions = {names[id(w)]: pos for w, pos in row_weights}  # rows of row_ids in each weight
        eligible = {n: p for n, p in model.named_parameters() if p.requires_grad or n in self.rows}
        self.stages: list[tuple[int, list[str]]] = []
        staged: dict[str, torch.nn.Parameter] = {}
        for k, stage in enumerate(opts.unfreeze or []):
            matched = []
            for pattern in stage.modules:
                hits = [n for n in eligible if fnmatch.fnmatchcase(n, pattern)]
                if not hits:
                    sample = ", ".join(list(eligible)[:6])
                    raise OptionsError(
                        f"`{BLOCK}.unfreeze[{k}].modules`: pattern {pattern!r} matches no trainable parameter; "
                        f"names look like: {sample} (use fnmatch patterns such as '*layers.1.*')"
                    )
                matched += hits
            self.stages.append((stage.step, sorted(set(matched))))
            staged.update({n: eligible[n] for n in matched})
        self.closed: dict[str, torch.nn.Parameter] = {n: p for n, p in staged.items() if n not in self.rows}
        # embedding weights whose other rows are held (a trainable-token delta has no other rows)
        self.masked = {n: w for n, w in self.rows.items() if len(self.positions[n]) < w.shape[0]}
        self._snapshots: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}
        for n, p in model.named_parameters():
            p.requires_grad_(n in self.rows or n in staged)
        for n, w in self.rows.items():
            w.register_hook(self._row_hook(n))
        for n, p in self.closed.items():
            p.register_hook(self._closed_hook(n))

    # ---- hooks (backward) ----
    def _row_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            if name not in self.masked:
                return grad
            mask = self._masks.get(name)
            if mask is None or mask.device != grad.device or mask.dtype != grad.dtype:
                mask = torch.zeros(grad.shape[0], 1, dtype=grad.dtype, device=grad.device)
                mask[self.positions[name]] = 1
                self._masks[name] = mask
            return grad * mask

        return hook

    def _closed_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(grad) if name in self.closed else grad

        return hook

    # ---- schedule ----
    def open_until(self, global_step: int) -> list[str]:
        """Open every stage whose step has come; return the names opened now."""
        opened = []
        for step, names in self.stages:
            if step > global_step:
                continue
            for n in names:
                if self.closed.pop(n, None) is not None:
                    opened.append(n)
                if self.masked.pop(n, None) is not None:
                    self._snapshots.pop(n, None)
                    opened.append(n)
        return opened

    def _sync(self, state) -> None:
        opened = self.open_until(state.global_step)
        if opened and state.is_world_process_zero:
            print(f"[lf_thinkplugin] unfreeze at step {state.global_step}: {len(opened)} parameters open "
                  f"(e.g. {opened[0]})", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._sync(state)
        # snapshot after init / checkpoint load; only the rows outside row_ids are ever read back
        self._snapshots = {n: w.detach().clone() for n, w in self.masked.items()}
        if state.is_world_process_zero:
            print(f"[lf_thinkplugin] train_new_tokens_only: rows {self.row_ids} of {', '.join(self.rows)}; "
                  f"{len(self.closed)} parameters wait for unfreeze stages {[s for s, _ in self.stages]}", flush=True)

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync(state)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for p in self.closed.values():
            p.grad = None  # torch optimizers skip grad-less parameters: no step, no decay, no state

    def on_optimizer_step(self, args, state, control, **kwargs):
        with torch.no_grad():
            for n, w in self.masked.items():
                snap = self._snapshots.get(n)
                if snap is None:
                    continue
                rows = self.positions[n]
                trained = w.data[rows].clone()
                w.data.copy_(snap)
                w.data[rows] = trained


def wrap_trainer_class(cls: type, opts: ThinkPluginOptions) -> type:
    """`cls` with train_new_tokens_only / unfreeze applied when its model is handed over; `cls` itself otherwise."""
    if not opts.train_new_tokens_only:
        return cls

    class NewRowsTrainer(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tok = getattr(self.processing_class, "tokenizer", self.processing_class)
            ids = [tok.convert_tokens_to_ids(t) for t in opts.token_init]
            self.new_rows: NewRowsSchedule | None = NewRowsSchedule(self.model, ids, opts)
            self.add_callback(self.new_rows)

    NewRowsTrainer.__name__ = NewRowsTrainer.__qualname__ = f"NewRows{cls.__name__}"
    return NewRowsTrainer
