"""token_init under DeepSpeed ZeRO-3: real `llamafactory-cli train` on two gloo ranks, on CPU
(DeepSpeed's CPU accelerator), with the recipe's examples/deepspeed/ds_z3_config.json.

ZeRO-3 partitions every weight across the ranks, and its optimizer keeps an fp32 copy of each
partition that it writes back into the weights at every step. Rows written once the engine exists
are silently reverted by that copy; rows written before it, gathered and re-partitioned, stay.
`learning_rate: 0` makes this exact: the saved rows must be the initialised rows, bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, require_deepspeed
from lfrun import train_ok
from token_rows import END, SPECS, THINK, lf_config, lf_load, run_init, weights

ZERO3 = REPO / "examples" / "deepspeed" / "ds_z3_config.json"
TWO_RANKS = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}
EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"
SEED = 7  # lf_config's seed: the noise of `</think>` is drawn from it


@pytest.fixture(scope="module", autouse=True)
def deepspeed_installed():
    require_deepspeed()


@pytest.fixture(scope="module")
def reference_rows(qwen25_untied) -> dict[str, torch.Tensor]:
    """The rows a single process without DeepSpeed writes (same tokenizer, plan and seed)."""
    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS}, seed=SEED)
    run_init(ctx, model, tok, targs)
    return {EMB: model.get_input_embeddings().weight.detach()[[THINK, END]].clone(),
            HEAD: model.get_output_embeddings().weight.detach()[[THINK, END]].clone()}


def _zero3_config(model, data, out, finetuning_type: str, **overrides) -> dict:
    return lf_config(model, data, out, {"token_init": SPECS}, finetuning_type=finetuning_type,
                     deepspeed=str(ZERO3), ddp_backend="gloo", **overrides)


def _rows_and_rest(tensors: dict[str, torch.Tensor], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(tensors[key].shape[0], dtype=torch.bool)
    keep[[THINK, END]] = False
    return tensors[key][[THINK, END]], tensors[key][keep]


@pytest.mark.slow
@pytest.mark.parametrize("finetuning_type", ["full", "lora"])
def test_zero3_saved_rows_are_the_initialised_rows(finetuning_type, qwen25_untied, think_data, reference_rows, tmp_path):
    """One step at learning rate 0 under ZeRO-3 (full weights; LoRA with full embedding copies, since
    PEFT trainable tokens are refused there): the saved new rows equal the rows a plain process
    initialises, every other row equals the checkpoint's."""
    out = tmp_path / "out"
    log = train_ok(_zero3_config(qwen25_untied, think_data, out, finetuning_type,
                                 max_steps=1, learning_rate=0.0, save_steps=10), tmp_path, env=TWO_RANKS)
    assert log.count("token_init rows:") == 1
    assert "(written on rank 0, re-partitioned across 2 ranks by DeepSpeed ZeRO-3)" in log
    base = weights(qwen25_untied)
    if finetuning_type == "full":
        saved = weights(out)
    else:
        from safetensors.torch import load_file

        assert "PEFT trainable tokens do not fit here (DeepSpeed ZeRO-3)" in log
        adapter = load_file(str(out / "adapter_model.safetensors"))
        saved = {EMB: adapter["base_model.model.model.embed_tokens.weight"],
                 HEAD: adapter["base_model.model.lm_head.weight"]}
    for key in (EMB, HEAD):
        rows, rest = _rows_and_rest(saved, key)
        assert torch.equal(rows, reference_rows[key]), f"{key}: ZeRO-3 reverted or changed the initialised rows"
        assert not torch.equal(rows, base[key][[THINK, END]])
        assert torch.equal(rest, _rows_and_rest(base, key)[1])


@pytest.mark.slow
def test_zero3_resume_keeps_the_checkpoint_rows(qwen25_untied, think_data, tmp_path):
    """A ZeRO-3 run resumed from checkpoint-2 (DeepSpeed's partitioned checkpoint) does not
    re-initialise the trained rows and ends where the uninterrupted run ends."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    log = train_ok(_zero3_config(qwen25_untied, think_data, full, "full"), tmp_path, env=TWO_RANKS)
    assert "token_init rows:" in log and (full / "checkpoint-2").is_dir()
    trained = weights(full / "checkpoint-2")
    assert not torch.equal(trained[EMB][THINK], weights(qwen25_untied)[EMB][THINK])
    log = train_ok(_zero3_config(qwen25_untied, think_data, resumed, "full",
                                 resume_from_checkpoint=str(full / "checkpoint-2")), tmp_path, env=TWO_RANKS)
    assert "token_init: resumed at step 2; rows kept from the checkpoint" in log and "token_init rows:" not in log
    want, got = weights(full), weights(resumed)
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
