"""Think-aware DPO and KTO on CPU through `llamafactory-cli train`: the logged rewards and loss equal a direct
computation from the models' own log-probabilities, with the reasoning tokens found here by their ids.

- LoRA, `mask_reasoning`: one step, then LF's evaluation on the same pairs with the trained adapter; the
  policy is the saved adapter, the reference the base model (adapter off). Answer tokens only, both.
- Full fine-tuning with a separate `ref_model` (another random model), `think_loss_weight: 0.5`: reasoning
  tokens' log-probabilities count half in both models' scores.
The reasoning block of a response is `<think>` ... `</think>` and the `\\n\\n` token after it (Qwen3's
layout; loss/spans.py keeps whitespace after the closer in the block).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import require_fixture
from lfrun import train_ok

from lf_thinkplugin.demo.fixtures import QWEN3

pytestmark = pytest.mark.slow
BETA = 0.1
PAIRS = [
    ("What is 2 + 3?", "<think>\nadd them: two and three\n</think>\n\n5", "<think>\nadd wrongly\n</think>\n\n6"),
    ("Name a colour.", "<think>\nany colour will do\n</think>\n\nBlue.", "Seven."),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dpo_data")
    rows = [{"instruction": q, "input": "", "chosen": c, "rejected": r} for q, c, r in PAIRS]
    (folder / "pairs.json").write_text(json.dumps(rows), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"pairs": {
        "file_name": "pairs.json", "ranking": True,
        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


def reasoning_weights(tok, ids: list[int], labels: list[int], weight: float) -> list[float]:
    """Per position: 0 untrained, `weight` inside the think block (tags and the `\\n\\n` after `</think>`), else 1."""
    opener, closer = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
    blank = tok.encode("\n\n", add_special_tokens=False)
    assert len(blank) == 1
    out = [0.0 if lab == -100 else 1.0 for lab in labels]
    if opener in labels:
        start, end = labels.index(opener), labels.index(closer) + 1
        end += labels[end] == blank[0]
        for i in range(start, end):
            out[i] = weight
    return out


@torch.no_grad()
def score(model, ids: list[int], labels: list[int], weights: list[float]) -> float:
    logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return sum(w * logp[t - 1, labels[t]].item() for t, w in enumerate(weights) if t and w)


def direct(policy, reference, tok, rows, weight: float) -> dict[str, float]:
    """DPO sigmoid on the weighted scores, averaged over the pairs as LF's metrics are."""
    chosen, rejected, losses = [], [], []
    for row in rows:
        r = {}
        for side in ("chosen", "rejected"):
            ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
            w = reasoning_weights(tok, ids, labels, weight)
            r[side] = BETA * (score(policy, ids, labels, w) - score(reference, ids, labels, w))
        chosen.append(r["chosen"])
        rejected.append(r["rejected"])
        losses.append(-math.log(1 / (1 + math.exp(-(r["chosen"] - r["rejected"])))))
    n = len(rows)
    return {"rewards/chosen": sum(chosen) / n, "rewards/rejected": sum(rejected) / n, "loss": sum(losses) / n}


def run_dpo(model: Path, data: Path, tmp: Path, block: dict, **lf) -> tuple[dict, list]:
    from datasets import load_from_disk

    out = tmp / "out"
    config = {
        "model_name_or_path": str(model), "stage": "dpo", "do_train": True, "do_eval": True, "eval_dataset": "pairs",
        "dataset": "pairs", "dataset_dir": str(data), "cutoff_len": 256, "pref_beta": BETA, "pref_loss": "sigmoid",
        "template": "qwen3_think", "tokenized_path": str(tmp / "tokenized"), "output_dir": str(out),
        "per_device_train_batch_size": 2, "per_device_eval_batch_size": 2, "max_steps": 1, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "seed": 7, "overwrite_output_dir": True,
        "thinkplugin": {"export_serving": False, **block}, **lf,
    }
    train_ok(config, tmp)
    metrics = json.loads((out / "eval_results.json").read_text())
    return metrics, list(load_from_disk(str(tmp / "tokenized" / "validation")))


def check(metrics: dict, want: dict) -> None:
    for key, value in want.items():
        assert metrics[f"eval_{key}"] == pytest.approx(value, rel=1e-4, abs=1e-5), (key, metrics)
    parts = metrics["eval_rewards/chosen_reasoning"] + metrics["eval_rewards/chosen_answer"]
    assert parts == pytest.approx(metrics["eval_rewards/chosen"], rel=1e-5, abs=1e-6)


def test_lora_mask_reasoning_scores_answers_only(tiny_qwen3, data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics, rows = run_dpo(tiny_qwen3, data, tmp_path, {"think_loss": "mask_reasoning", "log_span_loss": True},
                            finetuning_type="lora", lora_target="all", learning_rate=0.05)
    tok = AutoTokenizer.from_pretrained(str(require_fixture(QWEN3)))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen3), dtype=torch.float32).eval()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_qwen3), dtype=torch.float32),
                                       str(tmp_path / "out")).eval()
    want = direct(policy, base, tok, rows, weight=0.0)
    assert abs(want["rewards/chosen"]) > 1e-3, "the adapter changed nothing: the check could not fail"
    # the same run without the mask would have scored otherwise: the reasoning counts
    unmasked = direct(policy, base, tok, rows, weight=1.0)
    assert abs(unmasked["rewards/chosen"] - want["rewards/chosen"]) > 1e-3
    check(metrics, want)
    # masked blocks still have their length logged (counted before masking); the rejected side of pair 2 has none
    assert metrics["eval_think/chosen_reasoning_tokens"] > 0


def test_separate_reference_and_reasoning_weight(tiny_qwen3, data, tmp_path):
    from lf_thinkplugin.demo.tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = build_tiny_model(tmp_path / "ref", require_fixture(QWEN3), seed=1)
    metrics, rows = run_dpo(tiny_qwen3, data, tmp_path, {"think_loss_weight": 0.5, "log_span_loss": True},
                            finetuning_type="full", ref_model=str(reference), learning_rate=0.0)
    tok = AutoTokenizer.from_pretrained(str(require_fixture(QWEN3)))
    policy = AutoModelForCausalLM.from_pretrained(str(tiny_qwen3), dtype=torch.float32).eval()
    ref = AutoModelForCausalLM.from_pretrained(str(reference), dtype=torch.float32).eval()
    want = direct(policy, ref, tok, rows, weight=0.5)
    assert abs(want["rewards/chosen"] - direct(policy, ref, tok, rows, weight=1.0)["rewards/chosen"]) > 1e-3
    check(metrics, want)


def test_kto_lora_mask_reasoning_scores_answers_only(tiny_qwen3, tmp_path):
    """KTO: the samples' log-probabilities (and their logged parts) over answer tokens only, as trained."""
    from datasets import load_from_disk
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"from": "human", "value": q}, {"from": "gpt", "value": side}], "label": ok}
            for (q, good, bad) in PAIRS for side, ok in ((good, True), (bad, False))]
    (data / "kto.json").write_text(json.dumps(rows), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"kto": {
        "file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"}}}))
    out = tmp_path / "out"
    train_ok({"model_name_or_path": str(tiny_qwen3), "stage": "kto", "do_train": True, "do_eval": True,
              "eval_dataset": "kto", "dataset": "kto", "dataset_dir": str(data), "template": "qwen3_think",
              "cutoff_len": 256, "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(out),
              "finetuning_type": "lora", "lora_target": "all", "learning_rate": 0.05, "per_device_train_batch_size": 4,
              "per_device_eval_batch_size": 4, "max_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 7,
              "thinkplugin": {"think_loss": "mask_reasoning", "log_span_loss": True, "export_serving": False}}, tmp_path)
    metrics = json.loads((out / "eval_results.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(require_fixture(QWEN3)))
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_qwen3), dtype=torch.float32),
                                       str(out)).eval()
    for tag, side in ((True, "chosen"), (False, "rejected")):
        samples = [r for r in load_from_disk(str(tmp_path / "tokenized" / "validation")) if r["kto_tags"] == tag]
        masked = [score(policy, r["input_ids"], r["labels"], reasoning_weights(tok, r["input_ids"], r["labels"], 0.0))
                  for r in samples]
        full = [score(policy, r["input_ids"], r["labels"], reasoning_weights(tok, r["input_ids"], r["labels"], 1.0))
                for r in samples]
        want = sum(masked) / len(masked)
        assert abs(want - sum(full) / len(full)) > 1e-3  # the mask matters here
        assert metrics[f"eval_logps/{side}"] == pytest.approx(want, rel=1e-4)
        assert metrics[f"eval_logps/{side}_answer"] == pytest.approx(want, rel=1e-4)
        assert metrics[f"eval_logps/{side}_reasoning"] == 0.0
