"""train_new_tokens_only and unfreeze stages, on real `llamafactory-cli train` runs with weight decay."""

from __future__ import annotations

import pytest
import torch
from lfrun import train_ok
from token_rows import END, SPECS, THINK, combo, lf_config, lf_load, weights

from lf_thinkplugin.demo.fixtures import QWEN25
from lf_thinkplugin.options import OptionsError, parse_options

EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def _others(t: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(t.shape[0], dtype=torch.bool)
    keep[[THINK, END]] = False
    return t[keep]


@pytest.mark.slow
def test_new_rows_only_then_staged_unfreeze(qwen25_untied, think_data, tmp_path, load_tokenizer):
    """Steps 1-2: only rows 151665/151666 move (AdamW, weight_decay 0.1, grad clipping); step 3 opens
    layer 1; step 4 opens every embedding row."""
    block = {
        "token_init": SPECS, "train_new_tokens_only": True,
        "unfreeze": [{"step": 2, "modules": ["model.layers.1.*"]}, {"step": 3, "modules": [EMB]}],
    }
    out = tmp_path / "out"
    log = train_ok(lf_config(qwen25_untied, think_data, out, block, save_steps=1), tmp_path)
    assert "unfreeze at step 2" in log and "unfreeze at step 3" in log
    start, final = weights(qwen25_untied), weights(out)
    step1, ckpt = weights(out / "checkpoint-1"), weights(out / "checkpoint-2")
    assert start.keys() == step1.keys() == ckpt.keys() == final.keys()

    # after 2 real optimizer steps: every other row and every other parameter bit-identical ...
    for key in start:
        if key in (EMB, HEAD):
            assert torch.equal(_others(ckpt[key]), _others(start[key])), key
            assert not torch.equal(ckpt[key][THINK], final[key][THINK])  # the new rows do train
        else:
            assert torch.equal(ckpt[key], start[key]), key
    # ... while the new rows do move in that frozen phase: <think> away from its (noise-free) token_init row at
    # step 1, and both new rows again at step 2 (</think>'s init has seeded noise, so it is compared step to step)
    for key in (EMB, HEAD):
        init = combo(start[key], load_tokenizer(QWEN25), ["思考", "think"])  # the <think> row before training
        assert not torch.allclose(step1[key][THINK].float(), init, rtol=0, atol=1e-4), key
        for row in (THINK, END):
            moved = (ckpt[key][row].float() - step1[key][row].float()).abs().max().item()
            assert moved > 1e-4, (key, row, moved)

    # after step 3 (layer 1 open) and step 4 (all embedding rows open)
    for key in start:
        if key.startswith("model.layers.1."):
            assert not torch.equal(final[key], start[key]), key
        elif key == EMB:
            assert not torch.equal(_others(final[key]), _others(start[key]))
        elif key == HEAD:
            assert torch.equal(_others(final[key]), _others(start[key]))
        else:
            assert torch.equal(final[key], start[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("finetuning_type", ["freeze", "lora"])
def test_new_rows_only_with_freeze_and_lora(finetuning_type, qwen25_untied, think_data, tmp_path, load_tokenizer):
    out = tmp_path / "out"
    extra = {"lora_target": "all"} if finetuning_type == "lora" else {}
    cfg = lf_config(qwen25_untied, think_data, out, {"token_init": SPECS, "train_new_tokens_only": True},
                    finetuning_type=finetuning_type, max_steps=2, save_steps=10, **extra)
    train_ok(cfg, tmp_path)
    start = weights(qwen25_untied)
    if finetuning_type == "freeze":
        final = weights(out)
        trained = {EMB: final[EMB], HEAD: final[HEAD]}
        assert all(torch.equal(final[k], start[k]) for k in start if k not in (EMB, HEAD))
    else:  # PEFT trainable tokens: the adapter holds only the new rows; merged, every other row is the base's
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        adapter = load_file(str(out / "adapter_model.safetensors"))
        lora_b = [v for k, v in adapter.items() if "lora_B" in k]
        assert lora_b and all(torch.count_nonzero(v) == 0 for v in lora_b)  # B starts at zero and never moved
        assert {k for k in adapter if "lora_" not in k} == {
            "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
            "base_model.model.lm_head.token_adapter.trainable_tokens_delta"}
        base = AutoModelForCausalLM.from_pretrained(str(qwen25_untied), dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(out)).merge_and_unload().state_dict()
        assert all(torch.equal(merged[k], start[k]) for k in start if k not in (EMB, HEAD))
        trained = {EMB: merged[EMB], HEAD: merged[HEAD]}
    for key, t in trained.items():
        assert torch.equal(_others(t), _others(start[key])), key
        assert not torch.equal(t[THINK], start[key][THINK]) and not torch.equal(t[END], start[key][END])
        init = combo(start[key], load_tokenizer(QWEN25), ["思考", "think"])  # the <think> row before training
        assert not torch.allclose(t[THINK], init, rtol=0, atol=1e-6), key


def test_unfreeze_pattern_that_matches_nothing_names_the_stage(qwen25_untied):
    from lf_thinkplugin.tokens.new_rows import NewRowsSchedule

    block = {"token_init": SPECS, "train_new_tokens_only": True, "unfreeze": [{"step": 1, "modules": ["layers.1"]}]}
    ctx, _, _, model, _ = lf_load(qwen25_untied, block)
    with pytest.raises(OptionsError, match=r"`thinkplugin.unfreeze\[0\].modules`: pattern 'layers.1' matches no trainable"):
        NewRowsSchedule(model, [THINK, END], ctx.options)


def test_unfreeze_needs_increasing_steps_and_new_rows_training():
    with pytest.raises(OptionsError, match="unfreeze steps must be strictly increasing"):
        parse_options({"token_init": SPECS, "train_new_tokens_only": True,
                       "unfreeze": [{"step": 3, "modules": ["*"]}, {"step": 1, "modules": ["*"]}]})
    with pytest.raises(OptionsError, match="set train_new_tokens_only: true"):
        parse_options({"token_init": SPECS, "unfreeze": [{"step": 3, "modules": ["*"]}]})
