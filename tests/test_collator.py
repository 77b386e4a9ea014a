"""The think-aware collator on samples built by LF's real supervised preprocessing.

Labels come from LF's SupervisedDatasetProcessor / PackedSupervisedDatasetProcessor with LF's
own templates (qwen3, qwen3_nothink, deepseekr1) and the real Qwen3 / R1-Distill tokenizers; each
policy's labels are asserted token for token against LF's labels.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from lf_sft import COMPACT, EMPTY, REASON, TWO_BLOCKS, encode, user

from lf_thinkplugin.loss.collator import SPAN_KEY, think_collator_class
from lf_thinkplugin.demo.fixtures import QWEN3, QWEN25, R1_DISTILL
from lf_thinkplugin.options import ThinkPluginOptions
from lf_thinkplugin.loss.spans import ANSWER, IGNORE_INDEX, OUTSIDE, REASONING

def collate(features, tpl, tok, policy="full", weight=1.0, **kwargs):
    """(think collator batch, LF's own batch) for the same features."""
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    common = dict(template=tpl, tokenizer=tok, pad_to_multiple_of=8, label_pad_token_id=IGNORE_INDEX, **kwargs)
    base = SFTDataCollatorWith4DAttentionMask(**common)(copy.deepcopy(features))
    opts = ThinkPluginOptions(think_loss=policy, think_loss_weight=weight)
    think = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=opts, **common)(copy.deepcopy(features))
    return think, base


def trained(tok, batch, row):
    labels = batch["labels"][row]
    return tok.decode(labels[labels != IGNORE_INDEX].tolist(), skip_special_tokens=False)


def masked(tok, think, base, row):
    """What the policy took out of LF's labels (decoded)."""
    was = base["labels"][row] != IGNORE_INDEX
    now = think["labels"][row] != IGNORE_INDEX
    assert not (now & ~was).any(), "the collator never adds labels"
    return tok.decode(base["labels"][row][was & ~now].tolist(), skip_special_tokens=False)


SAMPLES = [(user(), REASON), (user("Capital of France?"), EMPTY), (user(), COMPACT), (user(), TWO_BLOCKS)]


@pytest.mark.parametrize(
    "policy, removed",
    [
        ("full", ["", "", "", ""]),
        ("mask_empty", ["", "<think>\n\n</think>\n\n", "", ""]),
        (
            "mask_reasoning",
            [
                "<think>\nadd 2 and 3\n</think>\n\n",
                "<think>\n\n</think>\n\n",
                "<think>x</think>",
                "<think>\nfirst\n</think>\n\n<think>\nsecond\n</think>\n\n",
            ],
        ),
    ],
)
def test_policies_on_qwen3(policy, removed):
    features, tpl, tok = encode(QWEN3, "qwen3", SAMPLES)
    think, base = collate(features, tpl, tok, policy)
    assert torch.equal(think["input_ids"], base["input_ids"])
    assert torch.equal(think["attention_mask"], base["attention_mask"])
    for row in range(len(SAMPLES)):
        assert masked(tok, think, base, row) == removed[row]
        assert trained(tok, think, row).endswith("<|im_end|>\n")  # end of turn always trained
    if policy == "mask_reasoning":
        assert [trained(tok, think, r) for r in range(4)] == [
            "5<|im_end|>\n", "Paris.<|im_end|>\n", "y<|im_end|>\n", "part one part two<|im_end|>\n"
        ]


def test_span_map_token_by_token_qwen3():
    features, tpl, tok = encode(QWEN3, "qwen3", [(user(), REASON)])
    think, base = collate(features, tpl, tok, "mask_reasoning")
    ids = base["input_ids"][0].tolist()
    kinds = think[SPAN_KEY][0].tolist()
    response = [(tok.convert_ids_to_tokens(i), k) for i, k in zip(ids, kinds, strict=True) if k != OUTSIDE]
    assert [k != OUTSIDE for k in kinds] == (base["labels"][0] != IGNORE_INDEX).tolist()
    assert response == [
        ("<think>", REASONING), ("Ċ", REASONING), ("add", REASONING), ("Ġ", REASONING), ("2", REASONING),
        ("Ġand", REASONING), ("Ġ", REASONING), ("3", REASONING), ("Ċ", REASONING), ("</think>", REASONING),
        ("ĊĊ", REASONING), ("5", ANSWER), ("<|im_end|>", ANSWER), ("Ċ", ANSWER),
    ]
    assert think[SPAN_KEY].dtype == torch.int8 and think[SPAN_KEY].shape == think["labels"].shape


def test_direct_answer_gets_lf_empty_block_which_mask_empty_removes():
    """A tagless answer: LF's qwen3 template adds `<think>\\n\\n</think>\\n\\n` to the response (enable_thinking: true)."""
    features, tpl, tok = encode(QWEN3, "qwen3", [(user(), "Paris.")])
    think, base = collate(features, tpl, tok, "mask_empty")
    assert trained(tok, base, 0) == "<think>\n\n</think>\n\nParis.<|im_end|>\n"
    assert trained(tok, think, 0) == "Paris.<|im_end|>\n"


def test_multi_turn_each_assistant_turn_on_its_own():
    prompt = user("First?") + [{"role": "assistant", "content": "<think>\nold\n</think>\n\nA1"}] + user("Second?")
    features, tpl, tok = encode(QWEN3, "qwen3", [(prompt, "<think>\nnew\n</think>\n\nA2")])
    think, base = collate(features, tpl, tok, "mask_reasoning")
    assert trained(tok, base, 0) == "<think>\nold\n</think>\n\nA1<|im_end|>\n<think>\nnew\n</think>\n\nA2<|im_end|>\n"
    assert trained(tok, think, 0) == "A1<|im_end|>\nA2<|im_end|>\n"


def test_truncation_inside_a_think_block():
    long = "<think>\n" + "step " * 60 + "\n</think>\n\nanswer"
    features, tpl, tok = encode(QWEN3, "qwen3", [(user(), long)], cutoff_len=40)
    think, base = collate(features, tpl, tok, "mask_reasoning")
    kept = trained(tok, base, 0)
    assert kept.startswith("<think>\nstep") and "</think>" not in kept  # LF cut inside the block
    assert trained(tok, think, 0) == ""  # the open block runs to the end of the response
    full, _ = collate(features, tpl, tok, "full")
    assert trained(tok, full, 0) == kept
    assert (full[SPAN_KEY][0] == REASONING).sum() == (base["labels"][0] != IGNORE_INDEX).sum()


def test_tags_in_the_prompt_only():
    features, tpl, tok = encode(QWEN3, "qwen3_nothink", [(user("What do <think> and </think> mean?"), "Tags.")])
    think, base = collate(features, tpl, tok, "mask_reasoning")
    assert trained(tok, think, 0) == trained(tok, base, 0) == "Tags.<|im_end|>\n"
    assert not (think[SPAN_KEY] == REASONING).any()


def test_r1_distill_eos_is_pad_and_never_masked():
    samples = [(user(), REASON), (user(), "<think>\nnever closed"), (user(), "Direct.")]
    features, tpl, tok = encode(R1_DISTILL, "deepseekr1", samples)
    assert tok.pad_token_id == tok.eos_token_id == 151643
    think, base = collate(features, tpl, tok, "mask_reasoning")
    eos = tok.eos_token
    assert [trained(tok, think, r) for r in range(3)] == [f"5{eos}", eos, f"Direct.{eos}"]
    assert [masked(tok, think, base, r) for r in range(3)] == [
        "<think>\nadd 2 and 3\n</think>\n\n", "<think>\nnever closed", "<think>\n\n</think>\n\n"
    ]
    pads = base["attention_mask"] == 0
    assert pads.any() and (think["labels"][pads] == IGNORE_INDEX).all()


def test_multi_token_tags_qwen25():
    features, tpl, tok = encode(QWEN25, "qwen3", [(user(), REASON), (user(), EMPTY)])
    think, base = collate(features, tpl, tok, "mask_empty")
    assert masked(tok, think, base, 0) == ""
    assert masked(tok, think, base, 1) == "<think>\n\n</think>\n\n"
    reasoning, _ = collate(features, tpl, tok, "mask_reasoning")
    assert [trained(tok, reasoning, r) for r in range(2)] == ["5<|im_end|>\n", "Paris.<|im_end|>\n"]


@pytest.mark.parametrize("neat", [False, True])
def test_packing_and_4d_masks(neat):
    """Packed samples: the policy gives the same labels as on each sample alone; LF's 4D mask is untouched."""
    samples = SAMPLES[:3]
    alone, tpl, tok = encode(QWEN3, "qwen3", samples)
    packed, tpl, tok = encode(QWEN3, "qwen3", samples, packed=True, cutoff_len=255, neat_packing=neat, packing=True)
    assert len(packed) == 1
    think, base = collate(packed, tpl, tok, "mask_reasoning", block_diag_attn=neat, attn_implementation="eager")
    expected, _ = collate(alone, tpl, tok, "mask_reasoning")
    turns = trained(tok, think, 0).split("<|im_end|>\n")  # the knapsack may reorder the samples
    assert sorted(turns[:-1]) == sorted(trained(tok, expected, r)[: -len("<|im_end|>\n")] for r in range(3))
    assert torch.equal(think["attention_mask"], base["attention_mask"])
    if neat:
        assert think["attention_mask"].dim() == 4


def test_neat_packing_flash_attention_unpadded_batch():
    """FA2 neat packing: LF trims padding and drops the mask; the span map follows the trimmed labels."""
    packed, tpl, tok = encode(QWEN3, "qwen3", SAMPLES[:2], packed=True, cutoff_len=255, neat_packing=True, packing=True)
    think, base = collate(packed, tpl, tok, "mask_empty", neat_packing=True, attn_implementation="flash_attention_2")
    assert think["attention_mask"] is None and think[SPAN_KEY].shape == think["labels"].shape == base["labels"].shape
    assert masked(tok, think, base, 0) == "<think>\n\n</think>\n\n"


def test_pickles_for_dataloader_workers():
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    features, tpl, tok = encode(QWEN3, "qwen3", SAMPLES[:2])
    opts = ThinkPluginOptions(think_loss="mask_empty")
    collator = think_collator_class(SFTDataCollatorWith4DAttentionMask)(options=opts, template=tpl, tokenizer=tok)
    clone = pickle.loads(pickle.dumps(collator))
    assert type(clone) is type(collator) and clone.options == opts
    assert torch.equal(clone(copy.deepcopy(features))["labels"], collator(copy.deepcopy(features))["labels"])
