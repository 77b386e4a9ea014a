"""Think-aware collator vs LF's own SFT collator on 8 x 2048-token batches with realistic reasoning.

Samples are built by LF's real supervised preprocessing (template `qwen3`, the real Qwen3
tokenizer, cutoff_len 2048): long think blocks (some truncated inside the block by cutoff_len),
direct answers with LF's empty think block, a response with two blocks, multi-turn samples, and
varied lengths so the batch is padded. Both collators run side by side in one process, alternately,
on deep copies of the same features (copying is not timed, so each call starts as cold as in a
dataloader). A round times both, in an order that alternates by round, with the garbage collector run
before and kept off during each call (as `timeit` does: a collection landing in one call is noise, not
that collator's cost). The ratio is the median over rounds of the paired ratio think/LF, with a 95%
bootstrap interval (resampled rounds); the medians of each side are printed too (target <= 1.10,
stretch 1.03). The in-call split times LF's class `__call__` inside the think collator's own call (both
collators go through the same timing wrapper): the plugin's own work per batch over LF's in that call,
free of the call-to-call spread of LF's collator. Peak memory: each collator runs once in a fresh child
process; the peak RSS above the RSS just before the call is compared (ratio printed).

    python benchmarks/bench_collator.py [--rounds 400] [--policy mask_empty] [--batch 8] [--seq 2048]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "Let me check the divisors of the number one by one.",
    "First, rewrite the equation so that x is alone on the left side.",
    "Wait, that assumption fails for negative values, so split into two cases.",
    "The sum of the first n odd numbers is n squared, which we can verify by induction.",
    "因此我们需要先计算每一项的值，然后再相加。",
    "Plugging x = 3 back in gives 2 * 3 + 1 = 7, which matches.",
    "Hmm, the edge case where the list is empty needs its own branch.",
    "So the probability is 3/8, because three of the eight outcomes are favourable.",
]


def reasoning(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def build_samples(batch: int, rng: random.Random) -> list[tuple[list[dict], str]]:
    """(prompt messages, response) pairs of several realistic shapes, cycled to `batch` samples."""
    user = lambda text: {"role": "user", "content": text}
    shapes = [
        lambda: ([user("Solve the problem. " * 8)], f"<think>\n{reasoning(rng, 200)}\n</think>\n\n" + reasoning(rng, 6)),
        lambda: ([user("Prove it.")], f"<think>\n{reasoning(rng, 120)}\n</think>\n\n{reasoning(rng, 30)}"),
        lambda: ([user("Quick question?")], reasoning(rng, 150)),  # LF adds the empty think block
        lambda: ([user("Two parts.")], (f"<think>\n{reasoning(rng, 60)}\n</think>\n\n{reasoning(rng, 10)} "
                 f"<think>\n{reasoning(rng, 60)}\n</think>\n\n{reasoning(rng, 10)}")),
        lambda: ([user("First?"), {"role": "assistant", "content": f"<think>\n{reasoning(rng, 40)}\n</think>\n\nA."},
                  user("Then?")], f"<think>\n{reasoning(rng, 110)}\n</think>\n\n{reasoning(rng, 8)}"),
        lambda: ([user("Compact please.")], f"<think>{reasoning(rng, 90)}</think>{reasoning(rng, 5)}"),
    ]
    return [shapes[i % len(shapes)]() for i in range(batch)]


def setup(batch: int, seq: int, seed: int = 0):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    from lf_thinkplugin.demo.fixtures import QWEN3, tokenizer_dir

    folder = tokenizer_dir(QWEN3)
    if folder is None:
        raise SystemExit("the Qwen3 tokenizer fixture is missing (set LF_THINKPLUGIN_FIXTURES)")
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    data_args = DataArguments(template="qwen3", cutoff_len=seq)
    template = get_template_and_fix_tokenizer(tok, data_args)
    processor = SupervisedDatasetProcessor(template=template, tokenizer=tok, processor=None, data_args=data_args)
    samples = build_samples(batch, random.Random(seed))
    n = len(samples)
    out = processor.preprocess_dataset({
        "_prompt": [p for p, _ in samples], "_response": [[{"role": "assistant", "content": r}] for _, r in samples],
        "_system": [""] * n, "_tools": [""] * n, "_images": [None] * n, "_videos": [None] * n, "_audios": [None] * n,
    })
    features = [{k: out[k][i] for k in ("input_ids", "attention_mask", "labels")} for i in range(n)]
    return features, template, tok


def collators(template, tok, policy: str):
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    from lf_thinkplugin.loss.collator import think_collator_class
    from lf_thinkplugin.options import ThinkPluginOptions

    common = {"template": template, "tokenizer": tok, "pad_to_multiple_of": 8, "label_pad_token_id": -100}
    base = SFTDataCollatorWith4DAttentionMask(**common)
    think = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=ThinkPluginOptions(think_loss=policy), **common)
    return base, think


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(which: str, args) -> None:
    """Peak RSS above the pre-call RSS for one call of one collator (run in a fresh process)."""
    features, template, tok = setup(args.batch, args.seq)
    base, think = collators(template, tok, args.policy)
    collator = think if which == "think" else base
    data = copy.deepcopy(features)
    before = rss_bytes()
    collator(data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"delta": max(peak - before, 0)}))


def median_interval(values: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `values` (resampled with replacement)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--policy", default="mask_empty", choices=["full", "mask_empty", "mask_reasoning"])
    parser.add_argument("--memory-runs", type=int, default=3, help="0: skip the peak-memory comparison")
    parser.add_argument("--memory-child", choices=["base", "think"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args)

    import torch

    torch.set_num_threads(1)  # collators run in dataloader workers, typically one thread each
    features, template, tok = setup(args.batch, args.seq)
    base, think = collators(template, tok, args.policy)
    out = think(copy.deepcopy(features))
    lengths = [len(f["input_ids"]) for f in features]
    spans = out["think_span"]
    print(f"batch: {args.batch} x {out['input_ids'].shape[1]} tokens (sample lengths {min(lengths)}-{max(lengths)}), "
          f"response tokens {int((spans > 0).sum())}, reasoning tokens {int((spans == 2).sum())}, policy {args.policy}")

    times = {"base": [], "think": [], "inner": []}
    # the in-call split: LF's class __call__ wrapped by a timer, so the think collator's own super().__call__
    # is timed inside its call; the base collator goes through the same wrapper, so both sides pay it
    lf_call = type(base).__call__

    def timed_lf_call(self, features):
        start = time.perf_counter()
        try:
            return lf_call(self, features)
        finally:
            if self is think:
                times["inner"].append(time.perf_counter() - start)

    type(base).__call__ = timed_lf_call
    for _ in range(3):  # warm-up
        base(copy.deepcopy(features)), think(copy.deepcopy(features))
    times["inner"].clear()
    for r in range(args.rounds):
        order = [("base", base), ("think", think)] if r % 2 == 0 else [("think", think), ("base", base)]
        for name, collator in order:
            data = copy.deepcopy(features)
            gc.collect()
            gc.disable()
            start = time.perf_counter()
            collator(data)
            times[name].append(time.perf_counter() - start)
            gc.enable()
    type(base).__call__ = lf_call  # LF's class as it was
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    paired = [t / b for t, b in zip(times["think"], times["base"])]
    lo, hi = median_interval(paired)
    print(f"time per batch (median of {args.rounds}): LF {med['base'] * 1e3:.2f} ms, think-aware {med['think'] * 1e3:.2f} ms"
          f" (ratio of medians {med['think'] / med['base']:.3f}; fastest: {low['base'] * 1e3:.2f} / {low['think'] * 1e3:.2f} ms)")
    print(f"time ratio think/LF (median of paired rounds): {statistics.median(paired):.3f}, 95% [{lo:.3f}, {hi:.3f}]"
          f" (target <= 1.10, stretch 1.03)")
    # the same call split: the plugin's work (everything but LF's own __call__) over LF's work in that call;
    # free of the call-to-call spread of LF's collator that widens the paired interval above
    own = [t - i for t, i in zip(times["think"], times["inner"])]
    in_call = [t / i for t, i in zip(times["think"], times["inner"])]
    lo, hi = median_interval(in_call)
    olo, ohi = median_interval(own)
    print(f"in-call split: plugin's own work {statistics.median(own) * 1e6:.0f} us per batch, 95% [{olo * 1e6:.0f}, "
          f"{ohi * 1e6:.0f}], on LF's {statistics.median(times['inner']) * 1e3:.2f} ms in the same call: "
          f"ratio {statistics.median(in_call):.3f}, 95% [{lo:.3f}, {hi:.3f}]")
    if not args.memory_runs:
        return

    deltas = {}
    for which in ("base", "think"):
        runs = []
        for _ in range(args.memory_runs):
            cmd = [sys.executable, __file__, "--memory-child", which, "--batch", str(args.batch), "--seq", str(args.seq),
                   "--policy", args.policy]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1])["delta"])
        deltas[which] = statistics.median(runs)
    print(f"peak memory above baseline (median of {args.memory_runs} fresh processes): "
          f"LF {deltas['base'] / 2**20:.2f} MiB, think-aware {deltas['think'] / 2**20:.2f} MiB")
    ratio = deltas["think"] / deltas["base"] if deltas["base"] else float("nan")
    print(f"peak-memory ratio think/LF: {ratio:.3f}")


if __name__ == "__main__":
    main()
