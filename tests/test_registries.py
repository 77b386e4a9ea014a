"""The registries a `think_loss` policy and a `token_init` strategy join with one class: the option values
are the registered names, and the span machinery masks exactly the block kinds a policy names, on the
fast path and the general one alike."""

from __future__ import annotations

import typing

import pytest
import torch
from lf_sft import REASON, encode, user

from lf_thinkplugin.demo.fixtures import QWEN3
from lf_thinkplugin.loss import policies
from lf_thinkplugin.loss.spans import IGNORE_INDEX, apply_policy, think_tags
from lf_thinkplugin.options import ThinkPluginOptions, TokenInitSpec, parse_options
from lf_thinkplugin.tokens import strategies


def test_option_values_are_the_registered_names():
    assert typing.get_args(ThinkPluginOptions.model_fields["think_loss"].annotation) == tuple(policies.POLICIES)
    assert typing.get_args(TokenInitSpec.model_fields["strategy"].annotation) == tuple(strategies.STRATEGIES)
    assert tuple(policies.POLICIES) == ("full", "mask_empty", "mask_reasoning")
    assert tuple(strategies.STRATEGIES) == ("mean", "noisy_mean", "tokens", "text")
    assert ThinkPluginOptions.model_fields["think_loss"].description == (
        "`full`: every response token; `mask_empty`: whitespace-only think blocks carry no loss; "
        "`mask_reasoning`: whole think blocks (tags included) carry no loss.")


def test_policy_properties_drive_the_option_checks():
    full, empty, reasoning = (policies.policy(n) for n in ("full", "mask_empty", "mask_reasoning"))
    assert [p.masks_anything() for p in (full, empty, reasoning)] == [False, True, True]
    assert [p.trains_reasoning() for p in (full, empty, reasoning)] == [True, True, False]
    assert not parse_options({}).masks_labels and parse_options({"think_loss": "mask_empty"}).masks_labels
    with pytest.raises(ValueError, match="unknown think_loss 'nope'; known: full, mask_empty, mask_reasoning"):
        policies.policy("nope")
    with pytest.raises(ValueError, match="registered twice"):
        policies.register(type("Again", (policies.ThinkLossPolicy,), {"name": "full", "description": "x"}))


def test_strategy_defaults_and_checks_come_from_the_class():
    assert TokenInitSpec(strategy="noisy_mean").noise == strategies.NoisyMean.default_noise == 0.02
    assert TokenInitSpec(strategy="mean").noise == 0.0
    assert strategies.strategy("tokens").texts(TokenInitSpec(sources=["a", "b"])) == ["a", "b"]
    assert strategies.strategy("text").texts(TokenInitSpec(strategy="text", text="t")) == ["t"]
    assert strategies.strategy("mean").reads_mean and not strategies.strategy("tokens").reads_mean
    weight = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    mean_row = weight.mean(dim=0)
    torch.testing.assert_close(strategies.strategy("tokens").combine(weight, ((0, 1), (3,)), None),
                               (weight[[0, 1]].mean(dim=0) + weight[3]) / 2)
    torch.testing.assert_close(strategies.strategy("text").combine(weight, ((1, 2),), None), weight[[1, 2]].mean(dim=0))
    assert strategies.strategy("noisy_mean").combine(weight, (), mean_row) is mean_row


@pytest.fixture
def open_only():
    """A policy registered for the test only: the loss comes off open (truncated) blocks, nothing else."""
    cls = policies.register(type("MaskOpen", (policies.ThinkLossPolicy,), {
        "name": "test_mask_open", "description": "open blocks carry no loss", "mask_open": True}))
    yield cls
    del policies.POLICIES[cls.name]


@pytest.mark.parametrize("with_mask", [False, True], ids=["fast", "general"])
def test_a_new_policy_masks_exactly_its_block_kinds(open_only, with_mask):
    """One class: `apply_policy` masks the blocks `find()` reports as not closed, on both paths."""
    features, tpl, tok = encode(QWEN3, "qwen3", [(user(), REASON), (user("Long?"), "<think>\nstill thinking, cut here")])
    tags = think_tags(tok, tpl.thought_words, tpl.stop_words)
    width = max(len(f["labels"]) for f in features)
    labels = torch.tensor([f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features])
    mask = torch.ones_like(labels) if with_mask else None
    spans = tags.find(labels, mask)
    open_block = torch.zeros_like(spans.reasoning)
    open_block[1] = spans.reasoning[1]  # the second sample's one block has no close tag (its end of turn ends it)
    assert open_block.any() and (spans.reasoning & ~open_block).any()
    got = labels.clone()
    kinds = apply_policy(tags, got, mask, "test_mask_open")
    assert torch.equal(kinds, spans.kinds())
    assert torch.equal(got, labels.masked_fill(open_block, IGNORE_INDEX))
