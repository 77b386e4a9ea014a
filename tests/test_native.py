"""`template: native` (and `auto` falling back to it): training ids equal each family's own chat template.

The oracle is written here, independently of the encoder: conversations are written once in a neutral
form and turned (1) into LF's sharegpt data (reasoning inline in `<think>`, `function_call` JSON,
`observation`, a `tools` column) and (2) into the messages each family's template reads, by a per-family
table typed by hand from the template (reasoning key, thinking switch, tool-argument form). For every
labelled run of a tokenized sample there must be an assistant turn k such that the ids before the run
are exactly `apply_chat_template(messages[:k], add_generation_prompt=True)` and the run is exactly the
ids of the rest of `apply_chat_template(messages[:k+1])` (an EOS may follow where the template leaves
the turn open); the last turn must be trained. DeepSeek's templates never render reasoning: their last
turn's expectation is DeepSeek's output format, written out below.

Tokenizers: real where the fixtures have one (Qwen3, R1-Distill-Qwen, DeepSeek-R1, DeepSeek-V3.1,
gpt-oss-20b); elsewhere a stand-in (Qwen3's tokenizer with the family's special tokens added as special
tokens and the family's official template), marked `stand-in` in the ids. Real-path runs go through
`llamafactory-cli train` with `tokenized_path` (LF tokenizes through its whole data pipeline, saves and
exits before loading weights); the remaining families go through LF's own SFT processor in process.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import require_fixture
from lfrun import train
from native_families import (
    CONVERSATIONS,
    FAMILIES,
    IGNORE,
    Family,
    check_sample,
    expected_turns,
    family_convs,
    lf_sample,
    load,
    model_dir,
    modes,
    trainable_dir,
    write_data,
)

@pytest.mark.parametrize("fam", [f for f in FAMILIES if f.cli], ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_auto_through_llamafactory_cli(fam: Family, tmp_path_factory: pytest.TempPathFactory) -> None:
    from datasets import load_from_disk

    tmp = tmp_path_factory.mktemp("native")
    model = trainable_dir(fam, tmp_path_factory.getbasetemp())
    write_data(tmp / "data", fam)
    tok = load(model)
    for thinking in modes(fam)[:1]:  # thinking on; every mode of every family runs in LF's processor below
        out = tmp / f"run-{thinking}"
        config = {
            "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
            "dataset": "convs", "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "enable_thinking": thinking,
            "tokenized_path": str(out / "tokenized"), "output_dir": str(out), "report_to": "none",
            "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 1, "save_strategy": "no",
            "thinkplugin": {"template": "auto", "export_serving": False},
        }
        proc = train(config, out, timeout=600)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "template: auto -> native" in log, log[-2000:]
        data = load_from_disk(str(out / "tokenized" / "train"))
        assert len(data) == len(family_convs(fam))
        for conv, row in zip(family_convs(fam), data, strict=True):
            check_sample(tok, conv, fam, thinking, row["input_ids"], row["labels"])


def lf_encode(tok: Any, fam: Family, thinking: bool, convs: list[dict], mask_history: bool = False) -> list[tuple]:
    """LF's own SFT processor with the registered `native` template, as `llamafactory-cli train` sets it up."""
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from lf_thinkplugin.templates import register_templates

    register_templates()
    args = DataArguments(template="native", cutoff_len=1 << 20, enable_thinking=thinking, mask_history=mask_history)
    template = get_template_and_fix_tokenizer(tok, args)
    attr = DatasetAttr("file", "convs", formatting="sharegpt", messages="conversations", system="system", tools="tools")
    convert = SharegptDatasetConverter(attr, args)
    aligned = [convert(lf_sample(c)) for c in convs]
    batch = {k: [a[k] for a in aligned] for k in aligned[0]}
    out = SupervisedDatasetProcessor(template=template, tokenizer=tok, processor=None, data_args=args).preprocess_dataset(batch)
    return list(zip(out["input_ids"], out["labels"], strict=True))


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_native_in_lf_processor(fam: Family, tmp_path_factory: pytest.TempPathFactory) -> None:
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    for thinking in modes(fam):
        convs = family_convs(fam)
        rows = lf_encode(tok, fam, thinking, convs)
        for conv, (input_ids, labels) in zip(convs, rows, strict=True):
            check_sample(tok, conv, fam, thinking, input_ids, labels)


@pytest.mark.parametrize("name", ["qwen3", "r1-distill-qwen", "gpt-oss"])
def test_expand_turns(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """N assistant turns -> N samples, each the exact inference context of its turn, only that turn trained."""
    from lf_thinkplugin.data.expand import split_conversation

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[3] if fam.tools else CONVERSATIONS[1]
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    attr = DatasetAttr("file", "convs", formatting="sharegpt", messages="conversations", system="system", tools="tools")
    aligned = SharegptDatasetConverter(attr, DataArguments())(lf_sample(conv))
    pieces = split_conversation(aligned["_prompt"], aligned["_response"])
    responses = [t for t in conv["turns"] if t[0] in ("assistant", "call")]
    assert len(pieces) == len(responses)
    trained_tokens = 0
    for n, (prompt, response) in enumerate(pieces):
        sub = dict(conv, turns=conv["turns"][: conv["turns"].index(responses[n]) + 1])
        (input_ids, labels), = lf_encode(tok, fam, True, [sub], mask_history=True)
        prompt_ids, response_ids = expected_turns(tok, sub, fam, True)[-1]
        start = len(prompt_ids)
        assert input_ids[:start] == prompt_ids and all(label == IGNORE for label in labels[:start])
        got = labels[start:]
        assert got in (response_ids, response_ids + [tok.eos_token_id]), (name, n, tok.decode(got))
        trained_tokens += len(got)
    print(f"{name}: {len(pieces)} samples, {trained_tokens} trained tokens")
    assert trained_tokens > 0


SPAN_FAMILIES = ["gpt-oss", "seed-oss", "glm-4.5", "qwen3.5", "r1-distill-qwen", "kimi-k2-thinking"]


@pytest.mark.parametrize("name", SPAN_FAMILIES)
def test_reasoning_spans_follow_each_familys_markup(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """think_loss finds the reasoning the template produced (`<seed:think>`, gpt-oss's analysis channel, GLM's
    tags without newlines, a prompt that opens the block): mask_reasoning leaves exactly the non-reasoning
    labels, whose text holds every answer and no reasoning."""
    import torch

    from lf_thinkplugin.loss.collator import tags_for
    from lf_thinkplugin.loss.spans import apply_policy
    from llamafactory.data.template import TEMPLATES

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[2] if fam.tools else CONVERSATIONS[0]
    (input_ids, labels), = lf_encode(tok, fam, True, [conv])
    tags = tags_for(tok, TEMPLATES["native"])
    lab = torch.tensor([labels])
    kinds = apply_policy(tags, lab, torch.ones_like(lab), "mask_reasoning")
    kept = tok.decode([t for t in lab[0].tolist() if t != IGNORE])
    masked = tok.decode([t for t, k in zip(labels, kinds[0].tolist(), strict=True) if t != IGNORE and k != 1])
    last = conv["turns"][-1]
    assert last[2] in kept and last[1] not in kept, (name, kept)
    assert last[1] in masked, (name, masked)


@pytest.mark.parametrize("name", ["gpt-oss", "qwen3"])
def test_serving_bundle_of_native_is_the_models_own_template(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from lf_thinkplugin.serving import build_bundle

    fam = next(f for f in FAMILIES if f.name == name)
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    bundle = build_bundle("native", tok, True)
    assert bundle.files["chat_template.jinja"] == tok.chat_template
    assert {"chat_template.jinja", "Modelfile", "SERVING.md"} <= set(bundle.files) and bundle.parity.ok
    # every engine from the learnt format (issue 26; the engines' own checks: tests/test_serving_native.py)
    parser = {"gpt-oss": "openai_gptoss", "qwen3": "qwen3"}[name]
    assert f"--reasoning-parser {parser}" in bundle.files["SERVING.md"]
    assert {"gpt-oss": "PARSER harmony", "qwen3": "PARSER qwen3-thinking"}[name] in bundle.files["Modelfile"]


def test_gpt_oss_native_equals_the_official_harmony_renderer(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A second oracle for gpt-oss: openai-harmony (OpenAI's renderer) gives the same training ids as
    `template: native` on gpt-oss's own chat template: system, user, analysis, final (`<|return|>`)."""
    import datetime

    folder = require_fixture("gpt-oss-20b")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(folder / "tiktoken"))
    from openai_harmony import (Conversation, HarmonyEncodingName, Message, ReasoningEffort, RenderConversationConfig,
                                Role, SystemContent, load_harmony_encoding)

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    fam = next(f for f in FAMILIES if f.name == "gpt-oss")
    tok = load(model_dir(fam, tmp_path_factory.getbasetemp()))
    conv = CONVERSATIONS[0]
    (input_ids, labels), = lf_encode(tok, fam, True, [conv])
    today = datetime.date.today().isoformat()  # the HF template writes strftime_now("%Y-%m-%d")
    system = (SystemContent.new().with_model_identity("You are ChatGPT, a large language model trained by OpenAI.")
              .with_knowledge_cutoff("2024-06").with_conversation_start_date(today)
              .with_reasoning_effort(ReasoningEffort.MEDIUM))
    _, reasoning, answer = conv["turns"][1]
    messages = [Message.from_role_and_content(Role.SYSTEM, system),
                Message.from_role_and_content(Role.USER, conv["turns"][0][1])]
    prompt = encoding.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT)
    messages += [Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"),
                 Message.from_role_and_content(Role.ASSISTANT, answer).with_channel("final")]
    # keep the analysis of the turn being trained (harmony drops analysis before a final by default: history rule)
    full = encoding.render_conversation_for_training(Conversation.from_messages(messages),
                                                     RenderConversationConfig(auto_drop_analysis=False))
    assert input_ids == list(full)
    assert all(label == IGNORE for label in labels[: len(prompt)]) and labels[len(prompt):] == list(full)[len(prompt):]


def test_expand_turns_through_llamafactory_cli(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`thinkplugin.expand_turns` in a real run: one tokenized sample per assistant turn, each trained on its turn only."""
    from datasets import load_from_disk

    fam = next(f for f in FAMILIES if f.name == "qwen3")
    tmp = tmp_path_factory.mktemp("expand")
    model = trainable_dir(fam, tmp_path_factory.getbasetemp())
    write_data(tmp / "data", fam)
    tok = load(model)
    out = tmp / "run"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "convs", "dataset_dir": str(tmp / "data"), "cutoff_len": 4096, "tokenized_path": str(out / "tokenized"),
        "output_dir": str(out), "report_to": "none", "overwrite_cache": True, "max_steps": 1,
        "per_device_train_batch_size": 1, "save_strategy": "no",
        "thinkplugin": {"template": "native", "expand_turns": True, "export_serving": False},
    }
    proc = train(config, out, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    data = load_from_disk(str(out / "tokenized" / "train"))
    expected = []
    for conv in CONVERSATIONS:
        responses = [t for t in conv["turns"] if t[0] in ("assistant", "call")]
        for r in responses:
            sub = dict(conv, turns=conv["turns"][: conv["turns"].index(r) + 1])
            expected.append(expected_turns(tok, sub, fam, True)[-1])
    assert len(data) == len(expected) == 9
    for (prompt_ids, response_ids), row in zip(expected, data, strict=True):
        start = len(prompt_ids)
        assert row["input_ids"][:start] == prompt_ids and set(row["labels"][:start]) == {IGNORE}
        assert row["labels"][start:] == response_ids


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name + (" (stand-in)" if f.standin else ""))
def test_auto_refuses_no_fixture_family(fam: Family, tmp_path_factory: pytest.TempPathFactory, capsys) -> None:
    """`template: auto` picks a template with parity on every probe for every fixture family, in each thinking
    mode it has (QwQ, GLM-4.7 with thinking on and MiniMax-M2 included), never refusing."""
    from lf_thinkplugin.templates.diagnose import resolve_template

    folder = model_dir(fam, tmp_path_factory.getbasetemp())
    for thinking in modes(fam):
        chosen = resolve_template(str(folder), enable_thinking=thinking)
        log = capsys.readouterr().out
        assert chosen and f"template: auto -> {chosen}" in log and "although" not in log, (fam.name, thinking, log)
