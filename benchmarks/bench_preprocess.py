"""Preprocessing cost of `template: native` vs LF's `qwen3` template, side by side in one run.

    python benchmarks/bench_preprocess.py [--n 20000] [--repeats 2] [--tokenizer DIR]

N multi-turn reasoning conversations (a quarter with a tool-call chain and a `tools` column) are
aligned by LF's sharegpt converter once, then tokenized by LF's `SupervisedDatasetProcessor` (the code
`llamafactory-cli train` runs) with each template, in alternating child processes (a fresh process
per arm and repeat, so peak memory is each arm's own). Prints seconds and peak RSS per arm and the
ratio native / qwen3 (target: time at most 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = HERE.parent.parent / "shared" / "fixtures" / "tokenizers" / "Qwen3-0.6B"
TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])


def conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = "the a train leaves at km hour so it needs minutes and then compare all arrival times last one".split()

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    out = []
    for i in range(n):
        turns, tools = [], ""
        if i % 4 == 0:
            tools = TOOLS
            turns += [{"from": "human", "value": text(20)},
                      {"from": "function_call", "value": f"<think>\n{text(40)}\n</think>\n\n" + json.dumps(
                          {"name": "get_weather", "arguments": {"city": text(1)}})},
                      {"from": "observation", "value": json.dumps({"temp": rng.randint(0, 30)})}]
        else:
            turns.append({"from": "human", "value": text(20)})
        for t in range(rng.randint(1, 3)):
            if t:
                turns.append({"from": "human", "value": text(15)})
            turns.append({"from": "gpt", "value": f"<think>\n{text(rng.randint(40, 160))}\n</think>\n\n{text(30)}"})
        out.append({"conversations": turns, "system": "You are helpful." if i % 3 == 0 else "", "tools": tools})
    return out


def run_arm(template: str, n: int, tokenizer: str) -> dict:
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from lf_thinkplugin.loading.tokenizer import from_pretrained
    from lf_thinkplugin.templates import register_templates

    register_templates()
    tok = from_pretrained(tokenizer)
    args = DataArguments(template=template, cutoff_len=8192, enable_thinking=True)
    attr = DatasetAttr("file", "b", formatting="sharegpt", messages="conversations", system="system", tools="tools")
    convert = SharegptDatasetConverter(attr, args)
    aligned = [convert(c) for c in conversations(n)]
    batches = [aligned[i:i + 1000] for i in range(0, n, 1000)]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    template_obj = get_template_and_fix_tokenizer(tok, args)
    processor = SupervisedDatasetProcessor(template=template_obj, tokenizer=tok, processor=None, data_args=args)
    started = time.perf_counter()
    tokens = trained = 0
    for batch in batches:
        out = processor.preprocess_dataset({k: [a[k] for a in batch] for k in batch[0]})
        tokens += sum(map(len, out["input_ids"]))
        trained += sum(sum(1 for x in row if x != -100) for row in out["labels"])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"template": template, "seconds": seconds, "peak_mib": peak / 1024, "peak_above_start_mib": (peak - base_rss) / 1024,
            "tokens": tokens, "trained_tokens": trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.n, args.tokenizer)))
        return
    results: dict[str, list[dict]] = {"qwen3": [], "native": []}
    for repeat in range(args.repeats):
        for arm in (("qwen3", "native") if repeat % 2 == 0 else ("native", "qwen3")):
            proc = subprocess.run([sys.executable, __file__, "--arm", arm, "--n", str(args.n), "--tokenizer", args.tokenizer],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            results[arm].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{args.n} conversations ({args.n // 4} with tool calls), {args.repeats} repeats, alternating processes, "
          f"{os.cpu_count()} CPUs")
    for arm, runs in results.items():
        best = min(runs, key=lambda r: r["seconds"])
        print(f"  {arm:7s} seconds {[round(r['seconds'], 2) for r in runs]}  peak RSS {best['peak_mib']:.0f} MiB "
              f"(+{best['peak_above_start_mib']:.0f} during preprocessing)  tokens {best['tokens']}  trained {best['trained_tokens']}")
    ratio = min(r["seconds"] for r in results["native"]) / min(r["seconds"] for r in results["qwen3"])
    mem = max(r["peak_mib"] for r in results["native"]) / max(r["peak_mib"] for r in results["qwen3"])
    print(f"native / qwen3: time {ratio:.3f}x (best of {args.repeats}), peak RSS {mem:.3f}x")


if __name__ == "__main__":
    main()
