"""Cost of `template: native` per conversation as agent trajectories grow, vs LF's `qwen3`, in one process.

    taskset -c 1 python benchmarks/bench_native_turns.py [--rounds 1,16,64,128] [--reps 7] [--content distinct,repeated]

A trajectory of R rounds is R times: a user message, a tool-call turn with reasoning, the tool's answer,
a final answer with reasoning (a `tools` column, thinking on). `distinct`: every turn's words drawn at random;
`repeated`: the same round R times (the same reasoning in every round: no turn can be told apart by its text).
`chain` (not in the default run): one user message, then R tool calls with their answers, then the final answer;
with Qwen3's template every one of those turns trains, and each trained turn renders its own prompt.
Both arms tokenize the same conversations through LF's `SupervisedDatasetProcessor` (the code
`llamafactory-cli train` runs), each with a tokenizer of its own (LF fixes its template to the tokenizer),
cutoff_len large enough that nothing is cut. Per length, the batch is timed in pieces (`--chunks`), each
piece by one arm right after the other (order alternating by piece and repetition), so a burst of load on the
shared machine lands on both sides of a pair; the garbage collector is run before and kept off during each
call. Time per conversation: a piece's time over its size (the median is printed). The ratio native / qwen3
is the geometric mean of the paired ratios, with a 95% t-interval on their logs. Peak memory: one more batch
per arm under `tracemalloc` (not timed), the peak traced bytes above the start of the call.
Target: time ratio at most 1.5 at every length, the time per conversation growing linearly.
It measures the installed package (the plugin's `.pth` imports it at start-up): reinstall after editing.
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
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DEFAULT_TOKENIZER = HERE.parent.parent / "shared" / "fixtures" / "tokenizers" / "Qwen3-0.6B"
TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
WORDS = "the a train leaves at km hour so it needs minutes and then compare all arrival times last one city".split()
# t quantiles (0.975) by degrees of freedom
T975 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045, 39: 2.023,
        59: 2.001, 119: 1.980}


def trajectory(rounds: int, content: str, seed: int) -> dict:
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    def one_round() -> list[dict]:
        return [{"from": "human", "value": text(20)},
                {"from": "function_call", "value": f"<think>\n{text(40)}\n</think>\n\n" + json.dumps(
                    {"name": "get_weather", "arguments": {"city": text(1)}})},
                {"from": "observation", "value": json.dumps({"temp": rng.randint(0, 30)})},
                {"from": "gpt", "value": f"<think>\n{text(60)}\n</think>\n\n{text(30)}"}]

    if content == "chain":  # one task: a user message, R tool calls with their answers, a final answer
        turns = [{"from": "human", "value": text(20)}]
        for _ in range(rounds):
            turns += one_round()[1:3]
        turns.append({"from": "gpt", "value": f"<think>\n{text(60)}\n</think>\n\n{text(30)}"})
        return {"conversations": turns, "system": "", "tools": TOOLS}
    turns = one_round() * rounds if content == "repeated" else [t for _ in range(rounds) for t in one_round()]
    return {"conversations": turns, "system": "", "tools": TOOLS}


def t975(df: int) -> float:
    return T975.get(df) or T975[max(k for k in T975 if k <= df)]


class Arm:
    def __init__(self, template: str, tokenizer: str) -> None:
        from llamafactory.data.processor import SupervisedDatasetProcessor
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments

        from lf_thinkplugin.loading.tokenizer import from_pretrained
        from lf_thinkplugin.templates import register_templates

        register_templates()
        self.name = template
        self.tok = from_pretrained(tokenizer)  # one per arm: LF fixes its template to the tokenizer
        self.args = DataArguments(template=template, cutoff_len=1 << 22, enable_thinking=True)
        self.processor = SupervisedDatasetProcessor(template=get_template_and_fix_tokenizer(self.tok, self.args),
                                                    tokenizer=self.tok, processor=None, data_args=self.args)

    def aligned(self, samples: list[dict]) -> dict:
        from llamafactory.data.converter import SharegptDatasetConverter
        from llamafactory.data.parser import DatasetAttr

        attr = DatasetAttr("file", "b", formatting="sharegpt", messages="conversations", system="system", tools="tools")
        convert = SharegptDatasetConverter(attr, self.args)
        rows = [convert(s) for s in samples]
        return {k: [r[k] for r in rows] for k in rows[0]}

    def run(self, batch: dict) -> dict:
        return self.processor.preprocess_dataset(batch)


def timed(arm: Arm, batch: dict) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        arm.run(batch)
        return time.perf_counter() - start
    finally:
        gc.enable()


def traced_peak(arm: Arm, batch: dict) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        arm.run(batch)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", default="1,16,64,128", help="trajectory lengths (rounds), comma-separated")
    parser.add_argument("--content", default="distinct,repeated", help="distinct, repeated, chain (comma-separated)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per length (arms alternate)")
    parser.add_argument("--chunks", type=int, default=16, help="a batch is timed in this many pieces, arms alternating")
    parser.add_argument("--turns-budget", type=int, default=512,
                        help="conversations per batch: max(2, budget // rounds), the same for both arms")
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    args = parser.parse_args()

    arms = {"qwen3": Arm("qwen3", args.tokenizer), "native": Arm("native", args.tokenizer)}
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"native vs LF qwen3 through SupervisedDatasetProcessor, tokenizer {Path(args.tokenizer).name}, "
          f"{args.reps} alternating repetitions per length, CPUs {cpus}, Python {sys.version.split()[0]}")
    header = (f"{'content':9s} {'rounds':>6s} {'convs':>5s} {'tokens q/n':>15s} {'qwen3 ms':>9s} {'native ms':>9s} "
              f"{'ratio [95%]':>22s} {'peak q KiB':>11s} {'peak n KiB':>11s} {'mem ratio':>9s}")
    print(header)
    print("-" * len(header))
    for content in args.content.split(","):
        for rounds in [int(r) for r in args.rounds.split(",")]:
            n = max(2, args.turns_budget // rounds)
            samples = [trajectory(rounds, content, seed) for seed in range(n)]
            batches = {name: arm.aligned(samples) for name, arm in arms.items()}
            tokens = {}
            for name, arm in arms.items():  # warm-up; the token counts of each arm
                out = arm.run(batches[name])
                tokens[name] = sum(map(len, out["input_ids"])) // n
            chunks = min(n, args.chunks)
            parts = {name: [{k: v[c::chunks] for k, v in batch.items()} for c in range(chunks)]
                     for name, batch in batches.items()}
            times: dict[str, list[float]] = {"qwen3": [], "native": []}
            logs = []
            for rep in range(args.reps):
                for c in range(chunks):  # the arms one right after the other on the same conversations
                    size = len(parts["qwen3"][c]["_prompt"])
                    pair = {}
                    for name in (("qwen3", "native") if (rep + c) % 2 == 0 else ("native", "qwen3")):
                        pair[name] = timed(arms[name], parts[name][c]) / size
                        times[name].append(pair[name])
                    logs.append(math.log(pair["native"] / pair["qwen3"]))
            mean = statistics.fmean(logs)
            half = t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
            peak = {name: traced_peak(arm, batches[name]) for name, arm in arms.items()}
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(f"{content:9s} {rounds:6d} {n:5d} {tokens['qwen3']:>7d}/{tokens['native']:<7d} {med['qwen3']:9.2f} "
                  f"{med['native']:9.2f} {math.exp(mean):7.3f} [{math.exp(mean - half):.3f}, {math.exp(mean + half):.3f}] "
                  f"{peak['qwen3'] / 1024:11.0f} {peak['native'] / 1024:11.0f} {peak['native'] / peak['qwen3']:9.3f}",
                  flush=True)
    print("ms: median time per conversation; ratio: native / qwen3, geometric mean of the paired pieces, 95% t-interval; "
          "peak: tracemalloc peak of one batch (all its conversations) above the call's start")


if __name__ == "__main__":
    main()
