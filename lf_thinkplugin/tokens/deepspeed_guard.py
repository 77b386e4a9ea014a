"""DeepSpeed versions that break a run the plugin sets up, refused before the model loads.

Under ZeRO-3, token_init with LoRA / OFT trains full copies of the embedding modules
(`modules_to_save`; PEFT trainable tokens do not fit there). DeepSpeed 0.16.5 up to 0.19.2 then
fail at the first forward with `'Linear' object has no attribute 'ds_grads_remaining'`
(deepspeedai/DeepSpeed#7615); stock LF with `add_tokens` fails the same way. Measured here with
peft 0.18.1 and transformers 5.6 on two CPU ranks: 0.16.4, 0.19.3, 0.19.4, 0.19.6 and 0.19.8 train;
0.16.5, 0.17.0, 0.17.6, 0.18.0, 0.18.5, 0.19.0 and 0.19.2 fail.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from packaging.version import Version

from ..options import BLOCK, OptionsError, zero_stage

COPIES_BROKEN = (Version("0.16.5"), Version("0.19.3"))  # [first bad, first fixed)


def check_embedding_copies(lf_args: dict[str, Any]) -> None:
    """Refuse LoRA / OFT token_init under ZeRO-3 with a DeepSpeed that cannot train the copies."""
    if lf_args.get("finetuning_type", "lora") not in ("lora", "oft") or zero_stage(lf_args) != 3:
        return
    try:
        installed = Version(metadata.version("deepspeed"))
    except metadata.PackageNotFoundError:
        return  # LF refuses a `deepspeed` run without it
    low, fixed = COPIES_BROKEN
    if low <= installed < fixed:
        raise OptionsError(
            f"`{BLOCK}.token_init` with finetuning_type {lf_args.get('finetuning_type', 'lora')} under ZeRO-3 "
            f"({lf_args['deepspeed']}) trains full copies of the embedding modules, which deepspeed {installed} "
            f"cannot (it fails at the first step: deepspeedai/DeepSpeed#7615). Install deepspeed>={fixed} "
            f"(or <={low.major}.{low.minor}.{low.micro - 1})."
        )
