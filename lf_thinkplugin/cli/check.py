"""`lf-think check RECIPE.yaml [key=value ...]`: a dry run of a training recipe, no model weights loaded.

Validates the plugin's options and LF's own arguments (through LF's parser), resolves the template
(`thinkplugin.template: auto` included), loads the tokenizer, applies the token-init plan to it,
loads and preprocesses the dataset exactly as training would (so the malformed-tag report runs),
and prints what the run would do. The recipe's output_dir is never created or touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..options import BLOCK, OptionsError


def _deepspeed_summary(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise OptionsError(f"`deepspeed: {path}`: no such file")
    try:
        stage = json.loads(file.read_text()).get("zero_optimization", {}).get("stage")
    except json.JSONDecodeError as err:
        raise OptionsError(f"`deepspeed: {path}` is not valid JSON: {err}") from None
    return f"DeepSpeed config {path} (ZeRO stage {stage}); needs `pip install deepspeed` and GPUs"


def _span_stats(dataset: Any, tokenizer: Any, template: Any) -> dict[str, int]:
    """Samples with reasoning / an empty think block / no think block, from their label ids."""
    import torch

    from ..loss.spans import think_tags

    tags = think_tags(tokenizer, template.thought_words, template.stop_words)
    stats = {"samples": 0, "with_reasoning": 0, "empty_think": 0, "no_think": 0, "response_tokens": 0, "reasoning_tokens": 0}
    for example in dataset:
        labels = torch.tensor([example["labels"]])
        spans = tags.find(labels)
        stats["samples"] += 1
        stats["response_tokens"] += int(spans.valid.sum())
        stats["reasoning_tokens"] += int((spans.reasoning & ~spans.empty).sum())
        if (spans.reasoning & ~spans.empty).any():
            stats["with_reasoning"] += 1
        elif spans.empty.any():
            stats["empty_think"] += 1
        else:
            stats["no_think"] += 1
    return stats


def check(argv: list[str]) -> list[str]:
    """Run the dry run; return the report lines. Raises OptionsError / ValueError on bad input."""
    from .. import register
    from ..activation import seam
    from ..activation.config import read_config

    register()
    config = read_config(argv)
    lines = [f"recipe: {Path(argv[0]).resolve()}"]
    template_given = config.get("template")
    # the run's own path: the context binds LF's tokenizer loading (faithful) and dataset report, as in training
    ctx = seam.begin_run(config.pop(BLOCK), config, from_cli=False) if BLOCK in config else None
    try:
        return _check(config, ctx, template_given, lines)
    finally:
        seam.end_run()


def _check(config: dict[str, Any], ctx: Any, template_given: Any, lines: list[str]) -> list[str]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    opts = ctx.options if ctx is not None else None
    if opts is None:
        lines.append("thinkplugin: no block (LF runs exactly as without the plugin)")
    if "deepspeed" in config:  # HF would initialise DeepSpeed while parsing; report it instead
        lines.append(_deepspeed_summary(str(config.pop("deepspeed"))))
    import torch

    for key in ("bf16", "fp16"):  # hardware, not recipe, errors: a dry run on a CPU machine reports them
        if config.get(key) and not torch.cuda.is_available():
            config.pop(key)
            lines.append(f"{key}: true needs a GPU; not checked on this machine")
    output_dir = config.get("output_dir")
    with tempfile.TemporaryDirectory() as scratch:
        config["output_dir"] = scratch  # never touch the user's output_dir in a dry run
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        chosen = "by thinkplugin.template: auto" if opts and opts.template == "auto" else "as given" if template_given else "by the plugin"
        lines += [
            f"model: {model_args.model_name_or_path} (tokenizer only; {len(tokenizer)} tokens)",
            f"stage: {finetuning_args.stage}, finetuning_type: {finetuning_args.finetuning_type}, output_dir: {output_dir}",
            f"template: {data_args.template} ({chosen})",
        ]
        from ..templates.record import format_of

        fmt = format_of(template, getattr(tokenizer, "tokenizer", tokenizer))
        if fmt is not None:
            d = fmt.describe()
            lines.append(f"reasoning format: read from {d['reasoning']}, markup {' … '.join(d['markup'] or ['none'])}, "
                         f"prompt opens the block: {'yes' if fmt.prompt_opens else 'no'}, switch: {d['switch']}, "
                         f"settings read: {', '.join(fmt.settings) or 'none'}, last turn: {d['last-turn reasoning']}, "
                         f"history reasoning: {fmt.history}, vLLM parser: {fmt.reasoning_parser or 'none'}")
        if opts is not None:
            lines.append(f"thinkplugin: {json.dumps(opts.model_dump(mode='json'), ensure_ascii=False)}")
            if ctx.token_plan is not None:
                for item in ctx.token_plan.to_initialise:
                    lines.append(f"token_init: {item.token} -> id {tokenizer.convert_tokens_to_ids(item.token)} ({item.spec.strategy})")
        data_stage = "rm" if finetuning_args.stage == "dpo" else finetuning_args.stage  # as LF's DPO workflow asks for it
        dataset_module = get_dataset(template, model_args, data_args, training_args, stage=data_stage, **tokenizer_module)
        train_set = dataset_module.get("train_dataset")
        if train_set is not None and finetuning_args.stage == "sft":
            stats = _span_stats(train_set, tokenizer, template)
            lines.append(
                "data: {samples} samples after preprocessing; {with_reasoning} with reasoning, {empty_think} with an "
                "empty reasoning block, {no_think} without one; {reasoning_tokens} of {response_tokens} response tokens are "
                "reasoning".format(**stats)
            )
        elif train_set is not None and finetuning_args.stage in ("rm", "dpo", "kto") and ctx is not None:
            from ..data.pairs import pair_stats

            aligned = [d for _, d in ctx._aligned]
            lines.append(pair_stats(aligned, template, tokenizer, finetuning_args.stage, len(train_set)))
        if train_set is not None:  # images: the view that trains against the one the processor serves
            from ..templates.media import image_token_report

            media = image_token_report(train_set, ctx.model_dir if ctx is not None else model_args.model_name_or_path,
                                       tokenizer)
            if media:
                lines.append(f"media: {media}")
        if ctx is not None and ctx._carried:  # template settings: the mix in the data, reasoning length per value
            from ..data.template_settings import mix_lines
            from ..templates.reasoning import split_reasoning

            lines += mix_lines(ctx._carried, ctx.run_settings, ctx.settings_columns, tokenizer,
                               fmt.read if fmt is not None else split_reasoning)
    lines.append("check passed: no model weights were loaded")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lf-think check", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="training YAML (LLaMA-Factory format, with an optional thinkplugin: block)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for llamafactory-cli train")
    args = parser.parse_args(argv)
    try:
        lines = check([args.recipe, *args.overrides])
    except (OptionsError, ValueError, OSError) as err:
        print(f"[lf_thinkplugin] check failed: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
