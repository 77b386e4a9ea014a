"""token_init test helpers: the ids LF gives the new tags, the specs and samples, the run config, saved rows,
LF's loaders through the seam, and the `tokens` combination as an oracle (fixtures: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from lf_thinkplugin.tokens.token_init import make_callbacks

THINK, END = 151665, 151666  # ids LF gives <think>, </think> on top of the Qwen2.5 tokenizer
SPECS = {
    "<think>": ["思考", "think"],
    "</think>": {"strategy": "text", "text": "end of reasoning", "noise": 0.1},
}
SAMPLES = [
    ("What is 2+2?", "<think>\nTwo plus two is four.\n</think>\n\n4"),
    ("Say hello.", "<think>\nA greeting is asked for.\n</think>\n\nHello!"),
    ("Capital of France?", "<think>\nParis is the capital of France.\n</think>\n\nParis"),
    ("What is 3*3?", "<think>\nThree times three is nine.\n</think>\n\n9"),
]


def lf_config(model: Path, data: Path, out: Path, block: dict, **overrides) -> dict:
    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "think_tiny", "dataset_dir": str(data), "template": "qwen", "cutoff_len": 64,
        "output_dir": str(out), "overwrite_output_dir": True, "logging_steps": 1, "save_steps": 2,
        "per_device_train_batch_size": 2, "learning_rate": 1.0e-2, "weight_decay": 0.1, "max_steps": 4,
        "lr_scheduler_type": "constant", "report_to": "none", "seed": 7,
        "thinkplugin": {"log_span_loss": False, **block},
    }
    cfg.update(overrides)
    return cfg


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def lf_load(model: Path, block: dict, finetuning_type: str = "full", **lf_extra):
    """What a run does up to the trainer, through the seam: the `thinkplugin:` block in LF's argument
    dict (plugin prepare, LF's parsing), then LF's loaders (LoRA: the seam's PEFT config hook)."""
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    from lf_thinkplugin.activation import seam

    lf_args = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": finetuning_type,
               "output_dir": str(model / "out"), "template": "qwen", "report_to": "none",
               "dataset": "think_tiny", **lf_extra}  # parsed only: LF wants a dataset name when do_train
    try:
        model_args, _, training_args, finetuning_args, _ = get_train_args({**lf_args, "thinkplugin": block})
        ctx = seam.bound()
        assert ctx is not None and ctx.token_plan is not None, "the seam's read_args hook is not installed"
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        model_obj = load_model(tokenizer, model_args, finetuning_args, is_trainable=True)
    finally:
        seam.end_run()  # later tests in this process run without a block
    return ctx, lf_args, tokenizer, model_obj, training_args


def run_init(ctx, model, tokenizer, training_args, global_step: int = 0):
    """The callback's two events as the trainer fires them: a fresh run (global_step 0) or a resume."""
    from transformers import TrainerControl, TrainerState

    callback = make_callbacks(ctx.token_plan)[0]
    state = TrainerState()
    training_args.resume_from_checkpoint = f"checkpoint-{global_step}" if global_step else None
    callback.on_init_end(training_args, state, TrainerControl(), model=model, processing_class=tokenizer)
    state.global_step = global_step
    callback.on_train_begin(training_args, state, TrainerControl(), model=model, processing_class=tokenizer)
    return callback


def combo(weight: torch.Tensor, tokenizer, sources: list[str]) -> torch.Tensor:
    """The `tokens` combination: mean over source strings of the mean of their sub-token rows."""
    per_source = [weight[tokenizer.encode(s, add_special_tokens=False)].float().mean(dim=0) for s in sources]
    return torch.stack(per_source).mean(dim=0)
