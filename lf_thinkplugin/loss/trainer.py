"""The think-aware trainer: reasoning-weighted loss and per-span loss logging.

`think_trainer_class(base_cls, opts)` subclasses LF's `CustomSeq2SeqTrainer`. It takes the
collator's `think_span` map (0 not trained / 1 answer / 2 reasoning) out of each batch before the
model sees it, then:

- `think_loss_weight == 1`: the loss is LF's / the model's own, untouched (bit for bit).
- `think_loss_weight = w < 1`: loss = sum(weight * token CE) / sum(weight), reasoning tokens
  weighted w, answers 1. The denominator is built the way transformers' Trainer builds its token
  count `num_items_in_batch`: summed over all micro-batches of a gradient-accumulation step and,
  with `average_tokens_across_devices`, over all devices; without a token count (e.g. LF with a
  multimodal processor) it is the micro-batch's own weight sum and the Trainer divides by the
  accumulation steps. At w = 1 the formula is the standard loss. A MoE model's router aux loss
  (`outputs.aux_loss`, present with `output_router_logits`) is added as `coef * aux`, exactly as the
  model's forward adds it when it gets labels.
- `log_span_loss`: on the optimizer steps the Trainer will log (predicted from `logging_steps` /
  `logging_first_step`), the mean token CE on reasoning and on answer tokens of that step's
  batches (all accumulation micro-batches, all devices) is added to the log as `loss_think` /
  `loss_answer`, and on the think tags themselves (targets that are `<think>` / `</think>` as single
  ids: the curve to watch when new tag tokens are initialised) as `loss_tags`. Reasoning tokens
  masked by the policy are still measured (against their input ids), so `loss_think` stays
  meaningful under `mask_reasoning`. Other steps pay nothing.

Both cross-entropies run over `LOSS_CHUNK` trained positions at a time, so the extra memory is one
chunk's fp32 softmax, not one over every position (about 10 GB at 16k tokens x 152k vocab).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F

from ..options import ThinkPluginOptions
from .collator import SPAN_KEY
from .spans import IGNORE_INDEX, REASONING

logger = logging.getLogger("lf_thinkplugin")

# Positions per cross-entropy piece: the fp32 working copy is LOSS_CHUNK x vocab (1.2 GB at 152k).
LOSS_CHUNK = 2048


def token_weights(labels: torch.Tensor, kinds: torch.Tensor, weight: float) -> torch.Tensor:
    """float32 weight per label position: 0 where not trained, `weight` on reasoning, 1 on answers."""
    trained = (labels != IGNORE_INDEX).to(torch.float32)
    return torch.where(kinds == REASONING, trained * weight, trained)


def _shift(x: torch.Tensor, fill: int) -> torch.Tensor:
    """Targets of each logit position, as transformers' ForCausalLMLoss shifts labels."""
    return F.pad(x, (0, 1), value=fill)[..., 1:]


def _pieces(targets: torch.Tensor) -> list[tuple[slice | torch.Tensor, int]]:
    """(index, count) of the trained positions (target not IGNORE) of flat `targets`, LOSS_CHUNK at a time.
    A run of consecutive positions is a slice (a view of the logits: no copy), otherwise an index tensor."""
    rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    pieces: list[tuple[slice | torch.Tensor, int]] = []
    if not len(rows):
        return pieces
    for part, part_cpu in zip(rows.split(LOSS_CHUNK), rows.cpu().split(LOSS_CHUNK)):
        first, last = int(part_cpu[0]), int(part_cpu[-1])
        pieces.append((slice(first, last + 1) if last - first + 1 == len(part_cpu) else part, len(part_cpu)))
    return pieces


class _ChunkedCrossEntropy(torch.autograd.Function):
    """fp32 token CE per position (0 where the target is IGNORE), as `F.cross_entropy(logits.float(),
    reduction="none")` computes it, but over LOSS_CHUNK rows at a time in forward and backward, so
    no fp32 copy, log-softmax or its gradient is ever held for all positions."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat, flat_t = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
        ce = torch.zeros(flat_t.shape, dtype=torch.float32, device=logits.device)
        ctx.pieces = _pieces(flat_t)  # kept for backward: one nonzero and one host sync per step, not two
        for rows, _ in ctx.pieces:
            ce[rows] = F.cross_entropy(flat[rows].float(), flat_t[rows], reduction="none")
        ctx.save_for_backward(logits, targets)
        return ce.view(targets.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        logits, targets = ctx.saved_tensors
        flat, flat_t, flat_g = logits.reshape(-1, logits.size(-1)), targets.reshape(-1), grad.reshape(-1)
        pieces = ctx.pieces
        out = torch.empty_like(flat)
        _zero_outside(out, pieces)
        for rows, n in pieces:
            # d CE / d logits = softmax - onehot(target), in fp32, cast back as `.float()`'s backward does.
            # A slice piece is written in place in `out` (no fp32 temporary, no copy pass: each full pass
            # over a chunk x vocab block is ~1% of a CPU step at 152k vocab).
            g = flat_g[rows].unsqueeze(1)
            dst = out[rows] if isinstance(rows, slice) else None
            if dst is not None and dst.dtype == torch.float32:
                d = torch.softmax(flat[rows], dim=-1, out=dst)
            else:
                d = torch.softmax(flat[rows], dim=-1, dtype=torch.float32)
            d[torch.arange(n, device=d.device), flat_t[rows]] -= 1
            if dst is not None:
                torch.mul(d, g, out=dst)  # in place, or cast to the logits' dtype on the way
            else:
                out[rows] = d.mul_(g).to(out.dtype)
        return out.view(logits.shape), None


def _zero_outside(out: torch.Tensor, pieces: list[tuple[slice | torch.Tensor, int]]) -> None:
    """Zero the rows of `out` no piece writes (untrained positions: no gradient)."""
    if not all(isinstance(rows, slice) for rows, _ in pieces):
        out.zero_()
        return
    start = 0
    for rows, _ in pieces:
        out[start:rows.start].zero_()
        start = rows.stop
    out[start:].zero_()


def chunked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Token CE per position of `logits` (..., vocab) against `targets` (...), 0 where IGNORE."""
    return _ChunkedCrossEntropy.apply(logits, targets.to(logits.device))


def weighted_loss_sum(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor, weight: float):
    """(sum of weight * token CE, token CE per position, shifted weights) for one batch."""
    targets = _shift(labels, IGNORE_INDEX)
    weights = _shift(token_weights(labels, kinds, weight), 0).to(logits.device)
    ce = chunked_cross_entropy(logits, targets)
    return (ce * weights).sum(), ce, weights


@functools.cache
def _trainer_class(base_cls: type) -> type:
    class ThinkTrainer(base_cls):  # type: ignore[valid-type, misc]
        think_options: ThinkPluginOptions = ThinkPluginOptions()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._span_sums: torch.Tensor | None = None  # [think CE, think n, answer CE, answer n, tags CE, tags n]
            self._tags: torch.Tensor | None = None
            self._span_step = -1

        # --- loss -------------------------------------------------------------------------------

        @property
        def _weighted(self) -> bool:
            return self.think_options.think_loss_weight != 1.0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            kinds = inputs.pop(SPAN_KEY, None)
            if kinds is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            track = self._is_logging_step(model)
            if not self._weighted:
                if not track:
                    return super().compute_loss(
                        model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                    )
                labels, input_ids = inputs["labels"], inputs["input_ids"]
                result = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
                if not isinstance(result, tuple):  # LF's ASFT loss returns no outputs: nothing to measure
                    return result
                loss, outputs = result
                self._track(_logits(outputs), labels, input_ids, kinds)
                return (loss, outputs) if return_outputs else loss

            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = _logits(outputs)
            if logits is None:
                raise RuntimeError(
                    "thinkplugin.think_loss_weight needs the model's logits, but the model returned none "
                    "(a fused loss kernel such as Liger's?); disable it or use think_loss_weight: 1"
                )
            total, _, weights = weighted_loss_sum(logits, labels, kinds, self.think_options.think_loss_weight)
            if num_items_in_batch is None:  # the Trainer divides by the accumulation steps itself
                loss = total / weights.sum().clamp(min=torch.finfo(torch.float32).tiny)
            else:
                loss = total / torch.as_tensor(num_items_in_batch, device=total.device).clamp(min=torch.finfo(torch.float32).tiny)
            aux = self._router_aux_term(model, outputs)
            if aux is not None:  # before the cross-device scaling below, which the Trainer applies to the model's loss
                loss = loss + aux.to(loss.device)
            if (num_items_in_batch is not None and self.args.average_tokens_across_devices
                    and (self.model_accepts_loss_kwargs or self.compute_loss_func)):
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
            if track:
                self._track(logits, labels, inputs["input_ids"], kinds)
            return (loss, outputs) if return_outputs else loss

        def _router_aux_term(self, model, outputs) -> torch.Tensor | None:
            """`coef * aux_loss` as a MoE model's forward adds it to its loss when given labels, or None.

            The model computes aux_loss without labels too (from `output_router_logits`, which LF turns on
            with `moe_aux_loss_coef`); only the addition is skipped, so it is redone here with the model's
            own coefficient attribute."""
            aux = _output(outputs, "aux_loss")
            if not torch.is_tensor(aux):
                return None
            coef = _aux_coef(self.accelerator.unwrap_model(model))
            if coef is None:
                if not getattr(self, "_aux_warned", False):
                    self._aux_warned = True
                    logger.warning(
                        "thinkplugin: the model returns a router aux_loss but no known coefficient attribute "
                        "(router_aux_loss_coef / aux_loss_coef); the weighted loss leaves it out"
                    )
                return None
            return coef * aux

        def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
            """The Trainer's token count, replaced by the weight sum when reasoning is weighted."""
            count = super()._get_num_items_in_batch(batch_samples, device)
            if count is None or not self._weighted or any(SPAN_KEY not in b for b in batch_samples):
                return count
            w = self.think_options.think_loss_weight
            total = sum(token_weights(b["labels"], b[SPAN_KEY], w).sum() for b in batch_samples)
            # the same cross-device / DataParallel handling transformers applies to the token count
            if self.args.average_tokens_across_devices:
                if self.args.world_size > 1:
                    total = self.accelerator.gather(total.to(device)).sum()
            elif self.args.n_gpu > 1:
                total = total / self.args.n_gpu
            total = total.to(device)
            if self.args.n_gpu > 1 and total.dim() == 0:
                total = total.unsqueeze(0).expand(self.args.n_gpu, -1)
            pc = getattr(self.accelerator, "parallelism_config", None)
            if pc is not None:
                total = total / pc.non_data_parallel_size
            return total

        def prediction_step(self, model, inputs, *args, **kwargs):
            if self.args.predict_with_generate:  # generate() takes no span map; the loss is not computed
                inputs.pop(SPAN_KEY, None)
            return super().prediction_step(model, inputs, *args, **kwargs)

        # --- span-loss logging ------------------------------------------------------------------

        def _is_logging_step(self, model) -> bool:
            """True while computing the batches of an optimizer step the Trainer is going to log."""
            if not self.think_options.log_span_loss or not model.training:
                return False
            step = self.state.global_step + 1
            if self.args.logging_first_step and step == 1:
                return True
            every = self.state.logging_steps
            return self.args.logging_strategy == "steps" and bool(every) and step % every == 0

        @torch.no_grad()
        def _track(self, logits, labels, input_ids, kinds) -> None:
            if logits is None:
                return
            if self._span_step != self.state.global_step:  # a new logging step: drop anything stale
                self._span_sums, self._span_step = None, self.state.global_step
            masked = (labels == IGNORE_INDEX) & (kinds == REASONING)  # policy-masked reasoning: its own ids
            targets = _shift(torch.where(masked, input_ids, labels), IGNORE_INDEX)
            kind = _shift(kinds.to(torch.int64), 0)
            kind = torch.where(targets == IGNORE_INDEX, torch.zeros_like(kind), kind)
            at = (kind > 0).to(logits.device)
            targets = torch.where(at, targets.to(logits.device), IGNORE_INDEX)
            ce = chunked_cross_entropy(logits, targets)[at]  # in the order logits[at] would give
            think = kind.to(logits.device)[at] == REASONING
            tag_ids = self._tag_ids(logits.device)
            tag = torch.isin(targets[at], tag_ids) if tag_ids is not None else torch.zeros_like(think)
            sums = torch.stack([ce[think].sum(), think.sum(), ce[~think].sum(), (~think).sum(),
                                ce[tag].sum(), tag.sum()]).to(torch.float32)
            self._span_sums = sums if self._span_sums is None else self._span_sums + sums

        def _tag_ids(self, device: torch.device) -> torch.Tensor | None:
            """The think tags' single ids (the collator's own tags), or None where a tag spans several tokens."""
            if self._tags is None:
                tags = getattr(self.data_collator, "think_tags", None)
                single = tags is not None and tags.single_token
                self._tags = torch.tensor([tags.open_id, tags.close_id]) if single else torch.empty(0, dtype=torch.long)
            return self._tags.to(device) if self._tags.numel() else None

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._span_sums is not None and self._span_step == self.state.global_step - 1:
                sums = self._span_sums
                if self.accelerator.num_processes > 1:
                    sums = self.accelerator.reduce(sums, reduction="sum")
                think_ce, think_n, answer_ce, answer_n, tags_ce, tags_n = sums.tolist()
                if think_n:
                    logs["loss_think"] = think_ce / think_n
                if answer_n:
                    logs["loss_answer"] = answer_ce / answer_n
                if tags_n:
                    logs["loss_tags"] = tags_ce / tags_n
            if "loss" in logs:
                self._span_sums = None
            return super().log(logs, *args, **kwargs)

    ThinkTrainer.__name__ = ThinkTrainer.__qualname__ = f"Think{base_cls.__name__}"
    return ThinkTrainer


def _output(outputs: Any, key: str) -> Any:
    if isinstance(outputs, dict):
        return outputs.get(key)
    return getattr(outputs, key, None)


def _logits(outputs: Any) -> torch.Tensor | None:
    return _output(outputs, "logits")


def _aux_coef(model) -> float | None:
    """The router aux-loss coefficient the model's forward multiplies aux_loss by (transformers' MoE models)."""
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    for name in ("router_aux_loss_coef", "aux_loss_coef"):  # aux_loss_coef: JetMoe
        coef = getattr(model, name, None)
        if isinstance(coef, (int, float)):
            return coef
    config = getattr(model, "config", None)
    # the VL MoE models (qwen3_vl_moe, glm4v_moe, ...) read it from the text config at forward time
    for cfg in (getattr(config, "text_config", None), config):
        coef = getattr(cfg, "router_aux_loss_coef", None)
        if isinstance(coef, (int, float)):
            return coef
    return None


def think_trainer_class(base_cls: type, opts: ThinkPluginOptions) -> type:
    """A subclass of LF's trainer class `base_cls` with the think loss of `opts` (constructor: LF's kwargs)."""
    return type(f"Think{base_cls.__name__}", (_trainer_class(base_cls),), {"think_options": opts})
