"""The bundle's SGLang command checked with SGLang's own code: for Qwen3, R1-Distill-Qwen, gpt-oss and a Qwen3.5
stand-in (the Qwen3.5 chat template on the Qwen3 tokenizer), each trained turn of the probes (LF's `native` encoding,
what `template: auto` trains) is handed, as the token ids the model would generate, to SGLang 0.5.23's OpenAI
chat-completion handler (`OpenAIServingChat.handle_request`, built from the `--chat-template`, `--reasoning-parser` and
`--tool-call-parser` the bundle's SERVING.md names; SGLang's detokenizer, reasoning parser and function-call parser),
whole and streamed (tests/sglang_parse.py, in a subprocess: SGLang lives in .engines/sglang, installed by
scripts/setup_integration.sh). The reasoning, answer and tool calls that come back must be the probe's own (the
hand-written conversation), never what the plugin's code says they are. The oracle and the folders are
tests/test_serving_vllm.py's (serving_support.probe_expected, engine_got, folder_for)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from serving_support import engine_got, export, folder_for, probe_expected, require_sglang, sglang_parse, tokenizer_of

from lf_thinkplugin.demo.fixtures import QWEN3, R1_DISTILL

GPT_OSS = "gpt-oss-20b"
FAMILIES = {"qwen3": (QWEN3, None), "r1_distill_qwen": (R1_DISTILL, None), "gpt_oss": (GPT_OSS, None),
            "qwen35_standin": (QWEN3, "Qwen-Qwen3.5-4B.jinja")}
# trained turns checked (thinking on + off) and, of them, tool-call turns: the vLLM test's counts (the same probes)
COUNTS = {"qwen3": (25, 1), "r1_distill_qwen": (12, 0), "gpt_oss": (14, 2), "qwen35_standin": (27, 3)}
SERVED = {"qwen3": ("qwen3", "qwen25"), "r1_distill_qwen": ("deepseek-r1", "deepseekv3"), "gpt_oss": ("gpt-oss", "gpt-oss"),
          "qwen35_standin": ("qwen3", "qwen3_coder")}
# gpt-oss's tool calls, which SGLang's `gpt-oss` tool-call parser does not read in the form the chat template writes
# (engines.SGLANG_HARMONY_CALLS, declared in SERVING.md): (probe, turn) -> (content, streamed content) SGLang returns,
# with no tool call either way; the reasoning still comes back as trained
GPT_OSS_CALLS = {
    ("tool_call_chain", 1): ('<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>',
                             ""),
    ("tool_call_after_chat", 3): (' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Rome"}<|call|>',
                                  " to=functions.get_weather to=functions.get_weather"),
}
# mutation: a parser the bundle does not name, in place of the served one, must make the comparison fail
WRONG = {"qwen3": ("deepseek-r1", "qwen25"), "qwen35_standin": ("qwen3", "qwen25")}


def _served_parsers(folder: Path) -> tuple[str | None, str | None]:
    """(--reasoning-parser, --tool-call-parser) of the `python -m sglang.launch_server` command in SERVING.md."""
    command = next(line for line in (folder / "SERVING.md").read_text(encoding="utf-8").splitlines()
                   if line.startswith("python -m sglang.launch_server "))
    assert "--chat-template MODEL_DIR/chat_template.jinja" in command, command
    reasoning = re.search(r"--reasoning-parser (\S+)", command)
    tools = re.search(r"--tool-call-parser (\S+)", command)
    return reasoning and reasoning.group(1), tools and tools.group(1)


def _wrong(turn, result) -> str | None:
    expected = probe_expected(turn)
    whole = engine_got(result["reasoning"], result["content"], result["tool_calls"])
    stream = engine_got(result["stream"]["reasoning"], result["stream"]["content"], result["stream"]["tool_calls"])
    if whole == expected and stream == expected:
        return None
    return (f"{turn.probe.name}[{turn.index}] thinking={turn.thinking}: expected {expected!r}, SGLang {whole!r}, "
            f"streamed {stream!r} (text {result['text']!r})")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """{family: (served parsers, [(turn, SGLang's result)], {wrong parsers: [(turn, result)]}, SERVING.md)}, one
    SGLang process for all."""
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.serving.native import stop_strings
    from lf_thinkplugin.templates.native import NativeEncoder

    require_sglang()
    root = tmp_path_factory.mktemp("sglang")
    jobs, owners, served, serving_md = [], [], {}, {}
    for family in FAMILIES:
        folder = folder_for(family, FAMILIES, root)
        assert export("--template", "native", "--tokenizer", str(folder), "--out", str(folder)) == 0, family
        served[family] = _served_parsers(folder)
        serving_md[family] = (folder / "SERVING.md").read_text(encoding="utf-8")
        tok = tokenizer_of(folder)
        encoder = NativeEncoder(tok)
        switch = encoder.format.switch
        stops = {tok.convert_tokens_to_ids(s) for s in stop_strings(tok, encoder.format)}
        for parsers in (served[family], *([WRONG[family]] if family in WRONG else [])):
            for thinking in (True, False) if switch is not None else (True,):
                kwargs = {switch.name: switch.on if thinking else switch.off} if switch is not None and switch.kind == "kwarg" else {}
                for turn in trained_turns(encoder, thinking):
                    stop = next(k for k, i in enumerate(turn.target_ids) if i in stops)  # the model stops at its first stop
                    tools = [{"type": "function", "function": f} for f in json.loads(turn.probe.tools)] if turn.probe.tools else None
                    jobs.append({"tokenizer": str(folder), "reasoning_parser": parsers[0], "tool_parser": parsers[1],
                                 "tools": tools, "chat_template_kwargs": kwargs, "prompt_ids": turn.prompt_ids,
                                 "output_ids": turn.target_ids[: stop + 1]})
                    owners.append((family, parsers, turn))
    results = sglang_parse(jobs)
    out = {family: (served[family], [], {}, serving_md[family]) for family in FAMILIES}
    for (family, parsers, turn), result in zip(owners, results, strict=True):
        if parsers == served[family]:
            out[family][1].append((turn, result))
        else:
            out[family][2].setdefault(parsers, []).append((turn, result))
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sglang_splits_every_trained_turn_as_trained(parsed, family):
    from lf_thinkplugin.serving.engines import SGLANG_HARMONY_CALLS

    served, results, _, serving_md = parsed[family]
    assert served == SERVED[family]
    for turn, result in results:
        assert "error" not in result, f"{turn.probe.name}[{turn.index}]: {result.get('error')} {result.get('traceback', '')}"
    # gpt-oss: the tool-call turns differ exactly as SERVING.md declares; every other turn is the probe's own
    declared = {(t.probe.name, t.index): (t, r) for t, r in results if family == "gpt_oss" and probe_expected(t)[2]}
    assert (SGLANG_HARMONY_CALLS in serving_md) == (family == "gpt_oss")
    assert set(declared) == (set(GPT_OSS_CALLS) if family == "gpt_oss" else set())
    for key, (turn, result) in declared.items():
        reasoning = probe_expected(turn)[0]
        assert engine_got(result["reasoning"], result["content"], result["tool_calls"]) == (reasoning, GPT_OSS_CALLS[key][0], [])
        assert engine_got(result["stream"]["reasoning"], result["stream"]["content"], result["stream"]["tool_calls"]) == (
            reasoning, GPT_OSS_CALLS[key][1], [])
    wrong = [w for w in (_wrong(turn, result) for turn, result in results
                         if (turn.probe.name, turn.index) not in declared) if w]
    assert not wrong, "\n".join(wrong)
    assert (len(results), sum(bool(probe_expected(t)[2]) for t, _ in results)) == COUNTS[family]
    if family != "r1_distill_qwen":  # thinking on: some turn comes back with reasoning, so the split is exercised
        assert any(probe_expected(t)[0] and r["reasoning"] for t, r in results)


def test_a_wrong_parser_fails(parsed):
    """The comparison catches a parser the bundle does not name: Qwen3 served with `deepseek-r1` (which reads output
    as reasoning until `</think>`) loses every thinking-off answer to the reasoning; the Qwen3.5 stand-in with `qwen25`
    (Hermes JSON) in place of `qwen3_coder` returns none of its XML tool calls."""
    _, _, qwen3, _ = parsed["qwen3"]
    off = [(t, r) for t, r in qwen3[WRONG["qwen3"]] if not t.thinking]
    assert off and all(_wrong(t, r) for t, r in off)
    assert all(r["reasoning"] and not r["content"] for t, r in off)
    _, _, standin, _ = parsed["qwen35_standin"]
    calls = [(t, r) for t, r in standin[WRONG["qwen35_standin"]] if probe_expected(t)[2]]
    assert len(calls) == COUNTS["qwen35_standin"][1] and all(_wrong(t, r) for t, r in calls)
    assert all(not r["tool_calls"] and not r["stream"]["tool_calls"] for t, r in calls)
