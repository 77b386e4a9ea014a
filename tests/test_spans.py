"""spans.py on the real tokenizers: where think blocks are, token by token.

Tokenizers load as plugin runs load them (conftest.fixture_tokenizer): R1-Distill and DeepSeek-V3
as PreTrainedTokenizerFast, because transformers 5.x's AutoTokenizer maps their `LlamaTokenizerFast`
config onto a Metaspace pre-tokenizer that drops newlines and CJK text (transformers#45488).
"""

from __future__ import annotations

import pytest
import torch
from conftest import fixture_tokenizer, require_fixture

from lf_thinkplugin.demo.fixtures import DEEPSEEK_V3, QWEN3, QWEN25, R1_DISTILL
from lf_thinkplugin.loss.spans import ANSWER, IGNORE_INDEX, OUTSIDE, REASONING, think_tags

_TOKENIZERS: dict = {}
_TAGS: dict = {}


def tokenizer(name):
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = fixture_tokenizer(name)
    return _TOKENIZERS[name]


def tags(name):
    if name not in _TAGS:
        _TAGS[name] = think_tags(tokenizer(name), ("<think>\n", "\n</think>\n\n"), ["<|im_end|>"])
    return _TAGS[name]


def batch(name, responses, prompt="Q: <think> in the prompt </think>"):
    """Labels of prompt (IGNORE) + response rows, right-padded with IGNORE."""
    tok = tokenizer(name)
    rows = []
    for response in responses:
        p = tok.encode(prompt, add_special_tokens=False)
        rows.append(([IGNORE_INDEX] * len(p), tok.encode(response, add_special_tokens=False)))
    width = max(len(p) + len(r) for p, r in rows)
    return torch.tensor([p + r + [IGNORE_INDEX] * (width - len(p) - len(r)) for p, r in rows])


def parts(name, labels, spans, row):
    """(reasoning text, answer text, empty-block text) of one row, decoded from its positions."""
    tok = tokenizer(name)
    ids = labels[row]

    def text(mask):
        return tok.decode(ids[mask[row]].tolist(), skip_special_tokens=False)

    answer = spans.valid & ~spans.reasoning
    return text(spans.reasoning), text(answer), text(spans.empty)


def test_transformers5_autotokenizer_breaks_llama_class_bytelevel_tokenizers():
    from transformers import AutoTokenizer

    broken = AutoTokenizer.from_pretrained(str(require_fixture(R1_DISTILL)), local_files_only=True)
    text = "<think>\nx\n</think>\n\n答案"
    assert broken.decode(broken.encode(text, add_special_tokens=False)) != text
    assert tokenizer(R1_DISTILL).decode(tokenizer(R1_DISTILL).encode(text, add_special_tokens=False)) == text


def test_single_token_ids_and_stop_ids():
    q3, r1 = tags(QWEN3), tags(R1_DISTILL)
    assert (q3.open_id, q3.close_id, q3.stop_ids) == (151667, 151668, [151645])
    assert (r1.open_id, r1.close_id) == (151648, 151649)
    assert r1.stop_ids == [151643] and tokenizer(R1_DISTILL).pad_token_id == 151643  # pad == eos
    assert not tags(QWEN25).single_token and not tags(DEEPSEEK_V3).single_token


CASES = [
    # response, reasoning text, answer text, empty-block text
    ("<think>\nadd 2 and 3\n</think>\n\n5<|im_end|>\n", "<think>\nadd 2 and 3\n</think>\n\n", "5<|im_end|>\n", ""),
    ("<think>\n\n</think>\n\nParis.", "<think>\n\n</think>\n\n", "Paris.", "<think>\n\n</think>\n\n"),
    ("<think>x</think>y", "<think>x</think>", "y", ""),
    ("<think></think>The end", "<think></think>", "The end", "<think></think>"),
    ("<think>a。</think>b<think>\nc\n</think>\n\nd", "<think>a。</think><think>\nc\n</think>\n\n", "bd", ""),
    ("steps\n</think>\n\nans", "steps\n</think>\n\n", "ans", ""),  # open tag in the prompt (R1 style)
    ("<think>\nnever closed<|im_end|>\n", "<think>\nnever closed", "<|im_end|>\n", ""),
    ("<think>\ncut by cutoff", "<think>\ncut by cutoff", "", ""),
    ("plain answer", "", "plain answer", ""),
    ("<think> <think> n </think>\n\nz</think>w", "<think> <think> n </think>\n\n", "z</think>w", ""),
]


def run_cases(name: str, own_eos: bool):
    """CASES with the tokenizer's own EOS where it has no `<|im_end|>`: (cases, labels, spans found)."""
    eos = tokenizer(name).eos_token if own_eos else "<|im_end|>"
    cases = [tuple(c.replace("<|im_end|>", eos) for c in case) for case in CASES]
    labels = batch(name, [c[0] for c in cases])
    return cases, labels, tags(name).find(labels)


@pytest.mark.parametrize("name", [QWEN3, R1_DISTILL])
def test_single_token_tags(name):
    cases, labels, spans = run_cases(name, own_eos=name == R1_DISTILL)
    for row, (_, reasoning, answer, empty) in enumerate(cases):
        assert parts(name, labels, spans, row) == (reasoning, answer, empty), cases[row][0]
    assert not spans.reasoning[labels == IGNORE_INDEX].any()  # never in the prompt, never in padding


# BPE glues the answer's first text onto the close tag's `>` (`>y`, `>The`): that token is trained as answer
GLUED = {
    "<think>x</think>y": ("<think>x</think", ">y", ""),
    "<think></think>The end": ("<think></think", ">The end", "<think></think"),
    "<think>a。</think>b<think>\nc\n</think>\n\nd": ("<think>a。</think<think>\nc\n</think>\n\n", ">bd", ""),
}


@pytest.mark.parametrize("name", [QWEN25, DEEPSEEK_V3])
def test_multi_token_tags(name):
    cases, labels, spans = run_cases(name, own_eos=name == DEEPSEEK_V3)
    for row, (response, reasoning, answer, empty) in enumerate(cases):
        expected = (reasoning, answer, empty)
        if response in GLUED and not (name == DEEPSEEK_V3 and response == "<think>x</think>y"):  # V3: `>`, `y`
            expected = GLUED[response]
        assert parts(name, labels, spans, row) == expected, response
    assert not spans.reasoning[labels == IGNORE_INDEX].any()


def test_block_and_segment_boundaries():
    """Two segments in one row (two turns / packed samples): a block never leaks into the next."""
    tok = tokenizer(QWEN3)
    turn1 = tok.encode("<think>\nunfinished", add_special_tokens=False)  # truncated: no close
    turn2 = tok.encode("answer two<|im_end|>\n", add_special_tokens=False)
    labels = torch.tensor([turn1 + [IGNORE_INDEX] * 3 + turn2])
    spans = tags(QWEN3).find(labels)
    kinds = spans.kinds()[0].tolist()
    assert kinds == [REASONING] * len(turn1) + [OUTSIDE] * 3 + [ANSWER] * len(turn2)


def test_attention_mask_excludes_padding_with_label_pad_token():
    """LF with ignore_pad_token_for_loss=false pads labels with the pad id (== eos for R1)."""
    tok = tokenizer(R1_DISTILL)
    ids = tok.encode("<think>\nx\n</think>\n\nok", add_special_tokens=False) + [tok.eos_token_id]
    labels = torch.tensor([ids + [tok.pad_token_id] * 3])
    mask = torch.tensor([[1] * len(ids) + [0] * 3])
    spans = tags(R1_DISTILL).find(labels, mask)
    assert spans.valid[0].tolist() == [True] * len(ids) + [False] * 3
    assert not spans.reasoning[0, -4:].any()  # eos and pads


@pytest.mark.parametrize("name", [QWEN3, R1_DISTILL, QWEN25, DEEPSEEK_V3])
@pytest.mark.parametrize("policy", ["full", "mask_empty", "mask_reasoning"])
def test_apply_policy_equals_find_then_masked_fill(name, policy):
    """The collator's one-scan step == find() + masked_fill_ of the policy's spans + kinds(), in every layout."""
    from lf_thinkplugin.loss.spans import apply_policy

    cases, labels, _ = run_cases(name, own_eos=name in (R1_DISTILL, DEEPSEEK_V3))
    pad = tokenizer(name).pad_token_id
    padded = torch.where(labels == IGNORE_INDEX, torch.full_like(labels, pad), labels)  # labels padded with the pad id
    segmented = labels.clone()
    segmented[:, 3::17] = IGNORE_INDEX  # extra segment edges inside responses and blocks
    layouts = [
        (labels, None),
        (padded, (labels != IGNORE_INDEX).long()),
        (segmented, None),
        (labels.t().contiguous().t(), None),  # not contiguous: masked through a copy
        (labels.reshape(1, -1), None),  # rows packed into one
    ]
    for layout, mask in layouts:
        want = layout.clone()
        spans = tags(name).find(want, mask, empty=policy == "mask_empty")
        if policy == "mask_reasoning":
            want.masked_fill_(spans.reasoning, IGNORE_INDEX)
        elif policy == "mask_empty":
            want.masked_fill_(spans.empty, IGNORE_INDEX)
        got = layout.clone() if layout.is_contiguous() else layout.clone().t().contiguous().t()
        kinds = apply_policy(tags(name), got, mask, policy)
        assert kinds.dtype == torch.int8 and torch.equal(kinds, spans.kinds())
        assert torch.equal(got, want)
