"""Loss on the think tags over the first training steps: `token_init` (`tokens`) vs LF's default init.

A tiny Qwen3-architecture model (hidden 64, tied embeddings) with the real Qwen2.5 tokenizer (no
think tags) is first pre-trained here, in plain torch, on reasoning data whose reasoning is wrapped
in existing words: `思考` ... `结束` ("think" ... "end"). That stands in for a base model that has
seen reasoning-like text. The fine-tune data then uses `<think>` / `</think>`, which are new tokens.
Three `llamafactory-cli`-equivalent runs (LF's `run_exp`, same data, seed and steps) differ only in
how the new rows start:
- `LF default (spare rows)`: the checkpoint has spare rows (151936 for 151665 tokens), so LF 0.9.5
  adds the tokens without touching their rows: they keep whatever the checkpoint held;
- `LF default (grown)`: the same weights cut to 151665 rows, so LF grows the matrix and gives the
  new rows its noisy mean;
- `token_init tokens`: the spare-row checkpoint with `thinkplugin.token_init`
  `{<think>: [思考], </think>: [结束]}`.
Before each optimizer step, a callback measures the mean cross-entropy of predicting the tags on a
fixed held-out batch (the tags' label positions only).

    python benchmarks/bench_token_init.py [--steps 10] [--pretrain-steps 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

TAGS = ("<think>", "</think>")
MARKERS = ("思考", "结束")  # what the pre-training data uses where the fine-tune data has the tags
RUNS = ("LF default (spare rows)", "LF default (grown)", "token_init tokens")


def samples(n: int, seed: int, open_tag: str, close_tag: str) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        op, word, val = rng.choice([("+", "plus", a + b), ("*", "times", a * b), ("-", "minus", a - b)])
        out.append({"instruction": f"What is {a} {op} {b}?", "input": "",
                    "output": f"{open_tag}\n{a} {word} {b} is {val}.\n{close_tag}\n\n{val}"})
    return out


def encode(tokenizer, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) rendered by LF's own `qwen` template, prompt masked as LF does."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen"))
    out = []
    for r in rows:
        prompt, answer = template.encode_oneturn(
            tokenizer, [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        )
        out.append((prompt + answer, [-100] * len(prompt) + answer))
    return out


def pretrain(work: Path, steps: int) -> tuple[Path, Path]:
    """A tiny model trained on the marker-word data; saved with spare rows and cut to 151665 rows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lf_thinkplugin.demo.fixtures import QWEN25, tokenizer_dir
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    spare, grown = work / "base_spare", work / "base_grown"
    if (spare / "done").is_file() and (grown / "done").is_file():
        return spare, grown
    build_tiny_model(spare, tokenizer_dir(QWEN25), tie_word_embeddings=True)
    tok = AutoTokenizer.from_pretrained(str(spare), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(spare), local_files_only=True)
    data = encode(tok, samples(512, 1, *MARKERS))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = random.Random(step).sample(data, 16)
        width = max(len(i) for i, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"  pretrain step {step:4d}  loss {loss.item():.3f}", flush=True)
    model.save_pretrained(str(spare))
    (spare / "done").write_text("")
    # the same weights without spare rows: LF has to grow the matrix for the tags
    grown.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (grown / name).write_bytes((spare / name).read_bytes())
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(str(grown))
    (grown / "done").write_text("")
    return spare, grown


def run_one(name: str, model: Path, work: Path, steps: int, result: Path) -> None:
    """One fine-tune through LF's run_exp, with the plugin active; writes tag losses per step to result."""
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    data = work / "data"
    data.mkdir(exist_ok=True)
    (data / "think.json").write_text(json.dumps(samples(256, 2, *TAGS), ensure_ascii=False), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"think_bench": {"file_name": "think.json"}}))
    held_out = samples(16, 3, *TAGS)

    class TagLoss(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def _measure(self, model, tokenizer) -> None:
            tag_ids = tokenizer.convert_tokens_to_ids(list(TAGS))
            batch = encode(tokenizer, held_out)
            width = max(len(i) for i, _ in batch)
            ids = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i, _ in batch])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
            was_training = model.training
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            model.train(was_training)
            target = labels[:, 1:]
            at_tags = (target == tag_ids[0]) | (target == tag_ids[1])
            ce = torch.nn.functional.cross_entropy(logits[at_tags], target[at_tags])
            self.losses.append(ce.item())

        def on_step_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
            self._measure(model, processing_class)  # after every on_train_begin (token init), before the update

        def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            self._measure(model, processing_class)

    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "think_bench", "dataset_dir": str(data), "template": "qwen", "cutoff_len": 96,
        "output_dir": str(work / "out" / name.replace(" ", "_")), "overwrite_output_dir": True,
        "per_device_train_batch_size": 8, "learning_rate": 1.0e-3, "lr_scheduler_type": "constant",
        "max_steps": steps, "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 42,
        "add_tokens": ",".join(TAGS),
    }
    if name == "token_init tokens":
        del cfg["add_tokens"]  # the plugin adds them through the same LF key
        cfg["thinkplugin"] = {"log_span_loss": False, "token_init": {TAGS[0]: [MARKERS[0]], TAGS[1]: [MARKERS[1]]}}
    tag_loss = TagLoss()
    run_exp(cfg, callbacks=[tag_loss])
    result.write_text(json.dumps(tag_loss.losses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pretrain-steps", type=int, default=100)
    parser.add_argument("--workdir", default=None, help="reuse a folder (keeps the pre-trained model)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one fine-tune in this process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_token_init_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.run:
        run_one(args.run, Path(args.model), work, args.steps, Path(args.result))
        return 0

    print(f"pre-training the tiny model ({args.pretrain_steps} steps) in {work}", flush=True)
    spare, grown = pretrain(work, args.pretrain_steps)
    results = {}
    for name in RUNS:
        model = grown if name == "LF default (grown)" else spare
        result = work / f"{name.replace(' ', '_')}.json"
        cmd = [sys.executable, __file__, "--run", name, "--model", str(model), "--result", str(result),
               "--steps", str(args.steps), "--workdir", str(work)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:])
            return 1
        results[name] = json.loads(result.read_text())
        print(f"  ran {name}", flush=True)

    print("\nmean cross-entropy of the think tags on 16 held-out samples, before each optimizer step")
    print("step  " + "  ".join(f"{n:>24}" for n in RUNS))
    for step in range(args.steps + 1):
        print(f"{step:4d}  " + "  ".join(f"{results[n][step]:24.3f}" for n in RUNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
