"""Think-aware preference training: DPO (every `pref_loss`: sigmoid, ipo, orpo, simpo, ...) and KTO.

The collators are LF's, then the `think_loss` policy on the labels (loss/collator.py): `mask_reasoning`
and `mask_empty` take those tokens out of the labels, so they are out of every sequence's
log-probability: the policy's, the reference's (LoRA with the adapter off, or a separate `ref_model`:
both go through the same forward on the same batch) and the averaged ones (ipo / orpo / simpo divide by
the tokens that remain). KTO's KL responses get the same policy.

`think_loss_weight = w`: a sequence's score is sum(weight x token log-prob), reasoning tokens weighted
w, answers 1; the averaged losses divide by sum(weight). At w = 1 this is LF's own `get_batch_logps`.

`log_span_loss`: each logged step also shows the rewards split into their reasoning and answer parts
(`rewards/chosen_reasoning` + `rewards/chosen_answer` = `rewards/chosen`, same for rejected; KTO:
`logps/chosen_reasoning` + `logps/chosen_answer` = `logps/chosen`, same for rejected) and the mean reasoning length of each side in tokens
(`think/chosen_reasoning_tokens`, `think/rejected_reasoning_tokens`), counted before any masking.

The DPO forward is LF's `concatenated_forward` with the weighted sum in place of `get_batch_logps`
(one log-softmax, as LF's); LD-DPO's `ld_alpha` is refused with these options (options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..options import ThinkPluginOptions
from .collator import SPAN_KEY, think_collator_class
from .spans import IGNORE_INDEX, REASONING


@dataclass
class SequenceLogps:
    """Per sequence: the weighted log-prob sum, the weight sum, the reasoning part of the sum, reasoning tokens."""

    total: torch.Tensor
    count: torch.Tensor
    reasoning: torch.Tensor
    reasoning_tokens: torch.Tensor


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor, weight: float) -> SequenceLogps:
    """LF's `get_batch_logps` (shifted labels, IGNORE_INDEX out) with reasoning positions weighted `weight`."""
    labels = labels[:, 1:]
    kinds = kinds[:, 1:].to(labels.device)
    logits = logits[:, :-1, :]
    trained = labels != IGNORE_INDEX
    token_logps = torch.gather(logits.log_softmax(-1), dim=2, index=labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    reasoning = kinds == REASONING
    w = trained.to(token_logps.dtype)
    if weight != 1.0:
        w = torch.where(reasoning, w * weight, w)
    weighted = token_logps * w
    return SequenceLogps(weighted.sum(-1), w.sum(-1), (weighted * reasoning).sum(-1), reasoning.sum(-1))


def _detached(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def preference_collator_class(base_cls: type) -> type:
    """The think collator for LF's pairwise collator (DPO, RM) or its KTO collator."""
    return think_collator_class(base_cls, kl=base_cls.__name__.startswith("KTO"))


def _span_metrics(prefix: str, side: str, reward_scale: torch.Tensor | float, policy: SequenceLogps,
                  reference: SequenceLogps | None, rows: slice | torch.Tensor) -> dict[str, float]:
    """A side's reward split into reasoning and answer parts, and its mean reasoning length."""
    reasoning = policy.reasoning[rows] - (reference.reasoning[rows] if reference is not None else 0)
    total = policy.total[rows] - (reference.total[rows] if reference is not None else 0)
    reasoning, answer = reward_scale * reasoning, reward_scale * (total - reasoning)
    return {f"{prefix}rewards/{side}_reasoning": reasoning.mean().item(),
            f"{prefix}rewards/{side}_answer": answer.mean().item(),
            f"{prefix}think/{side}_reasoning_tokens": policy.reasoning_tokens[rows].float().mean().item()}


def _dpo_class(base_cls: type) -> type:
    class ThinkDPOTrainer(base_cls):  # type: ignore[valid-type, misc]
        think_options: ThinkPluginOptions

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._think_logps: dict[bool, SequenceLogps] = {}  # is_ref_model -> the last forward's parts

        def concatenated_forward(self, model, batch, is_ref_model: bool = False):
            kinds = batch[SPAN_KEY]
            batch = {k: v for k, v in batch.items() if k != SPAN_KEY}
            if self.finetuning_args.use_ref_model:
                batch = _detached(batch)
            labels = batch.pop("labels")
            all_logits = model(**batch, return_dict=True, use_cache=False).logits.to(torch.float32)
            parts = sequence_logps(all_logits, labels, kinds, self.think_options.think_loss_weight)
            all_logps, valid_length = parts.total, parts.count
            if self.loss_type in ("ipo", "orpo", "simpo"):
                all_logps = all_logps / valid_length
                parts = SequenceLogps(all_logps, valid_length, parts.reasoning / valid_length, parts.reasoning_tokens)
            self._think_logps[is_ref_model] = parts
            batch_size = batch["input_ids"].size(0) // 2
            chosen_logps, rejected_logps = all_logps.split(batch_size, dim=0)
            chosen_logits, rejected_logits = all_logits.split(batch_size, dim=0)
            chosen_length, _ = valid_length.split(batch_size, dim=0)
            chosen_logps_avg = chosen_logps if self.loss_type in ("ipo", "orpo", "simpo") else chosen_logps / chosen_length
            return {"chosen_logps": chosen_logps, "rejected_logps": rejected_logps, "chosen_logits": chosen_logits,
                    "rejected_logits": rejected_logits, "chosen_logps_avg": chosen_logps_avg}

        def get_batch_loss_metrics(self, model, batch, train_eval="train"):
            self._think_logps.clear()
            loss, metrics = super().get_batch_loss_metrics(model, batch, train_eval)
            if self.think_options.log_span_loss and False in self._think_logps:
                policy, reference = self._think_logps[False], self._think_logps.get(True)
                half = policy.total.size(0) // 2
                prefix = "eval_" if train_eval == "eval" else ""
                for side, rows in (("chosen", slice(0, half)), ("rejected", slice(half, None))):
                    metrics.update(_span_metrics(prefix, side, self.beta, policy, reference, rows))
            return loss, metrics

    return ThinkDPOTrainer


_KTO_SUMS = tuple(f"think/{side}_{what}" for side in ("chosen", "rejected")
                  for what in ("reasoning_logps_sum", "answer_logps_sum", "reasoning_tokens_sum", "count"))


def _kto_class(base_cls: type) -> type:
    class ThinkKTOTrainer(base_cls):  # type: ignore[valid-type, misc]
        think_options: ThinkPluginOptions

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._think_logps: dict[str, SequenceLogps] = {}  # prefix -> the policy's parts (its forward runs first)

        def forward(self, model, batch, prefix=""):
            logits, logps, logps_avg = super().forward(model, batch, prefix)  # labels already policy-masked
            weight = self.think_options.think_loss_weight
            if weight != 1.0 or self.think_options.log_span_loss:
                parts = sequence_logps(logits, batch[f"{prefix}labels"], batch[f"{prefix}{SPAN_KEY}"], weight)
                self._think_logps.setdefault(prefix, parts)
                if weight != 1.0:
                    logps, logps_avg = parts.total, parts.total / parts.count
            return logits, logps, logps_avg

        def get_batch_loss_metrics(self, model, batch):
            self._think_logps.clear()
            loss, metrics = super().get_batch_loss_metrics(model, batch)
            policy = self._think_logps.get("")
            if self.think_options.log_span_loss and policy is not None:
                # sums and counts, averaged over the logged steps (and ranks) in `log`, as LF's KTO metrics are
                tags = batch["kto_tags"].to(policy.total.device)
                for side, rows in (("chosen", tags), ("rejected", ~tags)):
                    reasoning = policy.reasoning[rows].sum().item()
                    metrics[f"think/{side}_reasoning_logps_sum"] = reasoning
                    metrics[f"think/{side}_answer_logps_sum"] = policy.total[rows].sum().item() - reasoning
                    metrics[f"think/{side}_reasoning_tokens_sum"] = policy.reasoning_tokens[rows].sum().item()
                    metrics[f"think/{side}_count"] = float(rows.sum().item())
            return loss, metrics

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            train_eval = "train" if "loss" in logs else "eval"
            stored = self._stored_metrics[train_eval]
            if all(k in stored for k in _KTO_SUMS):
                sums = torch.tensor([sum(stored.pop(k)) for k in _KTO_SUMS], dtype=torch.float64)
                sums = self.accelerator.reduce(sums.to(self.accelerator.device), "sum").tolist()
                prefix = "eval_" if train_eval == "eval" else ""
                for side, (reasoning, answer, tokens, count) in zip(("chosen", "rejected"), (sums[:4], sums[4:]), strict=True):
                    if count:
                        logs[f"{prefix}logps/{side}_reasoning"] = reasoning / count
                        logs[f"{prefix}logps/{side}_answer"] = answer / count
                        logs[f"{prefix}think/{side}_reasoning_tokens"] = tokens / count
            return super().log(logs, *args, **kwargs)

    return ThinkKTOTrainer


def think_preference_trainer_class(base_cls: type, opts: ThinkPluginOptions) -> type:
    """A subclass of LF's `CustomDPOTrainer` or `CustomKTOTrainer` with the think options of `opts`."""
    make = _kto_class if "KTO" in base_cls.__name__ else _dpo_class
    return type(f"Think{base_cls.__name__}", (make(base_cls),), {"think_options": opts})
