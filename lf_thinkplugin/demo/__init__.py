"""`lf-think demo`: the main job. A tiny offline training with the plugin on, in about a minute on CPU.

Builds a random tiny Qwen3-architecture model (real Qwen3 fixture tokenizer when present, else a
Qwen3-style tokenizer built here), copies the demo reasoning dataset, runs
`llamafactory-cli train examples/yaml/demo_tiny.yaml` as a subprocess, prints a summary, then
`lf-think eval` of the trained model against the untrained one (with a chart) and the serving
bundle's parity verdict.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .fixtures import QWEN3, tokenizer_dir
from .lf_subprocess import log_history, log_records, train


def examples_dir() -> Path:
    """examples/ shipped inside the wheel (`_examples`), else the checkout's (editable install)."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_examples"
    return packaged if packaged.is_dir() else package.parent / "examples"


def summarise(output_dir: Path) -> str:
    steps = [r for r in log_history(output_dir) if "loss" in r]
    first, last = steps[0], steps[-1]
    total = log_records(output_dir)[-1]["total_steps"]
    lines = [f"steps: {last['step']}/{total}", f"loss: {first['loss']:.4f} (step 1) -> {last['loss']:.4f} (step {last['step']})"]
    for key in ("loss_think", "loss_answer"):
        if key in first and key in last:
            lines.append(f"{key}: {first[key]:.4f} -> {last[key]:.4f}")
    lines.append(f"output: {output_dir} ({', '.join(sorted(p.name for p in output_dir.iterdir()))})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lf-think demo", description=__doc__)
    parser.add_argument("--out", default="lf-think-demo", help="work folder (model, data, output); must be new or empty")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--force", action="store_true", help="reuse a non-empty --out folder (its demo output is replaced)")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"[lf_thinkplugin] {out} exists and is not empty; pass --force to reuse it or choose --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("model", "data", "output"):
        shutil.rmtree(out / sub, ignore_errors=True)

    from .tiny_model import build_tiny_model

    tok = tokenizer_dir(QWEN3)
    print(f"[demo] building a tiny Qwen3-architecture model with the {'real Qwen3' if tok else 'self-built Qwen3-style'} tokenizer")
    model_dir = build_tiny_model(out / "model", tokenizer_from=tok)
    shutil.copytree(examples_dir() / "data", out / "data")

    recipe = examples_dir() / "yaml" / "demo_tiny.yaml"
    overrides = (f"model_name_or_path={model_dir}", f"dataset_dir={out / 'data'}", f"output_dir={out / 'output'}",
                 f"max_steps={args.max_steps}")
    print(f"[demo] llamafactory-cli train {recipe} {' '.join(overrides)}", flush=True)
    proc = train(recipe, out, cli_overrides=overrides)
    (out / "train.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"[demo] training failed (exit {proc.returncode}); last lines of {out / 'train.log'}:", file=sys.stderr)
        print("\n".join((proc.stdout + proc.stderr).splitlines()[-30:]), file=sys.stderr)
        return proc.returncode
    print("[demo] done\n" + summarise(out / "output"))
    return show_eval(out)


def show_eval(out: Path) -> int:
    """The loop's last step: `lf-think eval` of the trained model vs the untrained one, and the serving verdict."""
    from ..evaluation import main as eval_main

    chart = out / "eval.png"
    argv = ["--model", str(out / "output"), "--baseline", str(out / "model"), "--data", "think_demo",
            "--dataset-dir", str(out / "data"), "--modes", "data", "--max-new-tokens", "48", "--chart", str(chart)]
    print(f"[demo] lf-think eval {' '.join(argv)}", flush=True)
    code = eval_main(argv)
    if code == 0:
        print(f"[demo] chart: {chart}")
    serving = out / "output" / "SERVING.md"
    if serving.is_file():
        verdict = next((line for line in serving.read_text(encoding="utf-8").splitlines() if "apply_chat_template" in line), "")
        print(f"[demo] serving bundle ({serving}): {verdict.strip()}")
    return code
