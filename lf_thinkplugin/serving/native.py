"""The serving bundle of `template: native` (what `template: auto` picks for Qwen3, R1-Distill, gpt-oss, ...):
every engine from the one reasoning format learnt from the model's own chat template.

- vLLM / SGLang render `chat_template.jinja` themselves; the bundle names the reasoning and tool-call parsers
  that split the trained markup (engines.py; each engine's own code is run on the probes by
  tests/test_serving_vllm.py and tests/test_serving_sglang.py, and what SGLang returns otherwise is listed);
- LMDeploy renders it through its `HFChatTemplate` (`--chat-template hf`: the model folder's own template,
  chosen by name, so no registered template that matches the folder's name can take over);
- Ollama: the family's built-in RENDERER / PARSER where Ollama has one, else a TEMPLATE learnt from the
  chat template (slots.py), checked here on the probes against the training ids before anything is written.
Where an engine cannot render what was trained, SERVING.md says which conversations and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..templates.probes import SCAN_PROBES


@dataclass
class EngineReport:
    engine: str
    how: str  # one line: what serves the trained template
    parity: str  # the figure
    limits: list[str] = field(default_factory=list)


@dataclass
class NativeServing:
    files: dict[str, str]
    reports: list[EngineReport]
    slots: Any  # Slots or None
    slots_error: Optional[str]
    builtin: Any  # OllamaBuiltin or None
    parsers: Any
    stops: list[str]
    keep_bos: bool
    json_limits: list[str] = field(default_factory=list)  # what lmdeploy_chat_template.json cannot express


# Where Ollama's own code (v0.33.0-rc2) serves the trained template otherwise, found by running it on the probes:
# tests/test_serving_ollama_builtin.py (tests/ollama_builtin: Ollama's model/renderers and model/parsers, vendored).
OLLAMA_BUILTIN_LIMITS = {
    ("renderer", "qwen3.5"): [
        ("RENDERER qwen3.5, tool definitions: each function's `parameters` come in Go's struct order, `\"required\"` "
        "before `\"properties\"` (model/renderers/qwen35.go marshals api.Tool), where the chat template's `tojson` "
        "keeps the request's order (`\"properties\"` first, as the probes and OpenAI clients write it): a request with "
        "tools gets a tool block the model was not trained on"),
        ("RENDERER qwen3.5, thinking off: the tool calls made since the last user message are written back without "
        "the empty `<think>\\n\\n</think>\\n\\n` the chat template writes before them (Ollama writes a think block "
        "there only with thinking on); the generation prompt keeps it"),
    ],
    ("renderer", "deepseek3.1"): [
        ("RENDERER deepseek3.1, tool definitions: Ollama writes a `## Tools` section after the system prompt (each "
         "tool's name, description and parameters as compact JSON, then instructions on the call format; "
         "model/renderers/deepseek3.go) that DeepSeek-V3.1's chat template never writes (it ignores `tools`): every "
         "request with tools gets a prompt the model was not trained on"),
        ("RENDERER deepseek3.1, earlier tool calls: the arguments are written as Go's compact JSON (`{\"city\":\"Paris\"}`, "
         "json.Marshal), where training wrote them with spaces (`{\"city\": \"Paris\"}`)"),
        ("RENDERER deepseek3.1, thinking on: an earlier assistant turn that calls tools is written without its "
         "reasoning (`</think>`, then the calls), where the chat template writes the message's `<think>…</think>` "
         "before the calls"),
    ],
    ("renderer", "glm-4.7"): [
        ("RENDERER glm-4.7, tool definitions: each function's `parameters` come in Go's struct order, `\"required\"` "
         "before `\"properties\"` (model/renderers/glm47.go marshals api.Tool), where the chat template's `tojson` "
         "keeps the request's order (`\"properties\"` first, as the probes and OpenAI clients write it): a request with "
         "tools gets a tool block the model was not trained on"),
        ("RENDERER glm-4.7, thinking on: the reasoning of the assistant turns before the last user message is written "
         "back as `<think>…</think>` (Ollama always keeps it, as `clear_thinking: false` would), where the chat "
         "template by default, as in training, clears it to `</think>`"),
    ],
    ("parser", "deepseek3"): [
        ("PARSER deepseek3, thinking on: after a tool result the prompt does not open the thinking (it ends with the "
         "tool output) and the model writes `<think>` itself; model/parsers/deepseek3.go starts inside the thinking "
         "whenever think is on, so that `<think>` stays at the start of the thinking; strip it before sending the "
         "reasoning back"),
    ],
    ("parser", "qwen3-thinking"): [
        ("PARSER qwen3-thinking keeps the newline after `<think>` at the start of the thinking: the runner sends one "
        "token at a time (with `\"stream\": false` too), `<think>` and the newline are two tokens, and "
        "model/parsers/qwen3.go trims the whitespace after the tag only when both arrive together; strip it before "
        "sending the reasoning back"),
    ],
}


def parser_limits(parser: Optional[str], fmt: Any) -> list[str]:
    """What OLLAMA_BUILTIN_LIMITS declares for this PARSER on this template: qwen3-thinking's newline only where the
    model writes `<think>` itself (the prompt does not open the block)."""
    if parser == "qwen3-thinking" and fmt.prompt_opens:
        return []
    return OLLAMA_BUILTIN_LIMITS.get(("parser", parser), []) if parser else []


def stop_strings(tokenizer: Any, fmt: Any) -> list[str]:
    """The end-of-turn tag the template writes, the EOS, and generation_config.json's eos ids."""
    from ..templates.native import generation_stop_ids

    ids = [tokenizer.eos_token_id, *generation_stop_ids(tokenizer)]
    texts = [fmt.end_of_turn] + [tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None]
    if (fmt.opener or "").startswith("<|channel|>"):  # harmony: a tool-call turn ends with `<|call|>`, not `<|return|>`
        texts.append("<|call|>")
    return [t for t in dict.fromkeys(texts) if t]


def modelfile(fmt_name: str, slots: Any, builtin: Any, stops: list[str], keep_bos: bool, num_ctx: Optional[int]) -> str:
    from .slots import template_text

    lines = [
        "# Ollama Modelfile for a model fine-tuned with `template: native` (the model's own chat template), written by",
        "# lf-think export. FROM: the model converted to GGUF. Build: ollama create NAME -f Modelfile",
        "FROM .",
    ]
    if builtin is not None:
        lines.append(f"# Ollama's own code for this family (Ollama v0.33.0-rc2): {builtin.source}")
        if builtin.renderer:
            lines.append(f"RENDERER {builtin.renderer}")
        if builtin.parser:
            lines.append(f"PARSER {builtin.parser}")
    if builtin is None or not builtin.renderer:
        template = template_text(slots, keep_bos, declare_tags=builtin is None)
        if '"""' in template:
            raise ValueError('the template contains """, which a Modelfile cannot quote')
        lines.append(f"# TEMPLATE learnt from {fmt_name}: the text between messages, reasoning from .Thinking")
        lines.append(f'TEMPLATE """{template}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def build_native(tokenizer: Any, jinja: str, enable_thinking: Optional[bool], jinja_parity: str,
                 num_ctx: Optional[int] = None, gguf_bos: bool = False) -> NativeServing:
    """Modelfile and SERVING.md for the model's own chat template `jinja`, with each engine's figure.
    gguf_bos: tokenizer_config.json's add_bos_token (llama.cpp adds BOS to Ollama's prompt; bundle.adds_bos)."""
    from ..templates.native import NativeEncoder
    from .checks import check, ollama_render, ollama_why_not, trained_turns
    from .engines import OllamaBuiltin, ollama_builtin, parsers, sglang_limits
    from .slots import SlotsError, learn_slots

    encoder = NativeEncoder(tokenizer, jinja)
    fmt = encoder.format
    found = parsers(fmt, jinja, tokenizer.get_vocab())
    builtin = ollama_builtin(fmt, jinja)
    stops = stop_strings(tokenizer, fmt)
    slots, slots_error = None, None
    try:
        slots = learn_slots(tokenizer, jinja, fmt)
    except SlotsError as err:
        slots_error = str(err)
    keep_bos = bool(slots is not None and slots.bos and not gguf_bos)
    reports = [EngineReport("vLLM", "renders chat_template.jinja (transformers' apply_chat_template)", jinja_parity),
               EngineReport("SGLang", "renders chat_template.jinja (transformers' apply_chat_template)", jinja_parity)]
    for report, reasoning, tools in ((reports[0], found.vllm_reasoning, found.vllm_tools),
                                     (reports[1], found.sglang_reasoning, found.sglang_tools)):
        if fmt.markup and not reasoning:
            report.limits.append(f"no reasoning parser for the markup {' … '.join(fmt.markup)}: reasoning stays in the content")
        if fmt.tools and not tools and report.engine == "vLLM" and found.vllm_tools_refused:
            report.limits.append(found.vllm_tools_refused)
        elif fmt.tools and not tools:
            report.limits.append("no tool-call parser for the template's tool-call markup: calls stay in the content")
    reports[1].limits += sglang_limits(found, jinja)
    lmdeploy = EngineReport("LMDeploy", "`--chat-template hf`: its HFChatTemplate renders chat_template.jinja", jinja_parity)
    if "<|channel|>" in jinja:
        lmdeploy.parity = "differs on every request without tools (below)"
        lmdeploy.limits.append("gpt-oss: HFChatTemplate deletes `commentary, ` from the system prompt of a request "
                               "without tools (lmdeploy/model.py), a prompt the model was not trained on")
    reports.append(lmdeploy)
    files = {}
    config, json_limits = lmdeploy_json(slots, fmt, stops)
    if config is not None:
        import json

        files["lmdeploy_chat_template.json"] = json.dumps(config, ensure_ascii=False, indent=2) + "\n"
    lmdeploy.limits += [f"lmdeploy_chat_template.json: {limit}" for limit in json_limits]
    ollama = EngineReport("Ollama", "not written", "-")
    if slots is not None:
        turns = trained_turns(encoder, enable_thinking)
        bos = [tokenizer.bos_token_id] if slots.bos and gguf_bos else []
        result = check(turns, ollama_render(slots, fmt, keep_bos),
                       lambda text: bos + tokenizer.encode(text, add_special_tokens=False),
                       [tokenizer.convert_tokens_to_ids(s) for s in stops], ollama_why_not(slots))
        parser = OllamaBuiltin(None, builtin.parser, builtin.source) if builtin is not None and builtin.parser else None
        how = "TEMPLATE learnt from the chat template" + (f" + PARSER {parser.parser}" if parser else "")
        ollama = EngineReport("Ollama", how, result.figure(len(SCAN_PROBES)))
        if slots.tools_error:
            ollama.limits.append(f"tool definitions and calls: {slots.tools_error}")
        if parser is not None:
            ollama.limits += parser_limits(parser.parser, fmt)
        ollama.limits += [f for f in result.failures if "tools:" not in f]
        try:
            template_file = modelfile("the chat template", slots, parser, stops, keep_bos, num_ctx)
        except ValueError as err:  # `"""` in the template text: a Modelfile cannot quote it
            ollama.how, ollama.parity, template_file = "not written", "-", None
            ollama.limits.insert(0, str(err))
    else:
        template_file = None
        ollama.limits.append(f"an Ollama TEMPLATE cannot express it: {slots_error}")
    renderer = builtin is not None and builtin.renderer
    renderer_limits = OLLAMA_BUILTIN_LIMITS.get(("renderer", builtin.renderer), []) if renderer else []
    # The Modelfile serves the training ids: Ollama's own renderer where it does so, else the TEMPLATE that the check
    # above found exact on every probe, with the renderer's Modelfile beside it. Where neither is exact the renderer
    # comes first: a TEMPLATE that is not exact fails whole conversations (tools it cannot express: Ollama then
    # refuses requests with tools), where the renderer, Ollama's code for the family, writes every message kind and its
    # differences are declared: measured on DeepSeek-V3.1 (tests/test_serving_ollama_builtin.py), both write the
    # training ids on the same 25 of 32 trained turns, and the renderer also writes the other 7 (tool definitions,
    # calls, results) in the trained markup but for the declared differences, where the TEMPLATE serves none of them.
    # Exact means the prompt: "no stop token ends the trained turn" is about the PARAMETER stop lines, which both
    # Modelfiles share, not about the TEMPLATE.
    exact = (template_file is not None and not slots.tools_error and result.compared > 0
             and all(f.endswith(": no stop token ends the trained turn") for f in result.failures))
    template_first = renderer and exact and bool(renderer_limits)
    if template_file is not None:
        files["Modelfile.template" if renderer and not template_first else "Modelfile"] = template_file
    if renderer:  # Ollama's own renderer replaces any TEMPLATE (server/prompt.go)
        name = "Modelfile.renderer" if template_first else "Modelfile"
        files[name] = modelfile("the chat template", None, builtin, stops, keep_bos, num_ctx)
        reports.append(EngineReport(
            f"Ollama ({name})", f"RENDERER {builtin.renderer} + PARSER {builtin.parser} (Ollama's own Go code)",
            "not run by the export; the plugin's tests run it on the probes: the training ids but for the differences "
            "below", renderer_limits
            + parser_limits(builtin.parser, fmt)))
        if not template_first:
            ollama.engine = "Ollama (Modelfile.template)"
    reports.insert(len(reports) - 1 if template_first else len(reports), ollama)  # the Modelfile's row first
    return NativeServing(files, reports, slots, slots_error, builtin, found, stops, keep_bos, json_limits)


def serving_md(native: NativeServing, fmt: Any, jinja_parity: str, num_ctx: Optional[int]) -> str:
    p = native.parsers
    switch = fmt.switch
    vllm = "vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja"
    vllm += f" --reasoning-parser {p.vllm_reasoning}" if p.vllm_reasoning else ""
    vllm += f" --enable-auto-tool-choice --tool-call-parser {p.vllm_tools}" if p.vllm_tools else ""
    sglang = "python -m sglang.launch_server --model-path MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja"
    sglang += f" --reasoning-parser {p.sglang_reasoning}" if p.sglang_reasoning else ""
    sglang += f" --tool-call-parser {p.sglang_tools}" if p.sglang_tools else ""
    lines = [
        "# Serving a model trained with template `native` (the model's own chat template)",
        "",
        "Training rendered every sample with this model's own chat template; `chat_template.jinja` is that template,",
        f"verbatim. Rendered by transformers' `apply_chat_template` (vLLM, SGLang, LMDeploy's HF path): {jinja_parity}.",
        "",
        "| engine | how it serves the trained template | parity with the training ids |",
        "|---|---|---|",
    ]
    lines += [f"| {r.engine} | {r.how} | {r.parity} |" for r in native.reports]
    lines += ["", "## vLLM", "", "```", vllm, "```"]
    if switch is not None and switch.kind == "kwarg":
        off = {switch.name: switch.off}
        import json

        lines += ["", f"Thinking off for one request: `\"chat_template_kwargs\": {json.dumps(off)}`."]
    lines += ["", "## SGLang", "", "```", sglang, "```", "", "## LMDeploy", "", "```",
              "lmdeploy serve api_server MODEL_DIR --chat-template hf"
              + (f" --reasoning-parser {p.lmdeploy_reasoning}" if p.lmdeploy_reasoning else "")
              + (f" --tool-call-parser {p.lmdeploy_tools}" if p.lmdeploy_tools else ""),
              "```", "",
              *(["LMDeploy picks its gpt-oss response parser (harmony channels) from the architecture itself."]
                if (fmt.opener or "").startswith("<|channel|>") else []),
              "`--chat-template hf` makes LMDeploy 0.18 render the folder's chat template (`HFChatTemplate`) whatever the",
              "folder is called: without it LMDeploy takes the first registered template whose `match` accepts the path.",
              ("`lmdeploy_chat_template.json` (`--chat-template lmdeploy_chat_template.json`) holds the same text as "
               "`BaseChatTemplate` fields (fixed strings around each role); what it cannot express is listed below."
               if "lmdeploy_chat_template.json" in native.files else
               "No `lmdeploy_chat_template.json`: `BaseChatTemplate`'s fixed role strings cannot hold this template."),
              "", "## Ollama", ""]
    if "Modelfile" in native.files:
        lines += ["Convert the model to GGUF, point `FROM` in the Modelfile at it, then build and run:", "", "```",
                  "python llama.cpp/convert_hf_to_gguf.py MODEL_DIR --outfile model.gguf",
                  "sed -i 's|^FROM .*|FROM ./model.gguf|' Modelfile", "ollama create my-model -f Modelfile",
                  "ollama run my-model" + (" --think=false   # thinking off" if switch is not None else ""), "```", ""]
        if "Modelfile.renderer" in native.files:
            stopless = any("no stop token ends" in limit for r in native.reports for limit in r.limits)
            lines.append("The Modelfile holds the TEMPLATE learnt from the chat template, exact on every probe (the table "
                         "above" + ("; a trained turn that no stop token ends, listed below, is the same with either "
                                    "file: both hold the same PARAMETER stop lines" if stopless else "")
                         + f"), with Ollama's own parser for this family ({native.builtin.source}). "
                         f"`Modelfile.renderer` names Ollama's own renderer `{native.builtin.renderer}` instead (Ollama "
                         "then ignores any TEMPLATE): the plugin's tests run it (tests/test_serving_ollama_builtin.py, "
                         "Ollama v0.33.0-rc2) and it writes other ids than training in the cases listed below, so it "
                         "is the alternative, not the default. A request without `think` thinks with either (Ollama "
                         "turns it on for a model whose parser thinks), whatever the chat template's own default.")
        elif native.builtin is not None and native.builtin.renderer:
            lines.append(f"The Modelfile names Ollama's own renderer and parser for this family ({native.builtin.source}); "
                         "Ollama then ignores any TEMPLATE. The export does not run Ollama's Go code; the plugin's "
                         "tests run it (tests/test_serving_ollama_builtin.py, Ollama v0.33.0-rc2): its renderer writes "
                         "the training ids before every trained turn of the probes but for the differences listed "
                         "below, and its parser returns the trained reasoning, answer and tool calls. A request "
                         "without `think` thinks (Ollama turns it on for a model whose parser thinks), whatever the "
                         "chat template's own default. "
                         "`Modelfile.template` is the alternative the export checks: the TEMPLATE learnt "
                         "from the chat template, with the figure in the table above" + (
                             "." if "Modelfile.template" in native.files else " (not written: see below)."))
        else:
            lines.append("The TEMPLATE writes the chat template's own text between messages; Ollama passes earlier "
                         "reasoning as `.Thinking` and the TEMPLATE writes it back in the trained markup.")
            if native.builtin is None:
                lines.append("Without a PARSER, Ollama may prefer the GGUF's own Jinja over the TEMPLATE when it finds more "
                             "capabilities there; `OLLAMA_GO_TEMPLATE=1` makes it use the TEMPLATE.")
        lines.append(f"PARAMETER stop: {', '.join(f'`{s}`' for s in native.stops)}. " + (
            f"num_ctx: {num_ctx}." if num_ctx else "No num_ctx: Ollama's default applies (set `PARAMETER num_ctx N` for long reasoning)."))
    else:
        lines.append("No Modelfile: an Ollama TEMPLATE cannot express this chat template.")
    for report in native.reports:
        if report.limits:
            lines += ["", f"What {report.engine} does not serve as trained:"] + [f"- {limit}" for limit in report.limits[:12]]
    return "\n".join(lines) + "\n"


def lmdeploy_json(slots: Any, fmt: Any, stops: list[str]) -> tuple[Optional[dict], list[str]]:
    """`lmdeploy_chat_template.json` from the learnt pieces, where LMDeploy's `BaseChatTemplate` (fixed strings
    around each role, the generation prompt = `assistant`) can hold them, and what it cannot express; (None,
    [why]) where it cannot hold them at all."""
    from .slots import SYSTEM, _common_prefix

    if slots is None:
        return None, ["the chat template's pieces could not be learnt"]
    head, head_s = slots.heads[""], slots.heads["s"]
    head_s = ("",) + head_s if head_s[:1] == (SYSTEM,) else head_s  # R1: the system text comes first
    if len(head) != 1 or len(head_s) != 3 or head_s[1] != SYSTEM:
        return None, ["the head before the first user message is not a fixed string (LMDeploy has no field for it)"]
    prefix = _common_prefix(head[0], head_s[0], None)  # GLM's `[gMASK]<sop>`: written before any message
    while prefix and not head[0][len(prefix):].startswith("<"):  # whole tags only: Qwen's `<|im_start|>` opens both roles
        prefix = prefix[: prefix.rfind("<")] if "<" in prefix else ""
    user, sys_pre = head[0][len(prefix):], head_s[0][len(prefix):]
    if not head_s[2].endswith(user):
        return None, ["the system block is not followed by the user prefix"]
    sys_post = head_s[2][: len(head_s[2]) - len(user)]
    gen, hist = slots.trans["user>gen:on"], slots.trans["user>assistant"] + slots.answer["E"]
    after = slots.trans["assistant>user"]
    if not after.endswith(user):
        return None, ["an earlier answer's end is not followed by the user prefix"]
    eoh = _common_prefix(gen, hist, fmt.opener)
    assistant = gen[len(eoh):]
    # `system + meta_instruction + eosys` opens a conversation without a system message: the prefix alone there;
    # with a system message `system + text + eosys`, exact only where the template wraps it in nothing
    config = {"model_name": "lf-thinkplugin-native", "system": prefix, "meta_instruction": "", "eosys": "", "user": user,
              "eoh": eoh, "assistant": assistant, "eoa": after[: len(after) - len(user)], "separator": "",
              "capability": "chat", "stop_words": stops}
    limits = ["tool definitions, calls and results (BaseChatTemplate renders message content only)"]
    if sys_pre or sys_post:
        limits.append("system messages render as bare text (the JSON cannot both omit the system block when there is "
                      "no system message and wrap one when there is)")
    if slots.bos:
        limits.append("the BOS token (the JSON has no field for it; LMDeploy adds one only where the tokenizer does)")
    if slots.switch:
        limits.append("no thinking switch: the file renders the thinking-on generation prompt")
    if gen != hist:
        limits.append(f"multi-turn conversations: the JSON opens earlier answers with the generation prompt's "
                      f"{assistant!r} too, where the chat template writes {hist[len(eoh):]!r}")
    return config, limits
