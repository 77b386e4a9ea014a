"""The think-aware trainer: weighted loss against hand computation and LF's own loss; span logging."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lf_sft import LOSS_SAMPLES, encode, make_trainer, step_loss

import lf_thinkplugin.loss.trainer as trainer_mod
from lf_thinkplugin.demo.fixtures import QWEN3
from lf_thinkplugin.loss.collator import SPAN_KEY, think_collator_class
from lf_thinkplugin.loss.spans import IGNORE_INDEX, REASONING
from lf_thinkplugin.loss.trainer import weighted_loss_sum
from lf_thinkplugin.options import ThinkPluginOptions


@pytest.fixture(scope="module")
def setup(tiny_qwen3):
    from transformers import AutoModelForCausalLM

    features, tpl, tok = encode(QWEN3, "qwen3", LOSS_SAMPLES)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen3))
    return features, tpl, tok, model


def test_weight_one_is_lf_loss_bit_for_bit(setup, tmp_path):
    base = make_trainer(setup, tmp_path / "base")
    think = make_trainer(setup, tmp_path / "think", ThinkPluginOptions())
    batch_base = base.data_collator(copy.deepcopy(setup[0]))
    batch_think = think.data_collator(copy.deepcopy(setup[0]))
    n = (batch_base["labels"][:, 1:] != IGNORE_INDEX).sum()
    for num_items in (None, n):
        assert torch.equal(step_loss(think, batch_think, num_items), step_loss(base, batch_base, num_items))


def test_weighted_formula_at_one_equals_the_model_loss(setup):
    features, tpl, tok, model = setup
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    collator = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=ThinkPluginOptions(), template=tpl, tokenizer=tok)
    batch = collator(copy.deepcopy(features))
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        total, _, weights = weighted_loss_sum(out.logits, batch["labels"], batch[SPAN_KEY], 1.0)
    assert weights.sum() == (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    torch.testing.assert_close(total / weights.sum(), out.loss, rtol=1e-6, atol=0)


def test_weighted_loss_equals_hand_computation(setup, tmp_path):
    w = 0.25
    trainer = make_trainer(setup, tmp_path, ThinkPluginOptions(think_loss_weight=w))
    batch = trainer.data_collator(copy.deepcopy(setup[0]))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    logp = torch.log_softmax(logits, -1)
    num = den = 0.0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1] - 1):
            target = int(batch["labels"][b, t + 1])
            if target == IGNORE_INDEX:
                continue
            weight = w if int(batch[SPAN_KEY][b, t + 1]) == REASONING else 1.0
            num += -weight * float(logp[b, t, target])
            den += weight
    assert 0 < den < (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    loss = step_loss(trainer, batch)
    assert loss.item() == pytest.approx(num / den, rel=1e-5)
    # with the Trainer's token count replaced by the weight sum (as in gradient accumulation)
    total = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    assert total.item() == pytest.approx(den, rel=1e-6)
    assert step_loss(trainer, batch, total).item() == pytest.approx(num / den, rel=1e-5)


def test_gradient_accumulation_normalises_by_the_weight_sum_of_all_micro_batches(setup, tmp_path):
    trainer = make_trainer(setup, tmp_path, ThinkPluginOptions(think_loss_weight=0.5))
    whole = trainer.data_collator(copy.deepcopy(setup[0]))
    parts = [trainer.data_collator(copy.deepcopy(setup[0][:1])), trainer.data_collator(copy.deepcopy(setup[0][1:]))]
    total = trainer._get_num_items_in_batch(parts, torch.device("cpu"))
    assert total.item() == pytest.approx(trainer._get_num_items_in_batch([whole], torch.device("cpu")).item())
    accumulated = sum(step_loss(trainer, p, total) for p in parts)
    torch.testing.assert_close(accumulated, step_loss(trainer, whole), rtol=1e-5, atol=0)


def test_span_losses_logged_on_logging_steps_only(setup, tmp_path, monkeypatch):
    opts = ThinkPluginOptions(think_loss="mask_reasoning")
    trainer = make_trainer(setup, tmp_path, opts, max_steps=4, logging_steps=2, per_device_train_batch_size=1,
                           gradient_accumulation_steps=1)
    calls = []
    track = type(trainer)._track
    monkeypatch.setattr(type(trainer), "_track", lambda self, *a: (calls.append(self.state.global_step), track(self, *a)))
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4]
    assert all("loss_think" in r and "loss_answer" in r for r in logged)
    assert all(r["loss_think"] > 0 and r["loss_answer"] > 0 for r in logged)
    assert calls == [1, 3]  # the forward passes of steps 2 and 4 only (global_step before the update)


def test_span_losses_match_a_direct_measurement(setup, tmp_path):
    """loss_think / loss_answer are mean token CE on reasoning / answer tokens (masked reasoning included)."""
    trainer = make_trainer(setup, tmp_path, ThinkPluginOptions(think_loss="mask_empty"))
    batch = trainer.data_collator(copy.deepcopy(setup[0]))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kinds, ids = batch[SPAN_KEY][:, 1:], batch["input_ids"][:, 1:]
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids.reshape(-1), reduction="none").view(ids.shape)
    expected_think = ce[kinds == REASONING].mean().item()
    expected_answer = ce[kinds == 1].mean().item()
    tags = (ids == 151667) | (ids == 151668)  # Qwen3's <think> / </think>, single ids
    assert tags.sum() >= 2
    expected_tags = ce[tags].mean().item()
    trainer.train()
    record = next(r for r in trainer.state.log_history if "loss" in r)
    assert record["loss_think"] == pytest.approx(expected_think, rel=1e-5)
    assert record["loss_answer"] == pytest.approx(expected_answer, rel=1e-5)
    assert record["loss_tags"] == pytest.approx(expected_tags, rel=1e-5)


def unchunked_ce(logits, labels):
    """The one-piece formula the chunked cross-entropy replaces: token CE over every position at once."""
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="none").view(targets.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_weighted_loss_equals_unchunked_with_gradients(setup, monkeypatch, dtype):
    features, tpl, tok, model = setup
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    opts = ThinkPluginOptions(think_loss_weight=0.5)
    batch = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=opts, template=tpl, tokenizer=tok)(
        copy.deepcopy(features))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.to(dtype)
    labels, kinds = batch["labels"], batch[SPAN_KEY]
    trained = int((labels[:, 1:] != IGNORE_INDEX).sum())
    monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", 5)  # many chunks, a sequence far longer than one
    pieces = trainer_mod._pieces(F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1))
    assert len(pieces) == -(-trained // 5) and {type(i) for i, _ in pieces} == {slice, torch.Tensor}

    leaf = logits.clone().requires_grad_()
    total, ce, weights = weighted_loss_sum(leaf, labels, kinds, 0.5)
    (total / weights.sum()).backward()
    ref_leaf = logits.clone().requires_grad_()
    ref_ce = unchunked_ce(ref_leaf, labels)
    ref_total = (ref_ce * weights).sum()
    (ref_total / weights.sum()).backward()
    assert torch.equal(ce, ref_ce) and torch.equal(total, ref_total)
    assert leaf.grad.dtype == dtype and leaf.grad.abs().sum() > 0
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_on_random_non_contiguous_logits(monkeypatch, dtype):
    """Random logits (a transposed view, so not contiguous), IGNORE holes and runs: values and gradients
    equal F.cross_entropy's on the full logits, for every chunk size."""
    gen = torch.Generator().manual_seed(0)
    base = (torch.randn(3, 50, 23, generator=gen) * 4).to(dtype)
    targets = torch.randint(0, 50, (3, 23), generator=gen)
    targets[torch.rand(3, 23, generator=gen) < 0.3] = IGNORE_INDEX
    targets[1, 5:15] = IGNORE_INDEX
    ref_leaf = base.clone().requires_grad_()
    ref_logits = ref_leaf.transpose(1, 2)
    ref = F.cross_entropy(ref_logits.float().reshape(-1, 50), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                          reduction="none").view(targets.shape)
    upstream = torch.rand(3, 23, generator=gen)
    (ref * upstream).sum().backward()
    for chunk in (1, 4, 17, 10**6):
        monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", chunk)
        leaf = base.clone().requires_grad_()
        logits = leaf.transpose(1, 2)
        assert not logits.is_contiguous()
        ce = trainer_mod.chunked_cross_entropy(logits, targets)
        (ce * upstream).sum().backward()
        assert ce.dtype == torch.float32 and torch.equal(ce, ref), chunk
        assert leaf.grad.dtype == dtype
        torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-6, atol=1e-8, msg=f"chunk {chunk}")


def test_chunked_loss_with_no_trained_position():
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.full((2, 6), IGNORE_INDEX)
    total, ce, _ = weighted_loss_sum(logits, labels, torch.zeros_like(labels), 0.5)
    total.backward()
    assert total.item() == 0 and not ce.any() and not logits.grad.any()


def test_chunked_span_tracking_equals_one_piece(setup, tmp_path, monkeypatch):
    trainer = make_trainer(setup, tmp_path, ThinkPluginOptions(think_loss="mask_reasoning"))
    batch = trainer.data_collator(copy.deepcopy(setup[0]))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels, ids, kinds = batch["labels"], batch["input_ids"], batch[SPAN_KEY]
    # the former one-piece measurement: CE over logits[at] in one call
    masked = (labels == IGNORE_INDEX) & (kinds == REASONING)
    targets = F.pad(torch.where(masked, ids, labels), (0, 1), value=IGNORE_INDEX)[..., 1:]
    kind = F.pad(kinds, (0, 1), value=0)[..., 1:].masked_fill(targets == IGNORE_INDEX, 0)
    at = kind > 0
    ce = F.cross_entropy(logits[at].float(), targets[at], reduction="none")
    think = kind[at] == REASONING
    tag = (targets[at] == 151667) | (targets[at] == 151668)  # Qwen3's <think> / </think>
    expected = torch.stack([ce[think].sum(), think.sum(), ce[~think].sum(), (~think).sum(),
                            ce[tag].sum(), tag.sum()]).to(torch.float32)
    for chunk in (3, int(at.sum()) - 1, int(at.sum()), 10**9):
        monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", chunk)
        trainer._span_sums = None
        trainer._track(logits, labels, ids, kinds)
        assert torch.equal(trainer._span_sums, expected), chunk


def test_weighted_loss_with_small_chunks_equals_hand_computation(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "LOSS_CHUNK", 4)
    test_weighted_loss_equals_hand_computation(setup, tmp_path)


@pytest.mark.parametrize(
    "block, lf_args, reason",
    [
        ({"think_loss": "mask_empty"}, {"template": "qwen3", "enable_thinking": False}, "enable_thinking: false"),
        ({"think_loss": "mask_reasoning"}, {"train_on_prompt": True}, "train_on_prompt: true"),
        ({"think_loss": "mask_empty"}, {"stage": "rm"}, "act in stages sft, dpo and kto, got stage: rm"),
        ({"think_loss": "mask_empty"}, {"stage": "pt"}, "act in stages sft, dpo and kto, got stage: pt"),
        ({"think_loss_weight": 0.5}, {"stage": "dpo", "ld_alpha": 0.5}, "`ld_alpha`"),
        ({"think_loss_weight": 0.5}, {"use_dft_loss": True}, "use_dft_loss: true"),
        ({"think_loss_weight": 0.5}, {"enable_liger_kernel": True}, "enable_liger_kernel: true"),
        ({"think_loss_weight": 0.5}, {"label_smoothing_factor": 0.1}, "label_smoothing_factor"),
    ],
)
def test_contradictions_refused_at_startup(block, lf_args, reason):
    from lf_thinkplugin.options import OptionsError, check_against_lf, parse_options

    with pytest.raises(OptionsError, match=reason):
        check_against_lf(parse_options(block), {"stage": "sft", **lf_args})


@pytest.mark.parametrize(
    "block, lf_args",
    [
        ({"think_loss": "mask_empty"}, {"enable_thinking": None, "mask_history": True, "packing": True}),
        ({"think_loss": "mask_reasoning"}, {"neat_packing": True, "enable_thinking": True}),
        ({"think_loss": "mask_empty"}, {"template": "qwen3_nothink", "enable_thinking": False}),  # ignored by it
        ({"log_span_loss": True}, {"train_on_prompt": True, "use_dft_loss": True}),  # logging only
    ],
)
def test_compatible_combinations_accepted(block, lf_args):
    import llamafactory.data.template  # noqa: F401  (the check reads LF's template registry when loaded)

    from lf_thinkplugin.options import check_against_lf, parse_options

    check_against_lf(parse_options(block), {"stage": "sft", **lf_args})


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    [
        {"think_loss": "mask_empty"},
        {"think_loss": "full", "think_loss_weight": 0.5},
        {"think_loss": "mask_reasoning"},
    ],
    ids=["mask_empty", "weight_0.5", "mask_reasoning"],
)
def test_llamafactory_cli_train_logs_span_losses(tiny_qwen3, tmp_path, block):
    """A real `llamafactory-cli train` run per policy, on sharegpt and `formatting: reasoning` data."""
    import json
    import shutil

    from lfrun import EXAMPLES, base_config, train

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(EXAMPLES / "data" / "think_demo.json", data)
    info = json.loads((EXAMPLES / "data" / "dataset_info.json").read_text())
    info = {"think_demo": info["think_demo"], "r1_rows": {
        "file_name": "r1.json", "formatting": "reasoning",
        "columns": {"query": "input", "response": "content", "reasoning": "reasoning_content"}}}
    (data / "dataset_info.json").write_text(json.dumps(info))
    (data / "r1.json").write_text(json.dumps([
        {"input": "What is 12 + 30?", "content": "42", "reasoning_content": "Add the tens, then the ones."},
        {"input": "Say hi.", "content": "Hi!", "reasoning_content": ""},
    ] * 4))
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, dataset="think_demo,r1_rows", dataset_dir=str(data), logging_steps=2,
                         logging_first_step=True, thinkplugin=block)
    proc = train(config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [r for r in history if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 4]
    for record in logged:
        assert record["loss_think"] > 0 and record["loss_answer"] > 0, record
    if block["think_loss"] == "mask_reasoning":  # only answers are trained: step 1's loss is its answer loss
        assert logged[0]["loss"] == pytest.approx(logged[0]["loss_answer"], rel=1e-4)
    saved = (out / "thinkplugin_args.yaml").read_text()
    assert f"think_loss: {block['think_loss']}" in saved
