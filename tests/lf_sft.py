"""LF's SFT path in this process on the real fixture tokenizers: reasoning samples, LF's supervised
preprocessing, and LF's SFT trainer with or without the plugin's collator and trainer (the collator, loss
and MoE tests)."""

from __future__ import annotations

import copy

import torch
from conftest import fixture_tokenizer

from lf_thinkplugin.loss.collator import think_collator_class
from lf_thinkplugin.loss.trainer import think_trainer_class

REASON = "<think>\nadd 2 and 3\n</think>\n\n5"
EMPTY = "<think>\n\n</think>\n\nParis."
COMPACT = "<think>x</think>y"
TWO_BLOCKS = "<think>\nfirst\n</think>\n\npart one <think>\nsecond\n</think>\n\npart two"
_cache: dict = {}


def tokenizer(name):
    if name not in _cache:
        _cache[name] = fixture_tokenizer(name)  # faithful where transformers#45488 bites
    return _cache[name]


def lf_setup(name, template, **data_kwargs):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    tok = tokenizer(name)
    data_args = DataArguments(template=template, cutoff_len=data_kwargs.pop("cutoff_len", 256), **data_kwargs)
    return tok, get_template_and_fix_tokenizer(tok, data_args), data_args


def encode(name, template, samples, packed=False, **data_kwargs):
    """LF's preprocessing of (prompt messages, response) samples -> (features, template, tokenizer)."""
    from llamafactory.data.processor import (
        PackedSupervisedDatasetProcessor,
        SupervisedDatasetProcessor,
    )

    tok, tpl, data_args = lf_setup(name, template, **data_kwargs)
    cls = PackedSupervisedDatasetProcessor if packed else SupervisedDatasetProcessor
    processor = cls(template=tpl, tokenizer=tok, processor=None, data_args=data_args)
    n = len(samples)
    examples = {
        "_prompt": [p for p, _ in samples],
        "_response": [[{"role": "assistant", "content": r}] for _, r in samples],
        "_system": [""] * n, "_tools": [""] * n, "_images": [None] * n, "_videos": [None] * n, "_audios": [None] * n,
    }
    out = processor.preprocess_dataset(examples)
    keys = [k for k in ("input_ids", "attention_mask", "labels", "position_ids", "packing_params") if k in out]
    return [{k: out[k][i] for k in keys} for i in range(len(out["input_ids"]))], tpl, tok


def user(text="What is 2 + 3?"):
    return [{"role": "user", "content": text}]


# the trainer tests' batch: reasoning, an empty think block, two blocks in one answer
LOSS_SAMPLES = [(user(), REASON), (user("Capital?"), "<think>\n\n</think>\n\nParis."), (user(), TWO_BLOCKS)]


def make_trainer(setup, tmp_path, opts=None, **args):
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask
    from llamafactory.hparams import FinetuningArguments
    from llamafactory.hparams.training_args import TrainingArguments
    from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer

    features, tpl, tok, model = setup
    defaults = {"output_dir": str(tmp_path), "per_device_train_batch_size": 3, "report_to": "none", "use_cpu": True,
                    "save_strategy": "no", "learning_rate": 0.0, "max_steps": 1, "logging_steps": 1, "disable_tqdm": True}
    targs = TrainingArguments(**{**defaults, **args})
    cls, collator = CustomSeq2SeqTrainer, SFTDataCollatorWith4DAttentionMask(template=tpl, tokenizer=tok)
    if opts is not None:
        cls = think_trainer_class(CustomSeq2SeqTrainer, opts)
        collator = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=opts, template=tpl, tokenizer=tok)
    dataset = [copy.deepcopy(f) for f in features]
    return cls(model=model, args=targs, finetuning_args=FinetuningArguments(), data_collator=collator,
               train_dataset=dataset, tokenizer=tok, processor=None)


def step_loss(trainer, batch, num_items=None):
    trainer.model.eval()  # no dropout; also keeps span tracking off
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
