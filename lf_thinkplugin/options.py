"""The `thinkplugin:` block of a training YAML: the single source of truth for the plugin's options.

Every option's default, type, allowed values and validation message lives here. `parse_options`
turns the raw block (after LF's OmegaConf merge, so `thinkplugin.x=y` CLI overrides are already
applied) into a frozen `ThinkPluginOptions`, or raises `OptionsError` with a message that names
the key, the value, what was expected and the fix. `check_against_lf` refuses combinations with
LF's own arguments that contradict each other. Both run before the model (or tokenizer) loads.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .loss.policies import POLICIES
from .loss.policies import policy as think_loss_policy
from .loss.policies import reference as think_loss_reference
from .tokens.strategies import STRATEGIES
from .tokens.strategies import strategy as token_init_strategy

BLOCK = "thinkplugin"
# the values of `think_loss` and `token_init.<token>.strategy`: the registered policies and strategies
ThinkLoss = Literal[tuple(POLICIES)]  # type: ignore[valid-type]
InitStrategyName = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
OPTIONS_FILE = "thinkplugin_args.yaml"  # saved in output_dir beside LF's training_args.bin


class OptionsError(ValueError):
    """Bad `thinkplugin:` input. The message is meant for the user as is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenInitSpec(_Strict):
    """How to initialise one new token's embedding row (input and, when untied, output)."""

    strategy: InitStrategyName = Field(default="tokens", description="how the row is built")
    sources: list[str] = Field(default_factory=list, description="strings whose sub-token embeddings are averaged (strategy tokens)")
    text: Optional[str] = Field(default=None, description="a description whose token embeddings are averaged (strategy text)")
    noise: float = Field(default=0.0, ge=0.0, description="std of Gaussian noise added, relative to the mean row norm")

    @model_validator(mode="after")
    def _consistent(self) -> "TokenInitSpec":
        rule = token_init_strategy(self.strategy)
        rule.check(self)
        if self.noise == 0.0 and rule.default_noise:
            object.__setattr__(self, "noise", rule.default_noise)  # frozen model: fill the strategy's default noise
        return self


class UnfreezeStage(_Strict):
    """From `step` on, parameters whose names match any of `modules` (fnmatch patterns) train too."""

    step: int = Field(ge=0, description="optimizer step at which this stage opens")
    modules: list[str] = Field(min_length=1, description="fnmatch patterns of parameter names that start training")


class EvalThinkSpec(_Strict):
    """Think-behaviour metrics (`lf-think eval`'s) on held-out prompts during training."""

    every: int = Field(ge=1, description="optimizer steps between evaluations")
    prompts: int = Field(default=8, ge=1, description="held-out prompts per evaluation")
    max_new_tokens: int = Field(default=256, ge=1, description="generation limit per prompt")
    data: Optional[str] = Field(default=None, description="prompts: a JSON / JSONL file or an LF dataset name in "
                                "dataset_dir; default LF's `eval_dataset`")
    modes: list[Literal["think", "nothink", "data"]] = Field(
        default=["think"], min_length=1, description="thinking on / off through the template's switch; [data]: each "
        "prompt in the mode its reference shows (think where it reasons, nothink where it answers directly)")

    template_kwargs: Optional[dict[str, Any]] = Field(
        default=None, description="chat template settings for the prompts, over the run's `chat_template_kwargs`")
    sweep: Optional[dict[str, list[Any]]] = Field(
        default=None, description="one template setting and its values, e.g. {reasoning_effort: [low, high]}: the "
        "prompts run once per value, logged as `think_eval/<name>=<value>/...` with `think_eval/<name>/rises`")

    @field_validator("sweep")
    @classmethod
    def _one_setting(cls, sweep: Optional[dict[str, list[Any]]]) -> Optional[dict[str, list[Any]]]:
        if sweep is not None and (len(sweep) != 1 or len(next(iter(sweep.values()))) < 2):
            raise ValueError("sweeps one setting over at least two values, e.g. {reasoning_effort: [low, high]}")
        return sweep

    @field_validator("modes")
    @classmethod
    def _data_alone(cls, modes: list[str]) -> list[str]:
        if "data" in modes and len(modes) > 1:
            raise ValueError("`data` picks each prompt's mode itself: use [data] alone, or think / nothink")
        return modes


class ThinkPluginOptions(_Strict):
    # templates (templates/: encoders, doctor)
    template: Optional[str] = Field(
        default=None,
        description="`auto` picks the template with full parity from the tokenizer (doctor scan) and sets LF's "
        "`template`; a name sets LF's `template` to it; unset leaves LF's `template` alone.",
    )
    # think-aware collator and loss (loss/)
    think_loss: ThinkLoss = Field(default="full", description=think_loss_reference())
    think_loss_weight: float = Field(default=1.0, ge=0.0, le=1.0, description="loss weight of reasoning tokens (answers: 1)")
    log_span_loss: bool = Field(default=True, description="log `loss_think` / `loss_answer` / `loss_tags` on logging steps")
    # reasoning data (data/)
    expand_turns: bool = Field(
        default=False,
        description="a conversation with N assistant turns becomes N samples, each ending at its turn with the context "
        "the template shows at inference (sets LF's `mask_history`), so every turn trains where history reasoning is dropped",
    )
    chat_template_kwargs: Optional[dict[str, Any]] = Field(
        default=None,
        description="keyword arguments for the model's own chat template in every sample (`reasoning_effort: low`, "
        "`preserve_thinking: true`; `template: native`), checked against what it reads; per sample: a dataset_info.json "
        "column `chat_template_kwargs` (docs/template_settings.md)",
    )
    on_malformed: Literal["error", "warn", "skip"] = Field(
        default="warn", description="what to do with samples whose think tags are malformed"
    )
    # token init (tokens/)
    token_init: Optional[dict[str, TokenInitSpec]] = Field(
        default=None,
        description="new token -> init spec; a list is shorthand for strategy `tokens` with those sources. "
        "Tokens missing from the tokenizer are added (single, not special).",
    )
    reinit: bool = Field(default=False, description="re-initialise token_init tokens that already exist")
    train_new_tokens_only: bool = Field(default=False, description="train only the new tokens' embedding rows")
    unfreeze: Optional[list[UnfreezeStage]] = Field(default=None, description="staged unfreezing schedule")
    # think-behaviour monitoring (evaluation/)
    eval_think: Optional[EvalThinkSpec] = Field(default=None, description="think-behaviour metrics on held-out "
                                                "prompts every N steps, in the Trainer's log (`think_eval/...`)")
    # serving bundle (serving/)
    export_serving: bool = Field(default=True, description="write the serving bundle (Jinja, Modelfile, LMDeploy JSON) into output_dir")

    @field_validator("token_init", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"strategy": "tokens", "sources": v} if isinstance(v, (list, tuple)) else v) for k, v in value.items()}
        return value

    @field_validator("token_init")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if value is not None and not value:
            raise ValueError("is empty; list at least one token, e.g. token_init: {'<think>': ['思考', 'think']}")
        for token, spec in (value or {}).items():
            if not token or token != token.strip() or "," in token:
                # LF's `add_tokens` is comma-separated and strips each token
                raise ValueError(f"token {token!r} must be non-empty, without surrounding spaces or commas")
            for source in spec.sources + ([spec.text] if spec.text else []):
                inner = [t for t in value if t in source]
                if inner:
                    raise ValueError(
                        f"source {source!r} of token {token!r} contains the token_init token {inner[0]!r}, whose "
                        "row is being initialised itself; use existing text, e.g. '思考' or 'think'"
                    )
        return value

    @model_validator(mode="after")
    def _contradictions(self) -> "ThinkPluginOptions":
        if not think_loss_policy(self.think_loss).trains_reasoning() and self.think_loss_weight != 1.0:
            raise ValueError(
                f"think_loss: {self.think_loss} gives reasoning no loss, so think_loss_weight "
                f"({self.think_loss_weight}) would never apply; use think_loss: full with think_loss_weight, "
                "or drop think_loss_weight"
            )
        if self.train_new_tokens_only and not self.token_init:
            raise ValueError("train_new_tokens_only needs `token_init` to say which tokens are new")
        if self.unfreeze and not self.train_new_tokens_only:
            raise ValueError("unfreeze opens layers on top of new-rows-only training; set train_new_tokens_only: true")
        if self.unfreeze:
            steps = [s.step for s in self.unfreeze]
            if steps != sorted(steps) or len(set(steps)) != len(steps):
                raise ValueError(f"unfreeze steps must be strictly increasing, got {steps}")
        return self

    @property
    def uses_think_collator(self) -> bool:
        return self.masks_labels or self.think_loss_weight != 1.0 or self.log_span_loss

    @property
    def masks_labels(self) -> bool:
        """The `think_loss` policy takes the loss off some think blocks."""
        return think_loss_policy(self.think_loss).masks_anything()


def _did_you_mean(key: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" Did you mean `{prefix}{close[0]}`?" if close else ""


# The model that owns a key, by the top-level option it sits under (for suggestions on nested typos).
_NESTED = {"token_init": TokenInitSpec, "unfreeze": UnfreezeStage, "eval_think": EvalThinkSpec}


def _describe(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join([BLOCK, *loc])
    etype = error["type"]
    if etype == "extra_forbidden":
        owner = _NESTED.get(loc[0], ThinkPluginOptions) if len(loc) > 1 else ThinkPluginOptions
        known = sorted(owner.model_fields)
        prefix = ".".join([BLOCK, *loc[:-1]]) + "."
        return f"unknown key `{key}`.{_did_you_mean(loc[-1], known, prefix)} Known keys here: {', '.join(known)}."
    if etype == "literal_error":
        return f"`{key}` = {error['input']!r} is not allowed; expected {error['ctx']['expected']}."
    return f"`{key}` = {error.get('input')!r}: {error['msg']}."


def parse_options(block: Any) -> ThinkPluginOptions:
    """Validate the raw `thinkplugin:` block; raise OptionsError naming every bad key."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise OptionsError(f"`{BLOCK}:` must be a mapping of options, got {type(block).__name__} {block!r}.")
    try:
        return ThinkPluginOptions.model_validate(block)
    except ValidationError as err:
        lines = [_describe(e) for e in err.errors()]
        raise OptionsError("invalid `thinkplugin:` options:\n  - " + "\n  - ".join(lines)) from None


# LF back ends that train without the workflows the plugin hooks (LF's `_training_function` branches)
_BYPASSING = {
    "use_mca": "LF's Megatron-Core (mcore_adapter) workflows",
    "use_hyper_parallel": "LF's hyper_parallel SFT workflow",
    "use_kt": "LF's KTransformers trainer",
}
_ENV_BYPASSING = {"USE_MCA": "use_mca", "USE_KT": "use_kt"}
_REF_FREE_LOSSES = ("orpo", "simpo")  # DPO losses without a reference model (LF: use_ref_model false)
_PREFERENCE_STAGES = ("dpo", "kto")  # where think_loss, its weight and span logging act besides sft (loss/preference.py)


def _env_on(name: str) -> bool:
    import os

    return os.environ.get(name, "").lower() in ("true", "y", "1")


def zero_stage(lf_args: dict[str, Any]) -> int | None:
    """The ZeRO stage of the run's `deepspeed` config (a path or a dict), or None without one."""
    config = lf_args.get("deepspeed")
    if not config:
        return None
    if not isinstance(config, dict):
        try:
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            return None  # LF / transformers report an unreadable config in their own words
    stage = (config.get("zero_optimization") or {}).get("stage")
    return stage if isinstance(stage, int) else None


def check_lf_keys(lf_args: dict[str, Any], known: set[str]) -> None:
    """LF's own keys, checked while the plugin reads the arguments: a typo gets a did-you-mean, as the
    plugin's keys do (LF would raise a traceback naming the key without one)."""
    unknown = sorted(k for k in lf_args if k not in known)
    if unknown:
        names = sorted(known)
        lines = [f"unknown LLaMA-Factory key `{k}`.{_did_you_mean(k, names, '')}" for k in unknown]
        raise OptionsError("\n  - ".join(["invalid arguments:", *lines])
                           + "\n  (see `llamafactory-cli train -h` for LF's keys; plugin options go under `thinkplugin:`)")


def check_against_lf(opts: ThinkPluginOptions, lf_args: dict[str, Any], lf_keys: Optional[set[str]] = None) -> None:
    """Refuse plugin options that contradict LF's own arguments (raw dict, before LF parses it), and
    modes the plugin cannot act in, by name. `lf_keys`: LF's argument names, to check LF's keys too."""
    if lf_keys is not None:
        check_lf_keys(lf_args, lf_keys)
    problems = []
    stage = lf_args.get("stage", "sft")
    for key, what in _BYPASSING.items():
        env = next((e for e, k in _ENV_BYPASSING.items() if k == key and _env_on(e)), None)
        if lf_args.get(key) or env:
            problems.append(f"`{env + '=1' if env else key + ': true'}` trains through {what}, which bypass the "
                            f"workflows lf-thinkplugin hooks, so no `{BLOCK}` option would act; drop `{BLOCK}:` or {key}")
    if stage == "ppo":
        problems.append(f"`stage: ppo` is not supported by lf-thinkplugin (its value head and reward model are outside "
                        f"what the plugin hooks); drop `{BLOCK}:` or use stage sft / pt / dpo / kto / rm")
    if stage != "sft":
        sft_only = ("train_new_tokens_only", "unfreeze", "eval_think", "expand_turns")
        sft_only += () if stage in _PREFERENCE_STAGES else ("log_span_loss",)
        for key in [k for k in sft_only if k in opts.model_fields_set and getattr(opts, k)]:
            problems.append(f"`{BLOCK}.{key}` acts through the SFT trainer and collator, and stage {stage} uses LF's "
                            f"own {stage} trainer; drop it, or run this part as `stage: sft`")
    if opts.token_init and stage in ("dpo", "kto"):
        ref_free = stage == "dpo" and lf_args.get("pref_loss") in _REF_FREE_LOSSES
        if not ref_free and (lf_args.get("finetuning_type", "lora") != "lora" or lf_args.get("ref_model")):
            problems.append(
                f"`{BLOCK}.token_init` with stage {stage}: LF loads a separate reference model, whose new rows get LF's "
                "own initialisation, not token_init's, so policy and reference would disagree on the new tokens; use "
                "finetuning_type: lora without ref_model (the reference is the base model with the adapter off, which "
                f"holds token_init's rows){' or pref_loss: simpo / orpo (no reference model)' if stage == 'dpo' else ''}"
            )
    if opts.eval_think is not None:
        if opts.eval_think.data is None and not lf_args.get("eval_dataset"):
            problems.append(f"`{BLOCK}.eval_think` needs held-out prompts: set `{BLOCK}.eval_think.data` (a JSON / JSONL "
                            "file or a dataset name in dataset_info.json) or LF's `eval_dataset`")
        if zero_stage(lf_args) == 3 or lf_args.get("fsdp") or _env_on("ACCELERATE_USE_FSDP"):
            problems.append(f"`{BLOCK}.eval_think` generates on rank 0 alone, which sharded weights (ZeRO-3, FSDP) "
                            "cannot do; run `lf-think eval` on the saved checkpoints instead")
    if opts.expand_turns and lf_args.get("mask_history") is False:
        problems.append(f"`{BLOCK}.expand_turns` trains each sample's last turn only (LF's `mask_history: true`); "
                        "drop `mask_history: false`")
    if opts.token_init and (lf_args.get("fsdp") or _env_on("ACCELERATE_USE_FSDP")):
        problems.append(f"`{BLOCK}.token_init` under FSDP is not supported: writing rows into FSDP-sharded embeddings "
                        "is not verified; initialise the tokens in a run without FSDP (or with DeepSpeed ZeRO-3)")
    if opts.masks_labels or opts.think_loss_weight != 1.0:
        if stage not in ("sft", *_PREFERENCE_STAGES):
            why = ("a reward model scores a sequence by its last token's value: there is no per-token loss to mask "
                   "or weight; its pairs are still encoded in one thinking mode" if stage == "rm"
                   else "no reasoning spans to act on")
            problems.append(f"think_loss / think_loss_weight act in stages sft, dpo and kto, got stage: {stage} ({why}); "
                            "drop them")
        if stage == "dpo" and lf_args.get("ld_alpha") is not None:
            problems.append("`ld_alpha` (LD-DPO) weights the tokens past the shorter response's length, and "
                            "think_loss / think_loss_weight weight the reasoning tokens: the two would compound; drop one")
        if "enable_thinking" in lf_args and lf_args["enable_thinking"] is False and _thinks(lf_args.get("template")):
            problems.append(
                "`enable_thinking: false` makes LF's reasoning templates delete every think block from the "
                "responses, so think_loss / think_loss_weight would have nothing to act on; set "
                "enable_thinking: true (or null) and let think_loss decide"
            )
        if lf_args.get("train_on_prompt"):
            problems.append("`train_on_prompt: true` trains prompt tokens whose think tags are not response spans; "
                            "think_loss applies to responses only: drop one of them")
    if opts.think_loss_weight != 1.0:
        for key in ("use_dft_loss", "use_eaft_loss", "use_asft_loss", "enable_liger_kernel"):
            if lf_args.get(key):
                problems.append(f"think_loss_weight computes its own token loss from the logits, which `{key}: true` "
                                "replaces; drop one of them")
        if float(lf_args.get("label_smoothing_factor") or 0.0) > 0.0:
            problems.append("think_loss_weight computes plain token cross-entropy; `label_smoothing_factor` "
                            "would be ignored: drop one of them")
    if opts.template is not None and lf_args.get("template") not in (None, opts.template) and opts.template != "auto":
        problems.append(f"`template: {lf_args.get('template')}` and `thinkplugin.template: {opts.template}` disagree; keep one")
    if opts.template == "auto" and lf_args.get("template") is not None:
        problems.append(
            f"`thinkplugin.template: auto` would override `template: {lf_args.get('template')}`; remove one of them"
        )
    if problems:
        raise OptionsError("contradictory options:\n  - " + "\n  - ".join(problems))


def _thinks(template: Any) -> bool:
    """Whether LF's template `template` acts on enable_thinking: any Template subclass (LF's
    ReasoningTemplate and kin) does, a plain Template ignores it; unknown or not loaded yet: assume it does."""
    import sys

    module = sys.modules.get("llamafactory.data.template")
    found = getattr(module, "TEMPLATES", {}).get(template) if module is not None else None
    return found is None or type(found) is not module.Template


def dump_options(opts: ThinkPluginOptions) -> dict[str, Any]:
    """Resolved options with defaults filled in, for saving and logging."""
    return opts.model_dump(mode="json")


def _type_name(annotation: Any) -> str:
    import re

    text = re.sub(r"<class '([\w.]+)'>", r"\1", str(annotation))
    return re.sub(r"\b(typing|__main__|lf_thinkplugin\.options)\.", "", text)


def reference_table() -> str:
    """The README's option reference, generated from the schema (tests keep the README in sync)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    sections = [(f"{BLOCK}.", ThinkPluginOptions), (f"{BLOCK}.token_init.<token>.", TokenInitSpec),
                (f"{BLOCK}.unfreeze[].", UnfreezeStage), (f"{BLOCK}.eval_think.", EvalThinkSpec)]
    for prefix, model in sections:
        for name, field in model.model_fields.items():
            default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
            meaning = (field.description or "").replace("|", "/")
            rows.append(f"| `{prefix}{name}` | `{_type_name(field.annotation)}` | {default} | {meaning} |")
    return "\n".join(rows)


README_MARKERS = ("<!-- options:begin -->", "<!-- options:end -->")


def write_reference(readme: str) -> None:
    """Rewrite the reference table between README_MARKERS in `readme`."""
    from pathlib import Path

    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(README_MARKERS[0], 1)
    _, tail = rest.split(README_MARKERS[1], 1)
    path.write_text(f"{head}{README_MARKERS[0]}\n{reference_table()}\n{README_MARKERS[1]}{tail}", encoding="utf-8")


if __name__ == "__main__":  # python -m lf_thinkplugin.options [README.md]
    import sys

    write_reference(sys.argv[1]) if len(sys.argv) > 1 else print(reference_table())
