"""`thinkplugin.eval_think` through `llamafactory-cli train`: the think-behaviour metrics join the Trainer's
log every N steps; modes that cannot generate (sharded weights) or have no prompts are refused."""

from __future__ import annotations

import pytest

from lfrun import base_config, log_history, train

pytestmark = pytest.mark.slow
SPEC = {"every": 2, "prompts": 2, "max_new_tokens": 6, "data": "think_demo", "modes": ["think", "nothink"]}


def test_eval_think_metrics_in_the_log_history(tiny_qwen3, tmp_path):
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, template="qwen3_think", thinkplugin={"eval_think": SPEC})
    proc = train(config, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [r for r in log_history(out) if any(k.startswith("think_eval/") for k in r)]
    assert [r["step"] for r in evals] == [2, 4]
    for record in evals:
        # 6 new tokens from a random model: never a closed think block, always cut at the limit
        assert record["think_eval/think/well_formed"] == 0.0 and record["think_eval/think/truncated"] == 1.0
        assert record["think_eval/nothink/truncated"] == 1.0
        assert sum(v for k, v in record.items() if k.startswith("think_eval/think/status/")) == pytest.approx(1.0)
    losses = [r for r in log_history(out) if "loss" in r]
    assert len(losses) == 4 and all("loss_tags" in r for r in losses)


def test_eval_think_without_prompts_is_refused(tiny_qwen3, tmp_path):
    out = tmp_path / "out"
    spec = {k: v for k, v in SPEC.items() if k != "data"}
    proc = train(base_config(tiny_qwen3, out, thinkplugin={"eval_think": spec}), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "`thinkplugin.eval_think` needs held-out prompts: set `thinkplugin.eval_think.data`" in proc.stderr
    assert not out.exists()
