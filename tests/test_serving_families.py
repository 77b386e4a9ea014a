"""Every fixture chat template (tokenizer folders and chat_templates/, stand-ins where no tokenizer exists): the
Ollama TEMPLATE learnt from it, executed by Go's text/template (tests/ollama_render), writes exactly what the
Python mirror writes, which is what the export checks and the docs/serving.md table counts; and the table
renders and is spliced between its markers."""

from __future__ import annotations

import pytest
from conftest import require_fixture
from serving_support import render_ollama

from lf_thinkplugin.demo.fixtures import QWEN3


@pytest.fixture(scope="module")
def templates():
    from lf_thinkplugin.serving.table import fixture_templates

    return fixture_templates(require_fixture(QWEN3).parent)


def test_every_fixture_family_is_covered(templates):
    labels = {label for label, *_ in templates}
    assert len(templates) == 23  # 7 tokenizer folders, 24 chat_templates/ files: 23 distinct templates
    assert {"Qwen3-0.6B", "DeepSeek-R1-Distill-Qwen-1.5B", "gpt-oss-20b", "Qwen-Qwen3.5-4B", "zai-org-GLM-4.5",
            "moonshotai-Kimi-K2-Thinking", "MiniMaxAI-MiniMax-M2", "HuggingFaceTB-SmolLM3-3B"} <= labels


def test_go_runs_every_learnt_template_as_the_python_mirror(templates, go_renderer):
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.serving.slots import SlotsError, learn_slots, ollama_messages, render, template_text
    from lf_thinkplugin.templates.native import NativeEncoder, _tools

    learnt, refused = [], {}
    for label, _, tok, template in templates:
        encoder = NativeEncoder(tok)
        try:
            slots = learn_slots(tok, template, encoder.format)
        except SlotsError as err:
            refused[label] = str(err)
            continue
        jobs = []
        for mode in (True, False) if encoder.format.switch is not None else (True,):
            for turn in trained_turns(encoder, mode):
                system = [{"role": "system", "content": turn.probe.system}] if turn.probe.system else []
                jobs.append({"messages": system + ollama_messages(turn.before, encoder.format, turn.thinking),
                             "tools": _tools(turn.probe.tools) if slots.tools_error is None else None,
                             "think": turn.thinking, "is_think_set": True})
        for keep_bos in (False, True) if slots.bos else (False,):
            rendered = render_ollama(go_renderer, template_text(slots, keep_bos), jobs)
            for text, job in zip(rendered, jobs, strict=True):
                assert text == render(slots, job["messages"], job["tools"], job["think"], True, keep_bos), label
        learnt.append(label)
    assert refused == {"HuggingFaceTB-SmolLM3-3B": "thinking off changes the text before the generation prompt"}
    assert len(learnt) == 22


def test_table_is_spliced_between_its_markers(tmp_path, capsys):
    from lf_thinkplugin.serving import main
    from lf_thinkplugin.serving.table import BEGIN, END, render_table, write_table

    rows = [{"template": "T", "tokenizer": "real", "vllm": ("`qwen3` / `hermes`", "on 12/12"),
             "sglang": ("`qwen3` / `qwen25`", "on 12/12"), "lmdeploy": ("`--chat-template hf`", "on 12/12"),
             "ollama": ("TEMPLATE", "on 12/12")}, {"template": "E", "tokenizer": "real", "error": "no chat template"}]
    table = render_table(rows)
    assert table.splitlines()[2] == ("| `T` | real | `qwen3` / `hermes` | `qwen3` / `qwen25` | on 12/12 | `--chat-template hf` "
                                     "| on 12/12 | TEMPLATE | on 12/12 |")
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\nafter\n", encoding="utf-8")
    write_table(doc, table)
    assert doc.read_text(encoding="utf-8") == f"intro\n{BEGIN}\n{table}\n{END}\nafter\n"
    assert main(["--table", str(tmp_path)]) == 2  # not a fixtures folder: exit 2, the reason on stderr
    assert "not a fixtures folder" in capsys.readouterr().err
    (tmp_path / "chat_templates").mkdir()
    assert main(["--table", str(tmp_path), "--write", str(tmp_path / "missing.md")]) == 2
    assert "--write" in capsys.readouterr().err and not (tmp_path / "missing.md").exists()
    assert main([]) == 2 and "name --out" in capsys.readouterr().err  # neither --out nor --table


def test_docs_table_is_the_generated_one():
    """docs/serving.md holds the table `lf-think export --table` writes (rows as generated; regenerate with
    `lf-think export --table ../shared/fixtures/tokenizers --write docs/serving.md`)."""
    from conftest import REPO

    from lf_thinkplugin.serving.table import BEGIN, END

    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()
    assert table[0].startswith("| chat template | tokenizer | vLLM: reasoning / tool parser |") and len(table) == 2 + 23
    rows = {line.split(" | ")[0].strip("| `"): line for line in table[2:]}
    assert "| `--chat-template hf`; `default` / `qwen3` | hf on 12/12 · off 12/12; JSON on 7/12 · off 0/12 | " \
        "TEMPLATE + PARSER `qwen3-thinking` (Ollama's Go parser, run on the probes: the trained split; streamed, the " \
        "thinking keeps the newline after `<think>`) | on 12/12 · off 12/12 |" in rows["Qwen3-0.6B"]
    assert "| hf on 2/12; no JSON |" in rows["gpt-oss-20b"]  # LMDeploy's rewrite of gpt-oss's system prompt
    assert "| TEMPLATE + PARSER `harmony` (Ollama's Go parser, run on the probes: the trained split);" in rows["gpt-oss-20b"] \
        and rows["gpt-oss-20b"].endswith("| on 10/12 |")
