"""`lf-think eval`'s pipeline vs plain HF generate on the same prompts, side by side in one run.

A tiny random Qwen3-architecture model (the real Qwen3 fixture tokenizer when present, else the
self-built Qwen3-style one) generates greedily for the demo prompts (examples/data/think_demo.json,
cycled to --prompts) in think mode. Plain: `apply_chat_template` + left-padded batched
`model.generate` + `decode`. Eval: the eval's prompt rendering, `generate_hf` and `classify` of every
output + `aggregate`. Both use the same loaded model and produce the same ids (checked); rounds
alternate. Prints the median seconds of each, the ratio (target <= 1.05) and the classification cost
per output. Then the cost of one `thinkplugin.eval_think` evaluation (its callback's `evaluate`, --prompts
prompts, think mode) against one training step of the same model (batch 2 x 256 tokens, forward +
backward + AdamW step), both medians over the rounds.

    python benchmarks/bench_eval.py [--prompts 16] [--max-new-tokens 64] [--batch-size 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from lf_thinkplugin.demo.fixtures import QWEN3, tokenizer_dir
    from lf_thinkplugin.demo.tiny_model import build_tiny_model
    from lf_thinkplugin.evaluation.generate import (
        TrainedWith,
        generate_hf,
        load_model,
        load_samples,
        load_tokenizer,
        prompter,
    )
    from lf_thinkplugin.evaluation.metrics import THINK, aggregate, classify

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    model_dir = str(build_tiny_model(work / "model", tokenizer_from=tokenizer_dir(QWEN3)))
    samples = load_samples("think_demo", str(REPO / "examples" / "data"))
    samples = [samples[i % len(samples)] for i in range(args.prompts)]
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir)
    prompts = prompter(tok, model_dir, TrainedWith())
    stops = set(prompts.markup.stop_ids)

    def plain() -> list[list[int]]:
        outs = []
        for start in range(0, len(samples), args.batch_size):
            texts = [tok.apply_chat_template(s.messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
                     for s in samples[start:start + args.batch_size]]
            tok.padding_side = "left"
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**batch, do_sample=False, max_new_tokens=args.max_new_tokens, eos_token_id=sorted(stops),
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
            new = out[:, batch["input_ids"].shape[1]:].tolist()
            [tok.decode(row, skip_special_tokens=True) for row in new]
            outs += new
        return outs

    classify_s = []

    def evaluate() -> list[list[int]]:
        ids = [prompts.ids(s.messages, True) for s in samples]
        gen = generate_hf(model, tok, ids, args.max_new_tokens, stops, args.batch_size)
        t0 = time.perf_counter()
        outputs = [classify(g, tok, prompts.markup, THINK, args.max_new_tokens, s.reference) for g, s in zip(gen, samples)]
        aggregate(outputs)
        classify_s.append(time.perf_counter() - t0)
        return gen

    assert plain() == evaluate(), "plain generate and the eval pipeline generated different ids"  # warm-up + check
    times = {"plain": [], "eval": []}
    for _ in range(args.rounds):
        for name, fn in (("plain", plain), ("eval", evaluate)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    p, e = statistics.median(times["plain"]), statistics.median(times["eval"])
    per_output = statistics.median(classify_s) / len(samples) * 1000
    print(f"{args.prompts} prompts x {args.max_new_tokens} new tokens, batch {args.batch_size}, {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    print(f"plain HF generate: {p:.3f} s   eval pipeline: {e:.3f} s   ratio {e / p:.3f} (target <= 1.05)")
    print(f"classification: {per_output:.2f} ms per output")

    from lf_thinkplugin.evaluation.callback import ThinkEvalCallback
    from lf_thinkplugin.options import EvalThinkSpec

    spec = EvalThinkSpec(every=1, prompts=args.prompts, max_new_tokens=args.max_new_tokens, data="think_demo")
    callback = ThinkEvalCallback(spec, None, model_dir, str(REPO / "examples" / "data"), None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, len(tok), (2, 256))

    def train_step() -> None:
        model.train()
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    callback.evaluate(model, tok)  # warm-up: prompts loaded and encoded once per run
    costs = {"eval_think": [], "train step": []}
    for _ in range(args.rounds):
        for name, fn in (("eval_think", lambda: callback.evaluate(model, tok)), ("train step", train_step)):
            t0 = time.perf_counter()
            fn()
            costs[name].append(time.perf_counter() - t0)
    ev, st = statistics.median(costs["eval_think"]), statistics.median(costs["train step"])
    print(f"eval_think evaluation ({args.prompts} prompts x {args.max_new_tokens} tokens): {ev:.3f} s = {ev / st:.1f} "
          f"training steps of batch 2 x 256 ({st:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
