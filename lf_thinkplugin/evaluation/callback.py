"""`thinkplugin.eval_think`: `lf-think eval`'s metrics on held-out prompts every N optimizer steps, logged
through the Trainer's own `log` (log history / trainer_state.json, TensorBoard, W&B) as `think_eval/...`.

Rank 0 generates (greedy, the model switched to eval mode and back) while the other ranks wait at their
next collective; the prompts are encoded with the run's LF template, as training encodes them.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .metrics import THINK, aggregate, classify, plan

# the scalars logged per mode (nested report keys flattened with "/")
_LOGGED = ("well_formed", "status", "spelled_out_tags", "end_of_turn", "truncated", "reasoning_tokens", "answer_tokens")


def flat_metrics(report: dict[str, dict[str, Any]], prefix: str = "think_eval") -> dict[str, float]:
    """{think_eval/<mode>/<metric>[/<sub>]: value} for the numbers of an `aggregate` report (None left out)."""
    out: dict[str, float] = {}
    for mode, row in report.items():
        for key in _LOGGED:
            value = row.get(key)
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for sub, v in items:
                if isinstance(v, (int, float)):
                    out["/".join(p for p in (prefix, mode, key, sub) if p)] = float(v)
    return out


class ThinkEvalCallback(TrainerCallback):
    def __init__(self, spec: Any, template: str | None, model_dir: str, dataset_dir: str, eval_dataset: str | None,
                 run_settings: dict | None = None) -> None:
        from .sweep import settings_list

        self.spec, self.template, self.model_dir = spec, template, model_dir
        # the prompts' template settings: the run's, the spec's over them, once per swept value (checked by the context)
        sweep = next(iter(spec.sweep.items())) if getattr(spec, "sweep", None) else None
        self.sweep_name = sweep[0] if sweep else None
        self.settings = settings_list({**(run_settings or {}), **(getattr(spec, "template_kwargs", None) or {})}, sweep)
        self.dataset_dir, self.data = dataset_dir, spec.data or (eval_dataset or "").split(",")[0].strip()
        self.trainer: Any = None  # bound by the run context once the trainer exists (its `log` is the sink)
        self._prompts: Any = None
        self._samples: list = []

    def bind_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.spec.every or not state.is_world_process_zero or self.trainer is None:
            return
        pending = control.should_log  # the Trainer's on_log clears it: this step's own loss log must still come
        self.trainer.log(self.evaluate(model, processing_class))
        control.should_log = self.trainer.control.should_log = pending

    def evaluate(self, model: Any, processing_class: Any) -> dict[str, float]:
        from .generate import TrainedWith, generate_hf, load_samples, prompter

        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if self._prompts is None:
            self._samples = load_samples(self.data, self.dataset_dir, limit=self.spec.prompts)
            with_images = [s for s in self._samples if s.images]
            if with_images:  # rendered through the processor by `lf-think eval` only: left out here, said once
                print(f"[lf_thinkplugin] eval_think: {len(with_images)} of {len(self._samples)} prompts have images and "
                      "are left out (`lf-think eval` on the output_dir evaluates them)", flush=True)
                self._samples = [s for s in self._samples if not s.images]
            self._prompts = prompter(tokenizer, self.model_dir, TrainedWith(template=self.template, source="this run"))
        prompts, was_training = self._prompts, model.training
        model.eval()
        by_value: dict = {}
        try:
            for value, kwargs in self.settings:
                outputs = by_value.setdefault(value, [])
                for mode, samples in plan(self.spec.modes, self._samples):
                    ids = [prompts.ids(s.messages, mode == THINK, kwargs) for s in samples]
                    generated = generate_hf(model, tokenizer, ids, self.spec.max_new_tokens, set(prompts.markup.stop_ids))
                    outputs += [classify(g, tokenizer, prompts.markup, mode, self.spec.max_new_tokens, s.reference)
                                for s, g in zip(samples, generated)]
        finally:
            model.train(was_training)
        if self.sweep_name is None:
            return flat_metrics(aggregate(by_value[None]))
        return sweep_metrics(self.sweep_name, by_value)


def sweep_metrics(name: str, by_value: dict[str, list]) -> dict[str, float]:
    """think_eval/<name>=<value>/<mode>/... per value, reasoning_tokens_median / _p90 beside the mean, and per mode
    think_eval/<name>/<mode>/rises (1 / 0) and .../ratio (last value's mean length over the first's)."""
    from .sweep import lengths, trend

    out: dict[str, float] = {}
    modes: list[str] = []
    for value, outputs in by_value.items():
        prefix = f"think_eval/{name}={value}"
        out.update(flat_metrics(aggregate(outputs), prefix))
        for mode in sorted({o.mode for o in outputs}):
            modes += [mode] if mode not in modes else []
            stats = lengths([o for o in outputs if o.mode == mode])
            out[f"{prefix}/{mode}/reasoning_tokens_all_mean"] = float(stats["mean"])
            out[f"{prefix}/{mode}/reasoning_tokens_median"] = float(stats["median"])
            out[f"{prefix}/{mode}/reasoning_tokens_p90"] = float(stats["p90"])
    for mode in modes:
        t = trend([{"reasoning_tokens": lengths([o for o in outputs if o.mode == mode])} for outputs in by_value.values()])
        if t["rises"] is not None:
            out[f"think_eval/{name}/{mode}/rises"] = float(t["rises"])
        if t["ratio"] is not None:
            out[f"think_eval/{name}/{mode}/ratio"] = float(t["ratio"])
    return out
