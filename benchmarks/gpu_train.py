"""GPU benchmark: Qwen3-0.6B architecture (random init, real Qwen3 tokenizer), bf16, plugin on vs off.

For LoRA and full fine-tuning, trains the same model on the same synthetic reasoning data with and
without a `thinkplugin:` block (think-aware collator, weighted loss, span logging), alternating runs,
and prints tokens/s (LF's effective_tokens_per_sec) and peak GPU memory (LF's RECORD_VRAM) with the
on/off ratios (target: throughput ratio >= 0.98). Needs a CUDA GPU; the tokenizer folder is an
argument because ../shared does not travel to a GPU machine (copy it into an ignored folder).

    python benchmarks/gpu_train.py --tokenizer .bench/Qwen3-0.6B [--steps 40] [--repeats 2] [--seq 2048]
    python benchmarks/gpu_train.py --tokenizer ../shared/fixtures/tokenizers/Qwen3-0.6B --smoke   # CPU plumbing check
"""

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lf_thinkplugin.demo.lf_subprocess import log_records, train  # noqa: E402

BLOCK = {"think_loss": "mask_empty", "think_loss_weight": 0.5, "log_span_loss": True}
WORDS = "let us check each case carefully then add the parts and verify the total against the bound".split()


def build_model(tokenizer: Path, out: Path, smoke: bool) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if smoke:  # the same pipeline on a 2-layer model, to check the script's plumbing on a CPU
        from lf_thinkplugin.demo.tiny_model import build_tiny_model

        return build_tiny_model(out, tokenizer_from=tokenizer)

    config = AutoConfig.from_pretrained(tokenizer)  # the fixture's Qwen3-0.6B config.json
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer / name, out / name)
    return out


def write_data(folder: Path, samples: int, words: int) -> None:
    rng = random.Random(0)
    rows = []
    for i in range(samples):
        reasoning = " ".join(rng.choice(WORDS) for _ in range(words)) if i % 4 else ""  # a quarter direct answers
        answer = " ".join(rng.choice(WORDS) for _ in range(words // 8))
        rows.append({"messages": [{"role": "user", "content": f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(30))},
                                  {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}]})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": "bench.json", "formatting": "sharegpt",
        "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content",
        "user_tag": "user", "assistant_tag": "assistant"}}}))


def run(model: Path, data: Path, out: Path, method: str, plugin: bool, steps: int, seq: int, bf16: bool) -> tuple[float, float]:
    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": method,
        "dataset": "bench", "dataset_dir": str(data), "template": "qwen3", "cutoff_len": seq,
        "output_dir": str(out), "overwrite_output_dir": True, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2, "max_steps": steps, "learning_rate": 1.0e-4 if method == "full" else 1.0e-3,
        "bf16": bf16, "logging_steps": 10, "save_strategy": "no", "report_to": "none", "seed": 42,
        "include_effective_tokens_per_second": True, "preprocessing_num_workers": 8 if bf16 else None,
    }
    if method == "lora":
        cfg.update(lora_rank=16, lora_target="all")
    if plugin:
        cfg["thinkplugin"] = BLOCK
    proc = train(cfg, out.parent, env={"RECORD_VRAM": "1"})
    if proc.returncode != 0:
        sys.exit(f"{method} plugin={plugin} failed:\n{proc.stderr[-4000:]}")
    tps = json.loads((out / "all_results.json").read_text())["effective_tokens_per_sec"]
    vram = max(r.get("vram_allocated", 0.0) for r in log_records(out))
    return tps, vram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with Qwen3-0.6B tokenizer + config.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--smoke", action="store_true", help="tiny model, fp32, CPU allowed: checks the plumbing only")
    args = parser.parse_args()
    import torch

    if args.smoke:
        args.steps, args.repeats, args.seq = 2, 1, 256
        print("smoke run: tiny model, fp32; the figures mean nothing")
    elif not torch.cuda.is_available():
        sys.exit("gpu_train.py needs a CUDA GPU (or --smoke to check the plumbing on a CPU)")
    else:
        print(f"device: {torch.cuda.get_device_name(0)}; Qwen3-0.6B architecture, random init, bf16, seq {args.seq}")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args.tokenizer, Path(tmp) / "model", args.smoke)
        write_data(Path(tmp) / "data", samples=args.steps * 8 * 2, words=args.seq // 3)
        for method in ("lora", "full"):
            res = {"off": [], "on": []}
            for i in range(args.repeats):
                for name in ("off", "on"):
                    out = Path(tmp) / f"{method}-{name}-{i}" / "out"
                    res[name].append(run(model, Path(tmp) / "data", out, method, name == "on", args.steps, args.seq, not args.smoke))
            tps = {k: statistics.median(t for t, _ in v) for k, v in res.items()}
            mem = {k: max(m for _, m in v) for k, v in res.items()}
            print(f"{method:>4}: tokens/s off {tps['off']:.0f} on {tps['on']:.0f} ratio {tps['on'] / tps['off']:.3f} (target >= 0.98); "
                  f"peak GiB off {mem['off']:.2f} on {mem['on']:.2f} ratio {mem['on'] / max(mem['off'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
