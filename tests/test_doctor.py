"""`lf-think doctor` and `thinkplugin.template: auto` on the real tokenizer fixtures."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, require_fixture

from lf_thinkplugin.demo.fixtures import DEEPSEEK_V3, QWEN3, QWEN25, R1_DISTILL

R1_BOS, R1_THINK, NL = 151646, 151648, 198
FIXTURES = (QWEN3, R1_DISTILL, QWEN25, DEEPSEEK_V3)


def fixed_copy(name: str, out: Path) -> Path:
    """A fixture folder with the documented fix: tokenizer_class PreTrainedTokenizerFast."""
    src = require_fixture(name)
    shutil.copytree(src, out)
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def reports():
    from lf_thinkplugin.templates.diagnose import diagnose

    out = {}
    for name in FIXTURES:
        started = time.perf_counter()
        out[name] = diagnose(str(require_fixture(name)))
        out[name].wall = time.perf_counter() - started
    return out


@pytest.fixture(scope="module")
def r1_fixed(tmp_path_factory) -> Path:
    return fixed_copy(R1_DISTILL, tmp_path_factory.mktemp("r1") / "r1")


def test_doctor_picks_the_template_with_parity_for_each_fixture(reports):
    """The tool-call probes leave `native` (the model's own template) as the only template with full parity:
    the hand-written templates and LF's fail exactly there, on every plain probe they still match."""
    from lf_thinkplugin.templates.probes import TOOL_PROBES

    tool_probes = {p.name for p in TOOL_PROBES}
    plain_best = {QWEN3: "qwen3_think", R1_DISTILL: "r1_distill_qwen", QWEN25: "qwen", DEEPSEEK_V3: "deepseek3"}
    for name, template in plain_best.items():
        report = reports[name]
        assert report.recommended == "native" and report.with_parity == ["native"], (name, report.with_parity)
        scanned = next(r for r in report.scan if r.template == template)
        assert scanned.first_failure.probe in tool_probes, (name, template, scanned.first_failure.summary())
        assert scanned.passed == scanned.total - len(tool_probes)
    for name in FIXTURES:
        detail = reports[name].detail
        assert detail.ok and detail.passed == detail.total == 12, name


def test_doctor_flags_tokenizers_transformers_misreads(reports):
    """transformers 5 reads the DeepSeek tokenizers (tokenizer_class LlamaTokenizerFast) with a SentencePiece pre-tokenizer."""
    for name, broken in [(QWEN3, False), (QWEN25, False), (R1_DISTILL, True), (DEEPSEEK_V3, True)]:
        errors = [f for f in reports[name].findings if f.topic == "tokenizer" and f.level == "error"]
        assert bool(errors) == broken, name
        assert reports[name].ok == (not broken)
    message = next(f.message for f in reports[R1_DISTILL].findings if f.topic == "tokenizer")
    assert '"tokenizer_class": "PreTrainedTokenizerFast"' in message and "LlamaTokenizer" in message


def test_documented_tokenizer_fix_makes_the_doctor_pass(r1_fixed):
    from lf_thinkplugin.templates.diagnose import diagnose

    report = diagnose(str(r1_fixed))
    assert report.ok and report.recommended == "native" and report.tokenizer_class == "TokenizersBackend"
    assert not [f for f in report.findings if f.level == "error"]


def _first(report):
    return report.detail.probes[0]


def test_lf_qwen_and_deepseek3_do_not_match_r1_distill_first_diverging_token(r1_fixed):
    from transformers import AutoTokenizer

    from lf_thinkplugin.templates.diagnose import diagnose
    from lf_thinkplugin.templates.probes import PROBES

    tok = AutoTokenizer.from_pretrained(str(r1_fixed), local_files_only=True)
    first_user = list(PROBES[0].messages[:1])
    official_prompt = tok.apply_chat_template(first_user, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
    assert official_prompt[0] == R1_BOS and official_prompt[-2:] == [R1_THINK, NL]

    qwen = diagnose(str(r1_fixed), template="qwen")
    assert not qwen.ok and not qwen.detail.ok and qwen.detail.passed == 0
    d = _first(qwen).divergence
    # qwen opens with `<|im_start|>system` text (not a token here) where the official template has the BOS
    assert (d.turn, d.part, d.position) == (1, "prompt", 0)
    assert (d.expected_id, d.expected_token) == (R1_BOS, "<｜begin▁of▁sentence｜>")
    assert d.got_id == tok.encode("<|im_start|>", add_special_tokens=False)[0] and d.got_token == "<"
    assert d.expected_context.startswith("▶<｜begin▁of▁sentence｜><｜User｜>What is 17")
    assert d.got_context.startswith("▶<|im_start|>system\n")

    deepseek3 = diagnose(str(r1_fixed), template="deepseek3")
    assert not deepseek3.ok and deepseek3.detail.passed == 0
    d = _first(deepseek3).divergence
    # deepseek3's prompt stops at `<｜Assistant｜>`: the official one goes on with `<think>\n`
    assert (d.turn, d.part, d.position) == (1, "prompt", len(official_prompt) - 2)
    assert (d.expected_id, d.expected_token, d.got_id) == (R1_THINK, "<think>", None)
    assert d.expected_context.endswith("<｜Assistant｜>▶<think>\n") and d.got_context.endswith("<｜Assistant｜>▶")
    assert "official '<think>' (151648), template ends here" in d.summary()


def test_doctor_cli_exit_status_json_and_text(r1_fixed, capsys):
    from lf_thinkplugin.cli.doctor import main

    assert main(["--model", str(r1_fixed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["recommended"] == "native"  # the tool-call probes: only the model's own template
    assert report["template"]["probes_passed"] == 12 and report["templates_with_parity"] == ["native"]
    by_name = {entry["template"]: entry for entry in report["scan"]}
    assert by_name["deepseek3"]["first_failure"]["divergence"]["expected_id"] == R1_THINK

    assert main(["--model", str(r1_fixed), "--template", "deepseekr1"]) == 1
    text = capsys.readouterr().out
    assert "probes with `deepseekr1`: 0/12" in text and "verdict: FAIL" in text
    assert "official: '" in text and "template: '" in text

    assert main(["--model", str(require_fixture(R1_DISTILL))]) == 1  # the unfixed tokenizer
    assert "[error] tokenizer" in capsys.readouterr().out


def test_doctor_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    from lf_thinkplugin.cli.doctor import main

    assert main(["--model", str(tmp_path)]) == 2
    assert "no tokenizer in" in capsys.readouterr().err
    assert main(["--model", str(require_fixture(QWEN3)), "--template", "qwen3_thnk"]) == 2
    err = capsys.readouterr().err
    assert "unknown template 'qwen3_thnk'" in err and "qwen3_think" in err
    assert main(["--model", str(tmp_path), "--model", str(tmp_path)]) == 2


def test_doctor_on_a_saved_model_folder(tiny_qwen3):
    from lf_thinkplugin.templates.diagnose import diagnose

    report = diagnose(str(tiny_qwen3))
    assert report.ok and report.recommended == "native"
    assert any(f.level == "ok" and "stops generation" in f.message for f in report.findings)


def test_think_tag_and_end_of_turn_checks(tmp_path, load_tokenizer, reports):
    import copy

    from lf_thinkplugin.templates.diagnose import check_end_of_turn, check_think_tags, diagnose
    from lf_thinkplugin.templates.parity import Scanner

    assert [f.level for f in check_think_tags(load_tokenizer(QWEN3))] == ["ok", "ok"]
    qwen25 = [f for f in reports[QWEN25].findings if f.topic == "think tags"]
    assert [f.level for f in qwen25] == ["info", "info"] and "3 tokens" in qwen25[0].message

    # gpt-oss reasons in the analysis channel: its markup's tags are checked (special by design, read from the ids
    # by vLLM's openai_gptoss parser), not `<think>`, which it never writes
    from lf_thinkplugin.templates.format import learn

    oss = load_tokenizer("gpt-oss-20b")
    tags = check_think_tags(oss, learn(oss))
    added = {t.content: i for i, t in oss.added_tokens_decoder.items()}
    assert [(f.level, f.message.split("`")[1]) for f in tags] == [("ok", "<|channel|>"), ("ok", "<|message|>"), ("ok", "<|end|>")]
    assert f"(id {added['<|channel|>']}) is a special token of the harmony format" in tags[0].message

    special = copy.deepcopy(load_tokenizer(QWEN3))
    special.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    warned = check_think_tags(special)
    assert [f.level for f in warned] == ["warn", "warn"] and "skip_special_tokens=True" in warned[0].message

    r1 = [f for f in reports[R1_DISTILL].findings if f.topic == "end of turn"]
    assert any(f.level == "warn" and "pad token == eos token" in f.message for f in r1)

    # a generation_config.json that does not stop at <|im_end|>
    folder = tmp_path / "model"
    shutil.copytree(require_fixture(QWEN3), folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 151643}))
    report = diagnose(str(folder))
    warn = [f for f in report.findings if f.topic == "end of turn" and f.level == "warn"]
    assert len(warn) == 1 and "add 151645 to eos_token_id in generation_config.json" in warn[0].message
    tok = load_tokenizer(QWEN3)
    assert not [f for f in check_end_of_turn(str(require_fixture(QWEN3)), tok, Scanner(tok), None) if f.level != "ok"]


def test_resolve_template_picks_logs_and_refuses(tmp_path, r1_fixed, capsys, load_tokenizer):
    from lf_thinkplugin.templates.diagnose import resolve_template
    from lf_thinkplugin.options import OptionsError

    assert resolve_template(str(require_fixture(QWEN3))) == "native"
    log = capsys.readouterr().out
    assert "template: auto -> native" in log and "12/12 probes" in log
    assert resolve_template(str(r1_fixed)) == "native"

    with pytest.raises(OptionsError, match="no tokenizer in"):
        resolve_template(str(tmp_path))
    # the unfixed checkpoint: an error for the checkpoint (the doctor CLI fails), but plugin runs load it
    # faithfully, so `auto` picks its template and warns with the fix
    assert resolve_template(str(require_fixture(R1_DISTILL))) == "native"
    assert '"tokenizer_class": "PreTrainedTokenizerFast"' in capsys.readouterr().out

    # a chat template no registered template matches, and that `native` cannot train (it drops the answers)
    odd = tmp_path / "odd"
    load_tokenizer(QWEN3).save_pretrained(str(odd))
    config_file = odd / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = ("{% for m in messages %}{% if m.role == 'user' %}[user]{{ m.content }}\n{% else %}[{{ m.role }}]\n"
                               "{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    config_file.write_text(json.dumps(config), encoding="utf-8")
    (odd / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(OptionsError) as err:
        resolve_template(str(odd))
    assert "templates with parity on every probe: none" in str(err.value)
    assert "thinkplugin.template: NAME" in str(err.value) and "lf-think doctor --model" in str(err.value)


def test_doctor_is_fast(reports):
    for name in FIXTURES:
        assert reports[name].seconds < 15, (name, reports[name].seconds)


def test_docs_table_is_generated_by_the_doctor(reports):
    from lf_thinkplugin.cli.doctor import FOLKLORE, render_table
    from lf_thinkplugin.templates import NAMES

    docs = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
    begin, end = "<!-- doctor-table:begin -->\n", "\n<!-- doctor-table:end -->"
    table = docs[docs.index(begin) + len(begin) : docs.index(end)]
    generated = render_table([reports[name] for name in FIXTURES], list(NAMES) + list(FOLKLORE))
    assert table.strip() == generated.strip(), "regenerate with the command in docs/templates.md"


@pytest.mark.slow
def test_template_auto_in_a_real_training_run(tiny_qwen3, tmp_path):
    from lfrun import base_config, losses, train

    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, template=None, thinkplugin={"template": "auto", "log_span_loss": False})
    proc = train(config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "template: auto -> native" in proc.stdout + proc.stderr
    assert len(losses(out)) == 4


@pytest.mark.slow
def test_template_auto_refuses_to_train_without_parity(tiny_qwen3, tmp_path):
    from lfrun import base_config, train

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen3, model)
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = "{% for m in messages %}<{{ m.role }}>{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    (model / "chat_template.jinja").unlink(missing_ok=True)
    out = tmp_path / "out"
    proc = train(base_config(model, out, template=None, thinkplugin={"template": "auto"}), tmp_path / "run")
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "found no usable template" in log and "thinkplugin.template: NAME" in log
    assert not (out / "trainer_log.jsonl").exists()


def test_docs_family_table_is_generated_by_the_doctor():
    """docs/templates.md's family table of `template: native` is `lf-think doctor --families` on the fixtures."""
    from lf_thinkplugin.demo.fixtures import fixtures_dir
    from lf_thinkplugin.templates.families import family_rows, render_families

    require_fixture(QWEN3)
    docs = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
    begin, end = "<!-- families-table:begin -->\n", "\n<!-- families-table:end -->"
    table = docs[docs.index(begin) + len(begin) : docs.index(end)]
    rows = family_rows(fixtures_dir())
    assert table.strip() == render_families(rows).strip(), "regenerate with `lf-think doctor --families` (docs/templates.md)"
    by_name = {r["template"]: r for r in rows}
    for real in ("Qwen-Qwen3-0.6B", "deepseek-ai-DeepSeek-R1", "deepseek-ai-DeepSeek-V3.1", "openai-gpt-oss-20b"):
        assert by_name[real]["tokenizer"] == "real" and by_name[real]["on"] == "12/12", by_name[real]
