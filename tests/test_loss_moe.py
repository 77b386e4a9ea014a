"""A MoE model's router aux loss under the think-aware trainer: kept exactly as the model's forward adds it."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from lf_sft import LOSS_SAMPLES, encode, make_trainer, step_loss

from lf_thinkplugin.demo.fixtures import QWEN3
from lf_thinkplugin.loss.collator import SPAN_KEY
from lf_thinkplugin.loss.spans import IGNORE_INDEX, REASONING
from lf_thinkplugin.loss.trainer import _aux_coef
from lf_thinkplugin.options import ThinkPluginOptions

COEF = 0.05


@pytest.fixture(scope="module")
def moe_setup():
    """A random 2-layer hidden-64 Qwen3-MoE (4 experts, top-2, the real Qwen3 vocabulary), router aux loss on
    the way LF turns it on (`moe_aux_loss_coef` -> `output_router_logits`, `router_aux_loss_coef`)."""
    from llamafactory.model.model_utils.moe import configure_moe
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    features, tpl, tok = encode(QWEN3, "qwen3", LOSS_SAMPLES)
    config = Qwen3MoeConfig(
        vocab_size=151936, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
        tie_word_embeddings=True,
    )
    configure_moe(config, types.SimpleNamespace(moe_aux_loss_coef=COEF), is_trainable=True)
    assert config.output_router_logits and config.router_aux_loss_coef == COEF
    torch.manual_seed(0)
    return features, tpl, tok, Qwen3MoeForCausalLM(config)


def aux_term(model, batch):
    """coef * load-balancing loss from the model's router logits, by transformers' own function."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    aux = load_balancing_loss_func(out.router_logits, model.config.num_experts, model.config.num_experts_per_tok,
                                   batch["attention_mask"])
    return COEF * aux, out.logits


def forced_weighted(trainer, monkeypatch):
    """Take the weighted code path even at think_loss_weight 1."""
    monkeypatch.setattr(type(trainer), "_weighted", property(lambda self: True))
    return trainer


def test_weight_one_is_lf_loss_aux_included(moe_setup, tmp_path):
    base = make_trainer(moe_setup, tmp_path / "base")
    think = make_trainer(moe_setup, tmp_path / "think", ThinkPluginOptions())
    batch_base = base.data_collator(copy.deepcopy(moe_setup[0]))
    batch_think = think.data_collator(copy.deepcopy(moe_setup[0]))
    aux, _ = aux_term(moe_setup[3], batch_base)
    assert aux.item() > 1e-2  # the aux term is there to be lost
    model = moe_setup[3]
    with torch.no_grad():
        ce_only = model(input_ids=batch_base["input_ids"], attention_mask=batch_base["attention_mask"],
                        labels=batch_base["labels"], output_router_logits=False).loss
    n = (batch_base["labels"][:, 1:] != IGNORE_INDEX).sum()
    lf = step_loss(base, batch_base)
    torch.testing.assert_close(lf, ce_only + aux, rtol=1e-6, atol=0)
    for num_items in (None, n):
        assert torch.equal(step_loss(think, batch_think, num_items), step_loss(base, batch_base, num_items))


def test_weighted_path_at_one_equals_lf_loss(moe_setup, tmp_path, monkeypatch):
    base = make_trainer(moe_setup, tmp_path / "base")
    think = forced_weighted(make_trainer(moe_setup, tmp_path / "think", ThinkPluginOptions()), monkeypatch)
    batch_base = base.data_collator(copy.deepcopy(moe_setup[0]))
    batch_think = think.data_collator(copy.deepcopy(moe_setup[0]))
    n_lf = base._get_num_items_in_batch([batch_base], torch.device("cpu"))
    n_think = think._get_num_items_in_batch([batch_think], torch.device("cpu"))
    assert n_think.item() == n_lf.item()
    torch.testing.assert_close(step_loss(think, batch_think), step_loss(base, batch_base), rtol=1e-6, atol=0)
    torch.testing.assert_close(step_loss(think, batch_think, n_think), step_loss(base, batch_base, n_lf), rtol=1e-6, atol=0)


def test_weighted_path_at_one_equals_lf_loss_under_gradient_accumulation(moe_setup, tmp_path, monkeypatch):
    """Each micro-batch adds its own full aux term (the model's forward does, given the step's token count)."""
    base = make_trainer(moe_setup, tmp_path / "base")
    think = forced_weighted(make_trainer(moe_setup, tmp_path / "think", ThinkPluginOptions()), monkeypatch)
    parts_base = [base.data_collator(copy.deepcopy(moe_setup[0][:1])), base.data_collator(copy.deepcopy(moe_setup[0][1:]))]
    parts_think = [think.data_collator(copy.deepcopy(moe_setup[0][:1])), think.data_collator(copy.deepcopy(moe_setup[0][1:]))]
    n_lf = base._get_num_items_in_batch(parts_base, torch.device("cpu"))
    n_think = think._get_num_items_in_batch(parts_think, torch.device("cpu"))
    for b, t in zip(parts_base, parts_think, strict=True):
        torch.testing.assert_close(step_loss(think, t, n_think), step_loss(base, b, n_lf), rtol=1e-6, atol=0)


def test_weighted_loss_is_weighted_ce_plus_router_aux(moe_setup, tmp_path):
    w = 0.5
    trainer = make_trainer(moe_setup, tmp_path, ThinkPluginOptions(think_loss_weight=w))
    batch = trainer.data_collator(copy.deepcopy(moe_setup[0]))
    aux, logits = aux_term(moe_setup[3], batch)
    logp = torch.log_softmax(logits.double(), -1)
    targets, kinds = batch["labels"][:, 1:], batch[SPAN_KEY][:, 1:]
    trained = targets != IGNORE_INDEX
    weights = torch.where(kinds == REASONING, w, 1.0).double() * trained
    token_ce = -logp[:, :-1].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    num, den = (weights * token_ce).sum().item(), weights.sum().item()
    assert 0 < den < trained.sum()
    expected = num / den + aux.item()
    assert step_loss(trainer, batch).item() == pytest.approx(expected, rel=1e-6)
    total = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    assert step_loss(trainer, batch, total).item() == pytest.approx(expected, rel=1e-6)


def test_aux_coefficient_found_through_peft(moe_setup):
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(moe_setup[3])
    assert _aux_coef(model) == COEF
    assert _aux_coef(get_peft_model(model, LoraConfig(target_modules=["q_proj"], r=2))) == COEF


def grads_of(model, loss_fn):
    """{parameter name: gradient} of the loss `loss_fn()` returns (eval mode: no dropout, no span tracking)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    loss_fn().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def oracle_loss(model, batch, w, aux=True):
    """The weighted loss built from independent parts, with gradients: F.cross_entropy on the full logits,
    weighted per token by hand, plus (`aux`) coef * transformers' load_balancing_loss_func of the router logits."""
    import torch.nn.functional as F
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    targets, kinds = batch["labels"][:, 1:], batch[SPAN_KEY][:, 1:]
    weights = torch.where(kinds == REASONING, w, 1.0) * (targets != IGNORE_INDEX)
    ce = F.cross_entropy(out.logits[:, :-1].float().reshape(-1, out.logits.size(-1)), targets.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    loss = (weights * ce).sum() / weights.sum()
    if aux:
        loss = loss + COEF * load_balancing_loss_func(out.router_logits, model.config.num_experts,
                                                      model.config.num_experts_per_tok, batch["attention_mask"])
    return loss


def assert_same_grads(got, expected):
    assert got.keys() == expected.keys() and any(n.endswith("mlp.gate.weight") for n in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("w", [0.5, 0.0])
def test_weighted_loss_gradients_equal_the_oracle_aux_included(moe_setup, tmp_path, monkeypatch, w):
    """Gradients (router gates included) of the plugin's weighted loss = those of the independent oracle; and the
    aux term really moves the router: without it the gate gradients differ."""
    import lf_thinkplugin.loss.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", 7)  # several pieces per sample
    trainer = make_trainer(moe_setup, tmp_path, ThinkPluginOptions(think_loss_weight=w))
    batch = trainer.data_collator(copy.deepcopy(moe_setup[0]))
    model = moe_setup[3]
    got = grads_of(model, lambda: trainer.compute_loss(model, dict(batch)))
    expected = grads_of(model, lambda: oracle_loss(model, batch, w))
    assert_same_grads(got, expected)
    no_aux = grads_of(model, lambda: oracle_loss(model, batch, w, aux=False))
    gate = next(n for n in got if n.endswith("mlp.gate.weight"))
    assert not torch.allclose(got[gate], no_aux[gate], rtol=1e-3, atol=0)


def test_weighted_path_at_one_has_lf_gradients(moe_setup, tmp_path, monkeypatch):
    """The weighted code path at weight 1 (chunked CE + re-added aux term) back-propagates what LF's loss does."""
    import lf_thinkplugin.loss.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", 7)
    base = make_trainer(moe_setup, tmp_path / "base")
    think = forced_weighted(make_trainer(moe_setup, tmp_path / "think", ThinkPluginOptions()), monkeypatch)
    batch_base = base.data_collator(copy.deepcopy(moe_setup[0]))
    batch_think = think.data_collator(copy.deepcopy(moe_setup[0]))
    model = moe_setup[3]
    n_lf = base._get_num_items_in_batch([batch_base], torch.device("cpu"))
    n_think = think._get_num_items_in_batch([batch_think], torch.device("cpu"))
    assert_same_grads(grads_of(model, lambda: think.compute_loss(model, dict(batch_think), num_items_in_batch=n_think)),
                      grads_of(model, lambda: base.compute_loss(model, dict(batch_base), num_items_in_batch=n_lf)))


def test_peft_wrapped_moe_keeps_the_aux_term(moe_setup, tmp_path, monkeypatch):
    """Under LoRA (a PeftModel, as LF wraps it) the weighted path at weight 1 still equals LF's loss, aux included,
    in value and in the LoRA gradients."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(moe_setup[3]), LoraConfig(target_modules=["q_proj", "o_proj"], r=2,
                                                                         init_lora_weights=False))
    setup = (*moe_setup[:3], peft_model)
    base = make_trainer(setup, tmp_path / "base")
    think = forced_weighted(make_trainer(setup, tmp_path / "think", ThinkPluginOptions()), monkeypatch)
    batch_base = base.data_collator(copy.deepcopy(moe_setup[0]))
    batch_think = think.data_collator(copy.deepcopy(moe_setup[0]))
    lf = step_loss(base, batch_base)
    aux, _ = aux_term(peft_model, batch_base)
    with torch.no_grad():
        ce_only = peft_model(input_ids=batch_base["input_ids"], attention_mask=batch_base["attention_mask"],
                             labels=batch_base["labels"], output_router_logits=False).loss
    torch.testing.assert_close(lf, ce_only + aux, rtol=1e-6, atol=0)
    torch.testing.assert_close(step_loss(think, batch_think), lf, rtol=1e-6, atol=0)
    got = grads_of(peft_model, lambda: think.compute_loss(peft_model, dict(batch_think)))
    expected = grads_of(peft_model, lambda: base.compute_loss(peft_model, dict(batch_base)))
    assert got.keys() == expected.keys() and got and all("lora_" in n for n in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_cross_device_scaling_applies_to_the_aux_term_as_in_lf(moe_setup, tmp_path, monkeypatch):
    """With average_tokens_across_devices the Trainer multiplies the model's loss (aux included) by the number of
    processes; the weighted path adds aux before that scaling, so at weight 1 it still equals LF's loss."""
    base = make_trainer(moe_setup, tmp_path / "base", average_tokens_across_devices=True)
    think = forced_weighted(make_trainer(moe_setup, tmp_path / "think", ThinkPluginOptions(),
                                         average_tokens_across_devices=True), monkeypatch)
    batch_base = base.data_collator(copy.deepcopy(moe_setup[0]))
    batch_think = think.data_collator(copy.deepcopy(moe_setup[0]))
    n = base._get_num_items_in_batch([batch_base], torch.device("cpu"))
    single = step_loss(base, batch_base, n)
    monkeypatch.setattr(type(base.accelerator), "num_processes", property(lambda self: 2))
    lf = step_loss(base, batch_base, n)
    torch.testing.assert_close(lf, 2 * single, rtol=1e-6, atol=0)
    torch.testing.assert_close(step_loss(think, batch_think, n), lf, rtol=1e-6, atol=0)
