"""`template: native` (what `template: auto` picks) served by every engine: the bundle of Qwen3, R1-Distill-Qwen,
gpt-oss and a Qwen3.5 stand-in (the Qwen3.5 chat template on the Qwen3 tokenizer: no Qwen3.5 tokenizer is in the
fixtures), each engine's prompt for every trained turn of the probes compared, token for token, with the
training encoding (NativeEncoder, LF's `native` path): Ollama TEMPLATEs executed by Go's text/template with
Ollama's types and functions (tests/ollama_render), LMDeploy through its own HFChatTemplate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import require_fixture, require_lmdeploy
from serving_support import export, model_dir, render_ollama, tokenizer_of

from lf_thinkplugin.demo.fixtures import QWEN3, R1_DISTILL

GPT_OSS = "gpt-oss-20b"
# family -> (tokenizer fixture, chat template file from chat_templates/ or None for the tokenizer's own)
FAMILIES = {"qwen3": (QWEN3, None), "r1_distill_qwen": (R1_DISTILL, None), "gpt_oss": (GPT_OSS, None),
            "qwen35_standin": (QWEN3, "Qwen-Qwen3.5-4B.jinja")}
# the exact serve commands each bundle must hold (parsers matched to the learnt format)
VLLM = {
    "qwen3": "vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja --reasoning-parser qwen3 "
             "--enable-auto-tool-choice --tool-call-parser hermes",
    # no tool parser: vLLM's deepseek_v3 refuses a vocabulary without `<｜tool▁calls▁begin｜>` (engines.py)
    "r1_distill_qwen": "vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja --reasoning-parser deepseek_r1",
    "gpt_oss": "vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja --reasoning-parser openai_gptoss "
               "--enable-auto-tool-choice --tool-call-parser openai",
    "qwen35_standin": "vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja --reasoning-parser qwen3 "
                      "--enable-auto-tool-choice --tool-call-parser qwen3_coder",
}
SGLANG = {"qwen3": "--reasoning-parser qwen3 --tool-call-parser qwen25",
          "r1_distill_qwen": "--reasoning-parser deepseek-r1 --tool-call-parser deepseekv3",
          "gpt_oss": "--reasoning-parser gpt-oss --tool-call-parser gpt-oss",
          "qwen35_standin": "--reasoning-parser qwen3 --tool-call-parser qwen3_coder"}
TOOL_PROBES = {"tool_call_chain", "tool_call_after_chat"}


def _folder(family: str, root: Path) -> Path:
    fixture, template = FAMILIES[family]
    folder = model_dir(fixture, root / family)
    if not (folder / "config.json").is_file():  # gpt-oss's fixture is tokenizer-only; a trained folder has its config
        (folder / "config.json").write_text(json.dumps({"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss"}))
    if template:  # the stand-in: the family's chat template in the Qwen3 tokenizer's folder
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["chat_template"] = (require_fixture(fixture).parent / "chat_templates" / template).read_text(encoding="utf-8")
        config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """{family: folder holding the fixture tokenizer and the `native` bundle lf-think export wrote}."""
    root = tmp_path_factory.mktemp("native")
    out = {}
    for family in FAMILIES:
        folder = _folder(family, root)
        assert export("--template", "native", "--tokenizer", str(folder), "--out", str(folder)) == 0, family
        out[family] = folder
    return out


def _encoder(folder: Path):
    from lf_thinkplugin.templates.native import NativeEncoder

    tok = tokenizer_of(folder)
    return tok, NativeEncoder(tok)


def _modes(encoder):
    return (True, False, None) if encoder.format.switch is not None else (True,)


# ---- the files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_auto_picks_native_and_the_bundle_names_every_engine(bundles, family):
    from lf_thinkplugin.templates.diagnose import resolve_template

    folder = bundles[family]
    assert resolve_template(str(folder)) == "native"  # what `thinkplugin.template: auto` trains with
    files = sorted(p.name for p in folder.iterdir() if p.name in (
        "chat_template.jinja", "Modelfile", "Modelfile.template", "Modelfile.renderer", "SERVING.md",
        "lmdeploy_chat_template.json"))
    expected = ["Modelfile", "SERVING.md", "chat_template.jinja"] + (["Modelfile.renderer"] if family == "qwen35_standin" else []) \
        + ([] if family == "gpt_oss" else ["lmdeploy_chat_template.json"])  # gpt-oss's head holds today's date
    assert files == sorted(expected)
    serving = (folder / "SERVING.md").read_text(encoding="utf-8")
    assert VLLM[family] in serving
    assert "python -m sglang.launch_server --model-path MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja " \
        + SGLANG[family] in serving
    lmdeploy = {"qwen3": " --reasoning-parser default --tool-call-parser qwen3",
                "r1_distill_qwen": " --reasoning-parser default",  # LMDeploy 0.18 has no DeepSeek-V3 tool parser
                "gpt_oss": "\n",  # LMDeploy's own gpt-oss response parser, chosen from the architecture
                "qwen35_standin": " --reasoning-parser default --tool-call-parser qwen3coder"}[family]
    assert "lmdeploy serve api_server MODEL_DIR --chat-template hf" + lmdeploy in serving
    modelfile = (folder / "Modelfile").read_text(encoding="utf-8")
    stops = {"qwen3": ['"<|im_end|>"'], "qwen35_standin": ['"<|im_end|>"'], "r1_distill_qwen": ['"<｜end▁of▁sentence｜>"'],
             "gpt_oss": ['"<|return|>"']}[family]
    assert [line.split(" ", 2)[2] for line in modelfile.splitlines() if line.startswith("PARAMETER stop")][: len(stops)] == stops
    if family == "qwen35_standin":  # the TEMPLATE, exact on the probes, where Ollama's own renderer differs (beside it)
        assert "PARSER qwen3.5\n# TEMPLATE" in modelfile and "RENDERER" not in modelfile
        renderer = (folder / "Modelfile.renderer").read_text(encoding="utf-8")
        assert "RENDERER qwen3.5\nPARSER qwen3.5\n" in renderer and "TEMPLATE" not in renderer
    else:
        parser = {"qwen3": "PARSER qwen3-thinking\n", "gpt_oss": "PARSER harmony\n", "r1_distill_qwen": ""}[family]
        assert parser in modelfile and 'TEMPLATE """' in modelfile
        assert ("PARSER" in modelfile) == bool(parser)


def test_bos_is_left_to_the_gguf_where_it_adds_one(bundles):
    r1 = (bundles["r1_distill_qwen"] / "Modelfile").read_text(encoding="utf-8")
    assert "<｜begin▁of▁sentence｜>" not in r1  # tokenizer_config.json add_bos_token: llama.cpp adds it
    assert "{{ range .Messages }}{{ if and false .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ end }}" in r1


# ---- Ollama: the TEMPLATE run by Go's text/template ----------------------------------------------


def _ollama_jobs(family, folder):
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.serving.slots import ollama_messages
    from lf_thinkplugin.templates.native import _tools

    tok, encoder = _encoder(folder)
    jobs, turns = [], []
    for mode in _modes(encoder):
        for turn in trained_turns(encoder, mode):
            system = [{"role": "system", "content": turn.probe.system}] if turn.probe.system else []
            jobs.append({"messages": system + ollama_messages(turn.before, encoder.format, turn.thinking),
                         "tools": _tools(turn.probe.tools), "think": turn.thinking, "is_think_set": True})
            turns.append((mode, turn))
    return tok, encoder, jobs, turns


def _template(folder: Path, name: str) -> str:
    text = (folder / name).read_text(encoding="utf-8")
    return text.split('TEMPLATE """', 1)[1].rsplit('"""', 1)[0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_ollama_template_renders_the_training_ids(bundles, go_renderer, family):
    """Every trained turn whose conversation the TEMPLATE can express: Go's output == the Python mirror the
    export checks with, and its ids == the training ids before the turn; the turn ends in a PARAMETER stop."""
    from lf_thinkplugin.serving import build_bundle
    from lf_thinkplugin.serving.slots import render

    folder = bundles[family]
    name = "Modelfile"
    tok, encoder, jobs, turns = _ollama_jobs(family, folder)
    slots = build_bundle("native", tok).native.slots
    expressible = [k for k, (_, turn) in enumerate(turns) if slots.tools_error is None or turn.probe.name not in TOOL_PROBES]
    rendered = render_ollama(go_renderer, _template(folder, name), [jobs[k] for k in expressible])
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    bos = [tok.bos_token_id] if config.get("add_bos_token") and slots.bos else []
    modelfile = (folder / name).read_text(encoding="utf-8")
    stops = {tok.convert_tokens_to_ids(line.split('"')[1]) for line in modelfile.splitlines() if line.startswith("PARAMETER stop")}
    compared = set()
    for text, k in zip(rendered, expressible, strict=True):
        mode, turn = turns[k]
        job = jobs[k]
        mirror = render(slots, job["messages"], job["tools"], job["think"], job["is_think_set"], keep_bos=not bos and bool(slots.bos))
        assert text == mirror, (family, mode, turn.probe.name)
        assert bos + tok.encode(text, add_special_tokens=False) == turn.prompt_ids, (family, mode, turn.probe.name, text[-200:])
        assert stops & set(turn.target_ids[-2:]), (family, mode, turn.probe.name)
        compared.add(turn.probe.name)
    all_probes = {turn.probe.name for _, turn in turns}
    # the exact set: Qwen3 and Qwen3.5 (XML arguments, one piece per argument) with tool calls; R1-Distill (no tool
    # definitions in its template) and gpt-oss (TypeScript definitions) without
    with_tools = family in ("qwen3", "qwen35_standin")
    assert compared == (all_probes if with_tools else all_probes - TOOL_PROBES)
    assert len(all_probes) == 12 and len(expressible) == len(rendered)
    assert (slots.tools_error is None) == with_tools


def test_ollama_thinking_off_and_default_follow_the_switch(bundles, go_renderer):
    """Qwen3: `--think=false` gives the closed empty block; no think setting gives the template's default (on)."""
    folder = bundles["qwen3"]
    jobs = [{"messages": [{"role": "user", "content": "Hi"}], "think": think, "is_think_set": is_set}
            for think, is_set in ((False, True), (True, True), (False, False))]
    off, on, default = render_ollama(go_renderer, _template(folder, "Modelfile"), jobs)
    assert off == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert on == default == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


# ---- LMDeploy: its own HFChatTemplate ------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lmdeploy_hf_chat_template_renders_the_training_ids(bundles, family):
    """`--chat-template hf`: LMDeploy's HFChatTemplate on the exported folder, the messages and switch a client
    sends, encoded as LMDeploy encodes a prompt (special tokens on)."""
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.templates.native import _tools, to_messages

    ChatTemplateConfig, _ = require_lmdeploy()
    folder = bundles[family]
    template = ChatTemplateConfig(model_name="hf", model_path=str(folder)).chat_template()  # what `--chat-template hf` builds
    assert type(template).__name__ == "HFChatTemplate"
    tok, encoder = _encoder(folder)
    failed, passed = [], set()
    for mode in _modes(encoder):
        for turn in trained_turns(encoder, mode):
            messages = to_messages(turn.before, turn.probe.system, encoder.format, turn.thinking)
            kwargs = dict(encoder.kwargs(turn.thinking))
            tools = _tools(turn.probe.tools)
            if tools:
                kwargs["tools"] = tools
            ids = tok.encode(template.messages2prompt(messages, **kwargs), add_special_tokens=True)
            if ids == turn.prompt_ids:
                passed.add(turn.probe.name)
            else:
                failed.append(turn.probe.name)
    if family == "gpt_oss":  # LMDeploy rewrites gpt-oss's system prompt when a request has no tools (declared in SERVING.md)
        assert set(failed) == {t.probe.name for t in trained_turns(encoder, True)} - TOOL_PROBES
        assert passed == TOOL_PROBES
        assert "deletes `commentary, `" in (folder / "SERVING.md").read_text(encoding="utf-8")
    else:
        assert not failed and len(passed) == 12


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lmdeploy_json_renders_the_training_ids_where_it_can(bundles, family):
    """lmdeploy_chat_template.json through LMDeploy's own BaseChatTemplate, as `--chat-template FILE` loads it,
    on the conversation an OpenAI-style client sends (earlier answers without reasoning): identical ids on
    every turn the declared limits leave, and the exact set of those turns."""
    from lf_thinkplugin.serving import build_bundle
    from lf_thinkplugin.serving.checks import check, lmdeploy_json_messages, lmdeploy_json_why_not, trained_turns

    ChatTemplateConfig, _ = require_lmdeploy()
    folder = bundles[family]
    if family == "gpt_oss":
        assert not (folder / "lmdeploy_chat_template.json").exists()
        assert "the head before the first user message is not a fixed string" in (folder / "SERVING.md").read_text(encoding="utf-8")
        return
    template = ChatTemplateConfig.from_json(str(folder / "lmdeploy_chat_template.json")).chat_template()
    tok, encoder = _encoder(folder)
    bundle = build_bundle("native", tok)
    why = lmdeploy_json_why_not(bundle.native.slots, bundle.lmdeploy_adds_bos, bundle.native.json_limits)
    compared = set()
    for mode in _modes(encoder):
        turns = trained_turns(encoder, mode)
        result = check(turns, lambda turn: template.messages2prompt(lmdeploy_json_messages(turn, encoder.format)),
                       lambda prompt: tok.encode(prompt, add_special_tokens=True), [], why)
        assert result.passed == result.compared, result.failures
        compared |= {(mode, t.probe.name) for t in turns if not why(t)}
    # no system message, no tools; thinking on (mode None: the samples with reasoning); Qwen3.5: one turn only
    thinking = {"single_turn", "empty_reasoning", "compact_think_tags"}
    multi = {"multi_turn_reasoning_in_history", "mixed_history"}
    plain = {"non_thinking_answer", "multi_turn_non_thinking"}
    expected = {"qwen3": {(True, n) for n in thinking | multi | plain} | {(None, n) for n in thinking | multi},
                "qwen35_standin": {(True, n) for n in thinking | {"non_thinking_answer"}} | {(None, n) for n in thinking},
                "r1_distill_qwen": set()}[family]  # R1: the BOS, which this tokenizer does not add when encoding
    assert compared == expected


# ---- after training and from the run record ------------------------------------------------------


def test_export_from_the_run_record_equals_the_after_training_bundle(bundles, tmp_path, capsys):
    """`lf-think export --out OUTPUT_DIR` reads `native` from thinkplugin_run.json; its files are the ones the
    after-training callback writes (both call build_bundle with the run's template and mode)."""
    from lf_thinkplugin.serving import build_bundle
    from lf_thinkplugin.templates.native import NativeEncoder
    from lf_thinkplugin.templates.record import write_record

    out = tmp_path / "run"
    shutil.copytree(bundles["qwen3"], out)
    for name in ("chat_template.jinja", "Modelfile", "SERVING.md"):
        (out / name).unlink()
    tok = tokenizer_of(out)
    write_record(out, "native", None, NativeEncoder(tok).format)
    assert export("--out", str(out)) == 0
    assert "template native, enable_thinking None" in capsys.readouterr().out
    bundle = build_bundle("native", tok, None)  # the callback's call (serving/callback.py)
    for name, text in bundle.files.items():
        assert (out / name).read_text(encoding="utf-8") == text, name
    assert "(enable_thinking: auto)" in (out / "SERVING.md").read_text(encoding="utf-8")


def test_native_on_a_folder_without_a_chat_template_is_refused_clearly(tmp_path, capsys):
    folder = model_dir(QWEN3, tmp_path / "bare")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config), encoding="utf-8")
    assert export("--template", "native", "--tokenizer", str(folder), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("lf-think export: ") and "has no chat template" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_after_training_callback_writes_the_same_native_bundle_as_export(bundles, tmp_path):
    """serving/callback.py at train end (the collator's template is LF's registered `native`, as in a run with
    `template: auto`) writes into output_dir exactly what `lf-think export --out OUTPUT_DIR` writes from the
    run record there."""
    from types import SimpleNamespace

    from llamafactory.data.template import TEMPLATES

    from lf_thinkplugin.serving.callback import ServingBundleCallback
    from lf_thinkplugin.templates import register_templates
    from lf_thinkplugin.templates.native import NativeEncoder
    from lf_thinkplugin.templates.record import write_record

    register_templates()
    out = tmp_path / "output_dir"
    shutil.copytree(bundles["gpt_oss"], out)
    for name in ("Modelfile", "SERVING.md"):  # chat_template.jinja stays: gpt-oss's tokenizer reads its template there
        (out / name).unlink()
    tok = tokenizer_of(out)
    template = TEMPLATES["native"]
    callback = ServingBundleCallback()
    args = SimpleNamespace(output_dir=str(out), should_save=True)
    callback.on_train_begin(args, None, None, processing_class=tok,
                            train_dataloader=SimpleNamespace(collate_fn=SimpleNamespace(template=template)))
    callback.on_train_end(args, None, None)
    written = {name: (out / name).read_text(encoding="utf-8") for name in ("chat_template.jinja", "Modelfile", "SERVING.md")}
    assert "PARSER harmony" in written["Modelfile"] and "--reasoning-parser openai_gptoss" in written["SERVING.md"]
    write_record(out, "native", getattr(template, "enable_thinking", True), NativeEncoder(tok).format)
    again = tmp_path / "again"
    shutil.copytree(out, again)
    for name in ("Modelfile", "SERVING.md"):
        (again / name).unlink()
    assert export("--out", str(again)) == 0
    assert {name: (again / name).read_text(encoding="utf-8") for name in written} == written


def test_a_template_the_pieces_cannot_describe_gets_no_modelfile_and_says_why(tmp_path, capsys):
    """A chat template that writes each message twice: vLLM / LMDeploy still serve the Jinja; no Modelfile, and
    SERVING.md names the reason instead of serving a near-miss."""
    folder = model_dir(QWEN3, tmp_path / "twice")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\n{{ m.content }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    code = export("--template", "native", "--tokenizer", str(folder), "--out", str(folder))
    assert code in (0, 1) and "Traceback" not in capsys.readouterr().err
    assert not (folder / "Modelfile").exists() and (folder / "chat_template.jinja").is_file()
    serving = (folder / "SERVING.md").read_text(encoding="utf-8")
    assert "No Modelfile: an Ollama TEMPLATE cannot express this chat template." in serving
    assert "an Ollama TEMPLATE cannot express it: the user message is not rendered once as sent" in serving
