"""End-to-end tiny training with the plugin on vs off (target: wall-time ratio <= 1.05).

Same tiny Qwen3-architecture model, same data and seed; "off" has no `thinkplugin:` block (stock LF
code paths), "on" uses the think-aware collator and weighted loss with span logging. Runs alternate
(off, on, off, on, ...) so machine noise hits both; medians of LF's own `train_runtime` (training
loop only) and of the whole command's wall time are compared. Each side also runs 2x the steps, so
the marginal cost per step (what grows with a real run) is separated from one-time costs (start-up
checks, the serving bundle), which weigh heavily on a run of seconds.

    python benchmarks/bench_train_overhead.py [--repeats 3] [--steps 30]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lf_thinkplugin.demo.fixtures import QWEN3, tokenizer_dir  # noqa: E402
from lf_thinkplugin.demo.lf_subprocess import train  # noqa: E402
from lf_thinkplugin.demo.tiny_model import build_tiny_model  # noqa: E402

BLOCK = {"think_loss": "mask_empty", "think_loss_weight": 1.0, "log_span_loss": True}


def config(model: Path, out: Path, steps: int, plugin: bool) -> dict:
    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "think_demo", "dataset_dir": str(REPO / "examples" / "data"), "template": "qwen3",
        "cutoff_len": 256, "output_dir": str(out), "overwrite_output_dir": True, "per_device_train_batch_size": 4,
        "max_steps": steps, "learning_rate": 1.0e-3, "logging_steps": 5, "save_strategy": "no", "report_to": "none",
        "seed": 42,
    }
    if plugin:
        cfg["thinkplugin"] = BLOCK
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model", tokenizer_from=tokenizer_dir(QWEN3))
        results = {(name, steps): [] for name in ("off", "on") for steps in (args.steps, 2 * args.steps)}
        for i in range(args.repeats):
            for steps in (args.steps, 2 * args.steps):
                for name in ("off", "on"):
                    work = Path(tmp) / f"{name}{steps}-{i}"
                    start = time.perf_counter()
                    proc = train(config(model, work / "out", steps, name == "on"), work)
                    wall = time.perf_counter() - start
                    if proc.returncode != 0:
                        sys.exit(f"{name} run failed:\n{proc.stderr[-3000:]}")
                    runtime = json.loads((work / "out" / "all_results.json").read_text())["train_runtime"]
                    results[(name, steps)].append((runtime, wall))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(w for _, w in v)) for k, v in results.items()}
    n, n2 = args.steps, 2 * args.steps
    print(f"tiny Qwen3 full SFT, batch 4, cutoff 256, logging every 5 steps; {args.repeats} alternating runs each (medians):")
    for steps in (n, n2):
        off, on = med[("off", steps)], med[("on", steps)]
        print(f"  {steps:>3} steps: train_runtime off {off[0]:.2f} s  on {on[0]:.2f} s  ratio {on[0] / off[0]:.3f} (target <= 1.05); "
              f"command wall off {off[1]:.2f} s  on {on[1]:.2f} s  ratio {on[1] / off[1]:.3f}")
    slope = {k: (med[(k, n2)][0] - med[(k, n)][0]) / n for k in ("off", "on")}
    print(f"  marginal cost per step ({n} -> {n2} steps): off {slope['off'] * 1000:.1f} ms  on {slope['on'] * 1000:.1f} ms  "
          f"ratio {slope['on'] / slope['off']:.3f}")
    print("  all train_runtime (s): " + "; ".join(f"{k[0]}@{k[1]}: " + ", ".join(f"{r:.2f}" for r, _ in v) for k, v in results.items()))


if __name__ == "__main__":
    main()
