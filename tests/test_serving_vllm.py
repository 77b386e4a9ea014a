"""The bundle's vLLM command checked with vLLM's own code: for Qwen3, R1-Distill-Qwen, gpt-oss and a Qwen3.5 stand-in
(the Qwen3.5 chat template on the Qwen3 tokenizer), each trained turn of the probes (LF's `native` encoding, what
`template: auto` trains) is decoded as the model would generate it, and vLLM 0.34.0's parsers, the ones the
bundle's SERVING.md names (`--reasoning-parser`, `--tool-call-parser`), split it as `vllm serve` does for a chat
completion, whole and streamed (tests/vllm_parse.py, in a subprocess: vLLM lives in .engines/vllm, installed by
scripts/setup_integration.sh). The reasoning, answer and tool calls that come back must be the probe's own (the
hand-written conversation), never what the plugin's code says they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import require_fixture
from serving_support import export, model_dir, require_vllm, tokenizer_of, vllm_parse

from lf_thinkplugin.demo.fixtures import QWEN3, R1_DISTILL

GPT_OSS = "gpt-oss-20b"
# family -> (tokenizer fixture, chat template file from chat_templates/ or None for the tokenizer's own)
FAMILIES = {"qwen3": (QWEN3, None), "r1_distill_qwen": (R1_DISTILL, None), "gpt_oss": (GPT_OSS, None),
            "qwen35_standin": (QWEN3, "Qwen-Qwen3.5-4B.jinja")}
# trained turns checked (thinking on + off) and, of them, tool-call turns; R1-Distill trains no tool-call turn of
# the probes (its template renders no tool definitions), and its bundle names no vLLM tool parser (engines.py)
COUNTS = {"qwen3": (25, 1), "r1_distill_qwen": (12, 0), "gpt_oss": (14, 2), "qwen35_standin": (27, 3)}


def _folder(family: str, root: Path) -> Path:
    """A trained model's folder as far as serving reads it: the fixture tokenizer (and, for the stand-in, the family's
    chat template); gpt-oss's config.json names its architecture, from which vLLM picks its harmony parser."""
    fixture, template = FAMILIES[family]
    folder = model_dir(fixture, root / family)
    if family == "gpt_oss" and not (folder / "config.json").is_file():
        (folder / "config.json").write_text(json.dumps({"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss"}))
    if template:
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["chat_template"] = (require_fixture(fixture).parent / "chat_templates" / template).read_text(encoding="utf-8")
        config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return folder


def _served_parsers(folder: Path) -> tuple[str | None, str | None]:
    """(--reasoning-parser, --tool-call-parser) of the `vllm serve` command in the bundle's SERVING.md."""
    command = next(line for line in (folder / "SERVING.md").read_text(encoding="utf-8").splitlines()
                   if line.startswith("vllm serve "))
    reasoning = re.search(r"--reasoning-parser (\S+)", command)
    tools = re.search(r"--tool-call-parser (\S+)", command)
    return reasoning and reasoning.group(1), tools and tools.group(1)


def _expected(turn) -> tuple[str, str, list[dict]]:
    """(reasoning, answer, tool calls) of a trained turn, read from the probe's hand-written message: reasoning
    inline in `<think>…</think>` (LF's dataset layout), a `function` turn's answer the call JSON; thinking off
    trains no reasoning."""
    message = turn.probe.messages[turn.index]
    found = re.fullmatch(r"<think>(.*?)</think>(.*)", message["content"], re.S)
    reasoning, answer = (found.group(1), found.group(2)) if found else ("", message["content"])
    calls = []
    if message["role"] == "function":
        call = json.loads(answer)
        calls, answer = [{"name": call["name"], "arguments": call["arguments"]}], ""
    return (reasoning if turn.thinking else "").strip("\n"), answer.strip("\n"), calls


def _got(reasoning, content, calls) -> tuple[str, str, list[dict]]:
    # vLLM returns the text between the markers verbatim, newlines included: the chat template writes the probe's
    # reasoning and answer with its own newlines around the markup (Qwen3: `<think>\n` + reasoning + `\n</think>\n\n`
    # + answer), which both sides shed here; nothing else is normalised (None, vLLM's "no reasoning", is "").
    return ((reasoning or "").strip("\n"), (content or "").strip("\n"),
            [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """{family: (served parsers, [(turn, vLLM's whole result, vLLM's streamed result)])}, one vLLM process for all."""
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.serving.native import stop_strings
    from lf_thinkplugin.templates.native import NativeEncoder

    require_vllm()
    root = tmp_path_factory.mktemp("vllm")
    jobs, owners, served = [], [], {}
    for family in FAMILIES:
        folder = _folder(family, root)
        assert export("--template", "native", "--tokenizer", str(folder), "--out", str(folder)) == 0, family
        reasoning_parser, tool_parser = served[family] = _served_parsers(folder)
        tok = tokenizer_of(folder)
        encoder = NativeEncoder(tok)
        switch = encoder.format.switch
        stops = {tok.convert_tokens_to_ids(s) for s in stop_strings(tok, encoder.format)}
        config = folder / "config.json"
        harmony = config.is_file() and json.loads(config.read_text()).get("model_type") == "gpt_oss"  # vLLM's own test
        for thinking in (True, False) if switch is not None else (True,):
            kwargs = {switch.name: switch.on if thinking else switch.off} if switch is not None and switch.kind == "kwarg" else {}
            for turn in trained_turns(encoder, thinking):
                stop = next(k for k, i in enumerate(turn.target_ids) if i in stops)  # the model stops at its first stop
                tools = [{"type": "function", "function": f} for f in json.loads(turn.probe.tools)] if turn.probe.tools else None
                jobs.append({"tokenizer": str(folder), "reasoning_parser": reasoning_parser, "tool_parser": tool_parser,
                             "harmony": harmony, "tools": tools, "chat_template_kwargs": kwargs,
                             "prompt_ids": turn.prompt_ids, "output_ids": turn.target_ids[: stop + 1]})
                owners.append((family, turn))
    # openai-harmony (vLLM's gpt-oss parser) reads o200k_base from the fixture instead of downloading it
    results = vllm_parse(jobs, {"TIKTOKEN_ENCODINGS_BASE": str(require_fixture(GPT_OSS) / "tiktoken")})
    out = {family: (served[family], []) for family in FAMILIES}
    for (family, turn), result in zip(owners, results, strict=True):
        out[family][1].append((turn, result))
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_vllm_splits_every_trained_turn_as_trained(parsed, family):
    served, results = parsed[family]
    assert served == {"qwen3": ("qwen3", "hermes"), "r1_distill_qwen": ("deepseek_r1", None),
                      "gpt_oss": ("openai_gptoss", "openai"), "qwen35_standin": ("qwen3", "qwen3_coder")}[family]
    wrong = []
    for turn, result in results:
        name = f"{turn.probe.name}[{turn.index}] thinking={turn.thinking}"
        assert "error" not in result, f"{name}: {result.get('error')}"
        expected = _expected(turn)
        whole = _got(result["reasoning"], result["content"], result["tool_calls"])
        stream = _got(result["stream"]["reasoning"], result["stream"]["content"], result["stream"]["tool_calls"])
        if whole != expected or stream != expected:
            wrong.append(f"{name}: expected {expected!r}, vLLM {whole!r}, streamed {stream!r} (text {result['text']!r})")
    assert not wrong, "\n".join(wrong)
    assert (len(results), sum(bool(_expected(t)[2]) for t, _ in results)) == COUNTS[family]
    if family != "r1_distill_qwen":  # thinking on: some turn comes back with reasoning, so the split is exercised
        assert any(_expected(t)[0] and r["reasoning"] for t, r in results)


def test_the_oracle_reads_the_probe_not_the_plugin():
    """_expected is the probe's text: reasoning, answer and call straight from the hand-written messages."""
    from lf_thinkplugin.serving.checks import Turn
    from lf_thinkplugin.templates.probes import probe

    chain = probe("tool_call_chain")
    assert _expected(Turn(chain, 1, True, [], [])) == ("I need the tool.", "", [{"name": "get_weather",
                                                                                  "arguments": {"city": "Paris"}}])
    assert _expected(Turn(chain, 3, False, [], [])) == ("", "It is 21 degrees in Paris.", [])
    assert _expected(Turn(probe("compact_think_tags"), 1, True, [], [])) == ("10 / 2 = 5.", "Yes, 10 is even.", [])
    assert _got("\n17 * 3 = 51.\n", "\n\n17 * 3 = 51.", []) == ("17 * 3 = 51.", "17 * 3 = 51.", [])
