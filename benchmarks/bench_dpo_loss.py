"""Per-step cost of the think-aware DPO loss vs LF's own DPO trainer, on the same batches, side by side.

A random Qwen3-architecture model with the real Qwen3 tokenizer and its full 151,936-row vocabulary
(hidden 256, 2 layers by default: the vocabulary-sized log-softmax, which both arms compute once, is a
real share of the step), LoRA (the reference is the model with the adapter off, so each step runs the
policy and the reference forward), `pref_loss: sigmoid`. Pairs are encoded by LF's pairwise processor
with the plugin's `qwen3_think` template: chosen with a long think block, rejected shorter or a direct
answer (which takes the empty block of the pair's thinking mode).

Arms, both built by LF's own `get_train_args` / `load_model` in this one process:
  lf     LF's `PairwiseDataCollatorWithPadding` and `CustomDPOTrainer`;
  think  the plugin's collator and trainer for `--options` (default: mask_reasoning, log_span_loss).
A step = collate the batch + `compute_loss` + `backward` (no optimizer step: both arms would do the same).
Steps alternate lf / think in an order that flips each round, after `--warmup` rounds. Ratio = geometric
mean of the paired ratios think / lf, with a 95% t-interval on the log-ratios. Target: at most 1.03x.

    taskset -c 1 python benchmarks/bench_dpo_loss.py [--rounds 30] [--seq 1024] [--batch 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
WORDS = ("we add the two numbers then check the carry and the sign of each term before we divide by "
         "the common factor so the remainder is zero and the answer follows").split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def t_interval(logs: list[float]) -> tuple[float, float, float]:
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    t = {9: 2.262, 19: 2.093, 29: 2.045, 39: 2.023, 49: 2.010}.get(len(logs) - 1, 1.96)
    half = t * sd / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--seq", type=int, default=1024, help="about this many tokens per chosen sequence")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--options", default='{"think_loss": "mask_reasoning", "log_span_loss": true}')
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from llamafactory.data import PairwiseDataCollatorWithPadding, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    from lf_thinkplugin.demo.fixtures import QWEN3, tokenizer_dir
    from lf_thinkplugin.demo.tiny_model import build_tiny_model
    from lf_thinkplugin.loss.preference import preference_collator_class, think_preference_trainer_class
    from lf_thinkplugin.options import parse_options
    from lf_thinkplugin.templates import register_templates

    register_templates()
    opts = parse_options(json.loads(args.options))
    tmp = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    model_dir = build_tiny_model(tmp / "model", tokenizer_dir(QWEN3), hidden_size=args.hidden, num_layers=args.layers)
    model_args, data_args, training_args, finetuning_args, _ = get_train_args({
        "model_name_or_path": str(model_dir), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "template": "qwen3_think", "dataset": "none", "output_dir": str(tmp / "out"),
        "pref_loss": "sigmoid", "report_to": "none", "cutoff_len": args.seq * 2, "enable_thinking": None})
    tokenizer_module = load_tokenizer(model_args)
    tok = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tok, data_args)
    model = load_model(tok, model_args, finetuning_args, is_trainable=True)

    from lf_thinkplugin.activation.processors import ThinkPairwiseProcessor

    processor = ThinkPairwiseProcessor(template=template, tokenizer=tok, processor=None, data_args=data_args)
    rng = random.Random(0)
    words = args.seq // 2  # about two tokens per word with these words
    prompts, responses = [], []
    for i in range(args.batch * 4):
        prompts.append([{"role": "user", "content": f"Question {i}: " + text(rng, 20)}])
        rejected = text(rng, 12) if i % 2 else f"<think>\n{text(rng, words // 3)}\n</think>\n\n{text(rng, 12)}"
        responses.append([{"role": "assistant", "content": f"<think>\n{text(rng, words)}\n</think>\n\n{text(rng, 30)}"},
                          {"role": "assistant", "content": rejected}])
    encoded = processor.preprocess_dataset({"_prompt": prompts, "_response": responses, "_system": [""] * len(prompts),
                                            "_tools": [""] * len(prompts), "_images": [None] * len(prompts),
                                            "_videos": [None] * len(prompts), "_audios": [None] * len(prompts)})
    features = [{k: encoded[k][i] for k in encoded} for i in range(len(prompts))]
    batches = [features[i:i + args.batch] for i in range(0, len(features), args.batch)]
    tokens = sum(len(f["chosen_input_ids"]) + len(f["rejected_input_ids"]) for f in features) / len(batches)

    common = {"template": template, "model": model, "pad_to_multiple_of": 8, "label_pad_token_id": -100, **tokenizer_module}
    lf_collator = PairwiseDataCollatorWithPadding(**common)
    think_collator = preference_collator_class(PairwiseDataCollatorWithPadding)(options=opts, **common)
    kwargs = {"model": model, "ref_model": None, "args": training_args, "finetuning_args": finetuning_args,
              "train_dataset": features, **tokenizer_module}
    lf_trainer = CustomDPOTrainer(data_collator=lf_collator, **kwargs)
    think_trainer = think_preference_trainer_class(CustomDPOTrainer, opts)(data_collator=think_collator, **kwargs)
    model.train()

    def step(trainer, collator, batch) -> float:
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        inputs = collator([dict(f) for f in batch])
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        elapsed = time.perf_counter() - start
        gc.enable()
        model.zero_grad(set_to_none=True)
        return elapsed

    arms = {"lf": (lf_trainer, lf_collator), "think": (think_trainer, think_collator)}
    logs, times = [], {"lf": [], "think": []}
    for r in range(args.warmup + args.rounds):
        batch = batches[r % len(batches)]
        order = ["lf", "think"] if r % 2 == 0 else ["think", "lf"]
        got = {name: step(*arms[name], batch) for name in order}
        if r >= args.warmup:
            logs.append(math.log(got["think"] / got["lf"]))
            for name in got:
                times[name].append(got[name])
    ratio, lo, hi = t_interval(logs)
    print(f"DPO step (collate + loss + backward), LoRA with the adapter-off reference, {args.batch} pairs of about "
          f"{tokens:.0f} tokens per step, hidden {args.hidden} x {args.layers} layers, vocab {len(tok)}, "
          f"{args.threads} thread(s), {args.rounds} paired rounds; think options {args.options}")
    for name in ("lf", "think"):
        print(f"  {name:6s} median {statistics.median(times[name]) * 1000:8.1f} ms")
    print(f"think / lf: {ratio:.4f}  95% t-interval [{lo:.4f}, {hi:.4f}]  (target <= 1.03)")


if __name__ == "__main__":
    sys.exit(main())
