"""`lf-think export` and the after-training bundle: files, refusal, atomicity, and the parity matrix
(LF's training encoder vs the exported Jinja, LMDeploy's template class, Ollama's Go template)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import require_lmdeploy
from serving_support import export, model_dir, modelfile_template, render_ollama, tokenizer_of

from lf_thinkplugin.demo.fixtures import QWEN3, R1_DISTILL

BUNDLE = ["chat_template.jinja", "Modelfile", "lmdeploy_chat_template.json", "SERVING.md"]
CASES = [("qwen3_think", QWEN3), ("qwen3_think_keep_history", QWEN3), ("r1_distill_qwen", R1_DISTILL)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{template: folder with the fixture tokenizer and the exported bundle}."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for template, fixture in CASES:
        folder = model_dir(fixture, root / template)
        assert export("--template", template, "--tokenizer", str(folder), "--out", str(folder)) == 0
        out[template] = folder
    return out


def add_bos(folder: Path) -> bool:
    return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("add_bos_token"))


# ---- the files ------------------------------------------------------------------------------------


def test_export_writes_the_bundle_and_its_jinja_is_the_trained_template(exported):
    from lf_thinkplugin.templates import jinja_text

    for template, jinja in [("qwen3_think", "qwen3_official.jinja"), ("qwen3_think_keep_history", "qwen3_keep_history.jinja"),
                            ("r1_distill_qwen", "deepseek_r1.jinja")]:  # fmt: skip
        folder = exported[template]
        assert all((folder / name).is_file() for name in BUNDLE)
        assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == jinja_text(jinja)
        assert tokenizer_of(folder).chat_template == jinja_text(jinja)  # transformers reads it from the folder
        assert not list(folder.glob(".*.tmp"))


def test_modelfile_thinks_stops_and_sets_no_context_size(exported, tmp_path):
    qwen3 = (exported["qwen3_think"] / "Modelfile").read_text(encoding="utf-8")
    assert "{{ .Thinking }}" in qwen3 and "$.IsThinkSet (not $.Think)" in qwen3
    assert 'PARAMETER stop "<|im_end|>"' in qwen3 and "num_ctx" not in qwen3
    r1 = (exported["r1_distill_qwen"] / "Modelfile").read_text(encoding="utf-8")
    assert 'PARAMETER stop "<｜end▁of▁sentence｜>"' in r1 and "<｜Assistant｜>{{ if $last }}<think>\n{{ end }}" in r1
    assert "<｜begin▁of▁sentence｜>" not in r1  # the engine's tokenizer adds BOS
    out = tmp_path / "ctx"
    assert export("--template", "qwen3_think", "--tokenizer", str(exported["qwen3_think"]), "--out", str(out), "--num-ctx", "8192") == 0
    assert "PARAMETER num_ctx 8192" in (out / "Modelfile").read_text(encoding="utf-8")


def test_lmdeploy_json_fields_and_reported_limits(exported, capsys):
    fields = {"model_name", "system", "meta_instruction", "eosys", "user", "eoh", "assistant", "eoa", "separator", "capability", "stop_words"}
    qwen3 = json.loads((exported["qwen3_think"] / "lmdeploy_chat_template.json").read_text(encoding="utf-8"))
    assert set(qwen3) == fields
    # no stray empty system block: with no default system prompt the system markup is left out
    assert (qwen3["system"], qwen3["meta_instruction"], qwen3["eosys"]) == ("", "", "")
    assert qwen3["eoh"] == "<|im_end|>\n<|im_start|>assistant\n" and qwen3["eoa"] == "<|im_end|>"
    serving = (exported["qwen3_think"] / "SERVING.md").read_text(encoding="utf-8")
    assert "--reasoning-parser qwen3" in serving and '"chat_template_kwargs": {"enable_thinking": false}' in serving
    assert "no `enable_thinking` switch" in serving and "system messages render as bare text" in serving
    r1 = (exported["r1_distill_qwen"] / "SERVING.md").read_text(encoding="utf-8")
    assert "--reasoning-parser deepseek_r1" in r1 and "`enable_thinking` has no effect" in r1
    assert "10/10 probes" in r1


def test_existing_files_refuse_without_force_and_nothing_is_written(exported, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "Modelfile").write_text("mine")
    source = str(exported["qwen3_think"])
    assert export("--template", "qwen3_think", "--tokenizer", source, "--out", str(out)) == 2
    assert "already has Modelfile; nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile"] and (out / "Modelfile").read_text() == "mine"
    assert export("--template", "qwen3_think", "--tokenizer", source, "--out", str(out), "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(BUNDLE) and (out / "Modelfile").read_text() != "mine"


def test_bad_input_names_the_problem(tmp_path, capsys, exported):
    assert export("--template", "qwen3_thinking", "--tokenizer", str(exported["qwen3_think"]), "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "unknown template 'qwen3_thinking'" in err and "qwen3_think" in err and "deepseek3" in err
    assert export("--template", "qwen3_think", "--tokenizer", str(tmp_path), "--out", str(tmp_path / "b")) == 2
    assert "no tokenizer in" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_interrupted_export_leaves_no_partial_file(tmp_path, monkeypatch):
    from lf_thinkplugin.serving import files

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the second file dies half-written
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(KeyboardInterrupt):
        files.write_all(out, {"a.txt": "new a", "b.txt": "new b" * 1000}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "old a"


# ---- parity matrix --------------------------------------------------------------------------------


_ENCODERS: dict = {}


def lf_turns(template: str, tokenizer, probe, mode):
    """[(messages before the trained turn, LF's training prompt ids, response ids)] for one probe."""
    from lf_thinkplugin.templates.parity import Encoder, Scanner, _label_runs
    from lf_thinkplugin.templates.reasoning import strip_reasoning

    key = (template, id(tokenizer), mode)
    if key not in _ENCODERS:  # a Scanner reads the 150k vocabulary: once per tokenizer and mode
        _ENCODERS[key] = (tokenizer, Encoder(template, Scanner(tokenizer, mode, probes=()).view(), mode))
    input_ids, labels = _ENCODERS[key][1].encode(probe)
    runs = _label_runs(labels)
    assistants = [i for i, m in enumerate(probe.messages) if m["role"] == "assistant"]
    messages = [dict(m) for m in probe.messages]
    if mode is False:  # a non-thinking run: the conversation a client sends has no reasoning (as in the doctor)
        messages = [dict(m, content=strip_reasoning(m["content"])) if m["role"] == "assistant" else m for m in messages]
    out = []
    for (start, end), index in zip(runs, assistants[len(assistants) - len(runs):], strict=True):
        out.append((messages[:index], input_ids[:start], labels[start:end]))
    return out


@pytest.mark.parametrize("mode", [True, False, None])
@pytest.mark.parametrize("template", [c[0] for c in CASES])
def test_exported_jinja_renders_the_training_tokens(exported, template, mode):
    """(b): the exported Jinja through transformers' apply_chat_template, the path vLLM takes."""
    from lf_thinkplugin.templates.parity import Scanner

    result = Scanner(tokenizer_of(exported[template]), mode).check(template)
    assert result.ok and result.passed == 10, [p.summary() for p in result.probes if not p.ok]


def test_doctor_round_trip_on_exported_folders(exported):
    from lf_thinkplugin.templates.diagnose import diagnose

    for template in ("qwen3_think", "qwen3_think_keep_history", "r1_distill_qwen"):
        report = diagnose(str(exported[template]))
        assert report.ok and report.recommended == "native", (template, report.with_parity)  # tool probes: only the Jinja itself


def _conversation(probe, messages):
    return ([{"role": "system", "content": probe.system}] if probe.system else []) + messages


@pytest.mark.parametrize("template", [c[0] for c in CASES])
def test_lmdeploy_renders_the_training_tokens(exported, template):
    """(c): lmdeploy_chat_template.json through LMDeploy's own template class, where it can express the
    conversation; LMDeploy's default path (the folder's chat template) everywhere."""
    from lf_thinkplugin.serving import build_bundle
    from lf_thinkplugin.serving.lmdeploy import unexpressible
    from lf_thinkplugin.templates.probes import PROBES

    ChatTemplateConfig, HFChatTemplate = require_lmdeploy()
    folder = exported[template]
    tok = tokenizer_of(folder)
    json_template = ChatTemplateConfig.from_json(str(folder / "lmdeploy_chat_template.json")).chat_template()
    hf_template = HFChatTemplate(model_path=str(folder))
    bundle = build_bundle(template, tok)
    fmt = bundle.format
    compared, skipped = [], []
    for mode in (True, False, None):
        for probe in PROBES:
            for messages, prompt_ids, _ in lf_turns(template, tok, probe, mode):
                conversation = _conversation(probe, messages)
                kwargs = {} if mode is None else {"enable_thinking": mode}
                if mode is None:  # LF's hybrid: the turn thinks when it has think tags
                    turn = probe.messages[len(messages)]["content"]
                    kwargs = {"enable_thinking": "<think>" in turn or "</think>" in turn}
                # as LMDeploy encodes a prompt: the tokenizer from the folder, special tokens on
                hf_ids = tok.encode(hf_template.messages2prompt(conversation, **kwargs), add_special_tokens=True)
                assert hf_ids == prompt_ids, (template, mode, probe.name, "hf chat template")
                thinking = kwargs["enable_thinking"] if fmt.nothink else True
                reason = unexpressible(fmt, messages, probe.system, thinking, bundle.lmdeploy_adds_bos)
                if reason:
                    skipped.append((mode, probe.name, reason))
                    continue
                json_ids = tok.encode(json_template.messages2prompt(conversation), add_special_tokens=True)
                assert json_ids == prompt_ids, (template, mode, probe.name, "lmdeploy json")
                compared.append((mode, probe.name))
    if fmt.bos:  # R1: the tokenizer (tokenizer.json, transformers 5) adds no BOS, the JSON cannot write one
        assert not compared and {reason for *_, reason in skipped} == {"BOS"}
        assert any("the BOS token" in limit for limit in bundle.lmdeploy_limits)
        return
    # thinking mode: every probe without a system message, and for qwen3_think without history reasoning
    no_system = [p.name for p in PROBES if not p.system]
    history_reasoning = {"multi_turn_reasoning_in_history"} if template == "qwen3_think" else set()
    assert {n for m, n in compared if m is True} == set(no_system) - history_reasoning
    assert not [m for m, _ in compared if m is False]  # no thinking switch in the JSON


@pytest.mark.parametrize("template", [c[0] for c in CASES])
def test_ollama_renders_the_training_tokens(exported, go_renderer, template):
    """(d): the Modelfile TEMPLATE executed by Go's text/template with Ollama's message fields."""
    from lf_thinkplugin.serving import build_bundle
    from lf_thinkplugin.serving.ollama import ollama_messages, unexpressible
    from lf_thinkplugin.templates.probes import PROBES

    folder = exported[template]
    tok = tokenizer_of(folder)
    bos = [tok.bos_token_id] if add_bos(folder) else []
    bundle = build_bundle(template, tok)
    fmt = bundle.format
    assert bundle.gguf_adds_bos == add_bos(folder)
    jobs, expected, skipped = [], [], []
    for mode in (True, False, None):
        for probe in PROBES:
            for messages, prompt_ids, response in lf_turns(template, tok, probe, mode):
                reason = unexpressible(fmt, messages, bundle.gguf_adds_bos)
                if reason:
                    skipped.append((probe.name, reason))
                    continue
                turn = probe.messages[len(messages)]["content"]
                thinking = mode if mode is not None else ("<think>" in turn or "</think>" in turn)
                system = [{"role": "system", "content": probe.system, "thinking": ""}] if probe.system else []
                jobs.append({"messages": system + ollama_messages(fmt, messages), "think": thinking, "is_think_set": not thinking})
                expected.append((mode, probe.name, prompt_ids, response))
    rendered = render_ollama(go_renderer, modelfile_template(folder), jobs)
    for text, (mode, name, prompt_ids, response) in zip(rendered, expected, strict=True):
        assert bos + tok.encode(text, add_special_tokens=False) == prompt_ids, (template, mode, name, text[-80:])
        assert any(stop in tok.decode(response) for stop in fmt.stop)  # PARAMETER stop ends the trained turn
    assert len(expected) == 3 * sum(len(lf_turns(template, tok, p, True)) for p in PROBES) and not skipped


# ---- after training -------------------------------------------------------------------------------


def test_callback_writes_the_bundle_into_checkpoints_and_output_dir(tiny_qwen3, tmp_path):
    """A real transformers Trainer on the tiny model, LF's SFT collator and the plugin's template."""
    import torch
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask
    from llamafactory.data.template import TEMPLATES
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from lf_thinkplugin.templates.diagnose import diagnose
    from lf_thinkplugin.serving import make_callbacks
    from lf_thinkplugin.options import parse_options
    from lf_thinkplugin.templates import jinja_text, register_templates
    from lf_thinkplugin.templates.parity import Encoder, Scanner
    from lf_thinkplugin.templates.probes import PROBES

    register_templates()
    tok = tokenizer_of(tiny_qwen3)
    tok.chat_template = "{{ messages }}"  # a wrong template: the callback must replace it
    encoder = Encoder("qwen3_think", Scanner(tok, True, probes=()).view(), True)
    rows = [dict(zip(("input_ids", "labels"), encoder.encode(p), strict=True)) for p in PROBES[:4]]
    dataset = [dict(r, attention_mask=[1] * len(r["input_ids"])) for r in rows]
    collator = SFTDataCollatorWith4DAttentionMask(template=TEMPLATES["qwen3_think"], tokenizer=tok, model=None,
                                                  label_pad_token_id=-100, compute_dtype=torch.float32)  # fmt: skip
    out = tmp_path / "out"
    args = TrainingArguments(output_dir=str(out), max_steps=2, save_steps=2, per_device_train_batch_size=2,
                             report_to=[], use_cpu=True, logging_steps=1, remove_unused_columns=False)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen3))
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=tok,
                      callbacks=make_callbacks(parse_options({})))  # fmt: skip
    trainer.train()
    trainer.save_model()  # LF's SFT workflow saves after train(), as here
    expected = jinja_text("qwen3_official.jinja")
    for folder in (out / "checkpoint-2", out):
        assert all((folder / name).is_file() for name in BUNDLE), folder
        assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == expected
        assert tokenizer_of(folder).chat_template == expected
    report = diagnose(str(out))
    assert report.ok and report.recommended == "native"
    assert make_callbacks(parse_options({"export_serving": False})) == []


@pytest.mark.slow
def test_tiny_training_run_output_dir_has_the_bundle(tiny_qwen3, tmp_path):
    from lfrun import base_config, train

    from lf_thinkplugin.activation.callbacks import plugin_callbacks
    from lf_thinkplugin.options import parse_options
    from lf_thinkplugin.serving.callback import ServingBundleCallback
    from lf_thinkplugin.templates.diagnose import diagnose

    assert any(isinstance(c, ServingBundleCallback) for c in plugin_callbacks(parse_options({})))  # wired for every run

    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, template="qwen3_think", save_strategy="steps", save_steps=2,
                         thinkplugin={"log_span_loss": False})  # fmt: skip
    proc = train(config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for folder in (out / "checkpoint-2", out):
        assert all((folder / name).is_file() for name in BUNDLE), folder
    report = diagnose(str(out))
    assert report.ok and report.recommended == "native"


def test_templates_without_a_plain_text_form_are_refused_clearly(load_tokenizer):
    from lf_thinkplugin.serving import ExportError, build_bundle

    with pytest.raises(ExportError, match="chatglm3"):  # token-dict slots: neither Jinja nor Ollama text
        build_bundle("chatglm3", load_tokenizer(QWEN3))
