"""Which engine parser or built-in renderer matches a chat template: read from the reasoning format and the
markup the template writes, never from a model name.

Names are those the engines register, read from their source:
- vLLM: `vllm/reasoning/__init__.py` (`_REASONING_PARSERS_TO_REGISTER`) and `vllm/tool_parsers/__init__.py`
  (`_TOOL_PARSERS_TO_REGISTER`), main branch as of 2026-12; vLLM 0.34.0's own parsers, run on every trained probe
  turn of Qwen3, R1-Distill-Qwen, gpt-oss and the Qwen3.5 stand-in, return the trained reasoning, answer and
  tool calls (tests/test_serving_vllm.py);
- LMDeploy 0.18 (installed by scripts/setup_integration.sh): `lmdeploy/serve/parsers/reasoning_parser/` (`default`:
  `<think>` tags, validated against the vocabulary), `lmdeploy/serve/parsers/tool_parser/` (`qwen3`, `qwen3coder`,
  `glm47`, `kimi_k2`, ...), `lmdeploy/serve/openai/api_server.py` `set_parsers` (gpt-oss: its own response parser);
- SGLang 0.5.23 (installed by scripts/setup_integration.sh): `python/sglang/srt/parser/reasoning_parser.py`
  (`ReasoningParser.DetectorMap`) and `python/sglang/srt/function_call/function_call_parser.py`
  (`ToolCallParserEnum`); SGLang's own chat-completion handler (`OpenAIServingChat`: its detokenizer, reasoning and
  function-call parsers, from the bundle's `--chat-template`, `--reasoning-parser`, `--tool-call-parser`), run on
  every trained probe turn of Qwen3, R1-Distill-Qwen, gpt-oss and the Qwen3.5 stand-in, returns the trained
  reasoning, answer and tool calls except gpt-oss's tool calls (`SGLANG_HARMONY_CALLS`; tests/test_serving_sglang.py);
- Ollama v0.33.0-rc2 (commit fb307609): `model/renderers/renderer.go` (`rendererForName`) and
  `model/parsers/parsers.go` (`ParserForName`); `server/routes.go` (`shouldUseHarmony`: a gpt-oss model whose
  TEMPLATE holds `<|start|>` and `<|end|>` is parsed as harmony); `server/prompt.go` (`renderPrompt`: a RENDERER
  replaces the TEMPLATE, a PARSER alone keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

# vLLM --reasoning-parser -> SGLang --reasoning-parser (the same split of the same markup)
_SGLANG_REASONING = {"deepseek_r1": "deepseek-r1", "qwen3": "qwen3", "glm45": "glm45", "openai_gptoss": "gpt-oss",
                     "kimi_k2": "kimi_k2", "minimax_m2_append_think": "minimax-append-think", "deepseek_v3": "deepseek-v3"}


# SGLang 0.5.23's `gpt-oss` tool-call parser (function_call/gpt_oss_detector.py `GptOssDetector`: `has_tool_call`
# looks for `<|start|>assistant<|channel|>commentary`, the call pattern is `to=NAME <|constrain|>json<|message|>`)
# does not read the call the gpt-oss chat template writes, which is what training teaches (recipient in the header,
# no `<|constrain|>`); run on the probes by tests/test_serving_sglang.py, which asserts this exact difference.
SGLANG_HARMONY_CALLS = ("tool calls: the chat template, and so training, writes a call as `<|start|>assistant "
                        "to=functions.NAME<|channel|>commentary json<|message|>ARGS<|call|>` (the recipient in the "
                        "header, no `<|constrain|>`); SGLang 0.5.23's `gpt-oss` tool-call parser reads only "
                        "`<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>ARGS`, "
                        "so such a call comes back as no tool call, its markup left in the content (streamed: dropped "
                        "or cut); reasoning and answers are split as trained. vLLM's harmony parser reads both forms")


def sglang_limits(p: Parsers, template: str) -> list[str]:
    """What SGLang's parsers named in `p` do not return as trained for this template (checked by running them)."""
    return [SGLANG_HARMONY_CALLS] if p.sglang_tools == "gpt-oss" and "assistant to=" in template else []


@dataclass(frozen=True)
class Parsers:
    vllm_reasoning: Optional[str]
    vllm_tools: Optional[str]
    sglang_reasoning: Optional[str]
    sglang_tools: Optional[str]
    lmdeploy_reasoning: Optional[str] = None
    lmdeploy_tools: Optional[str] = None
    vllm_tools_refused: Optional[str] = None  # why no vLLM tool parser although the template writes tool calls


# vLLM tool parsers that look their markers up as single tokens at start-up and refuse the tokenizer without them
# (vLLM 0.34.0 vllm/tool_parsers/deepseekv3_tool_parser.py and deepseekv31_tool_parser.py `__init__`: RuntimeError
# "could not locate tool call start/end tokens"; `ParserManager.validate_parser_tokenizer` turns it into a failed
# `vllm serve`). R1-Distill-Qwen's template writes DeepSeek's tool-call markup, but its Qwen2 vocabulary spells it
# in several tokens: checked by tests/test_serving_vllm.py with vLLM's own code.
_VLLM_TOOL_TOKENS = {"deepseek_v3": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
                     "deepseek_v31": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")}


def tool_style(template: str) -> Optional[str]:
    """How the template writes a tool call, by the markup it uses (one name per vLLM tool parser)."""
    styles = [("<|channel|>", "openai"), ("<｜tool▁calls▁begin｜>", "deepseek"), ("<|tool_calls_section_begin|>", "kimi_k2"),
              ("<minimax:tool_call>", "minimax_m2"), ("<seed:tool_call>", "seed_oss"), ("<arg_key>", "glm"),
              ("<function=", "qwen3_coder"), ("<tool_call>", "hermes")]
    return next((style for mark, style in styles if mark in template), None)


def parsers(fmt: Any, template: str, vocab: Optional[dict[str, int]] = None) -> Parsers:
    """vocab: the tokenizer's (`get_vocab()`), where known: a vLLM tool parser the vocabulary cannot start is not named."""
    reasoning = fmt.reasoning_parser  # learnt from the markup (templates/format.py)
    glm = "[gMASK]" in template
    if fmt.markup == ("<think>", "</think>"):
        if fmt.switch is not None and reasoning == "deepseek_r1":
            # the prompt opens the block, but thinking off closes it in the prompt: the answer then has no
            # `</think>`, which deepseek_r1 would read as all reasoning; qwen3 reads it as the answer
            reasoning = "qwen3"
        if glm:
            reasoning = "glm45"
        elif "<|tool_calls_section_begin|>" in template:
            reasoning = "kimi_k2"
        elif "<minimax:tool_call>" in template:
            reasoning = "minimax_m2_append_think" if fmt.prompt_opens else "minimax_m2"
        elif fmt.switch is not None and fmt.switch.name == "thinking" and "<｜Assistant｜>" in template:
            reasoning = "deepseek_v3"  # V3.1: `thinking` chooses `<think>` or `</think>` in the prompt
    style = tool_style(template) if fmt.tools or "tool_calls" in template else None
    vllm_tools = {"openai": "openai", "kimi_k2": "kimi_k2", "minimax_m2": "minimax_m2", "seed_oss": "seed_oss",
                  "qwen3_coder": "qwen3_coder", "hermes": "hermes",
                  "glm": "glm47" if "clear_thinking" in template else "glm45",
                  "deepseek": "deepseek_v31" if reasoning == "deepseek_v3" else "deepseek_v3"}.get(style or "")
    refused = None
    missing = [t for t in _VLLM_TOOL_TOKENS.get(vllm_tools or "", ()) if vocab is not None and t not in vocab]
    if missing:
        refused = (f"vLLM's `{vllm_tools}` tool parser needs {' and '.join(f'`{t}`' for t in missing)} as single tokens, "
                   "which this vocabulary lacks: `vllm serve` refuses to start with it, so no tool parser is named and "
                   "tool calls stay in the content")
        vllm_tools = None
    sglang_tools = {"openai": "gpt-oss", "kimi_k2": "kimi_k2", "minimax_m2": "minimax-m2", "qwen3_coder": "qwen3_coder",
                    "hermes": "qwen25", "glm": "glm47" if "clear_thinking" in template else "glm45",
                    "deepseek": "deepseekv31" if reasoning == "deepseek_v3" else "deepseekv3"}.get(style or "")
    sglang_reasoning = _SGLANG_REASONING.get(reasoning or "")
    if sglang_reasoning == "qwen3" and fmt.prompt_opens and fmt.switch is None:
        sglang_reasoning = "qwen3-thinking"  # the prompt opens the block: output starts inside it
    lmdeploy_reasoning = "default" if fmt.markup == ("<think>", "</think>") else None
    lmdeploy_tools = {"hermes": "qwen3", "qwen3_coder": "qwen3coder", "kimi_k2": "kimi_k2",
                      "glm": "glm47" if "clear_thinking" in template else None}.get(style or "")
    return Parsers(reasoning, vllm_tools, sglang_reasoning, sglang_tools, lmdeploy_reasoning, lmdeploy_tools, refused)


@dataclass(frozen=True)
class OllamaBuiltin:
    renderer: Optional[str]  # RENDERER: Ollama renders the prompt in Go and ignores TEMPLATE
    parser: Optional[str]  # PARSER: Ollama splits reasoning and tool calls in Go
    source: str  # where Ollama defines it


def ollama_builtin(fmt: Any, template: str) -> Optional[OllamaBuiltin]:
    """Ollama's own renderer / parser for this template's family, where Ollama has one."""
    style = tool_style(template)
    chatml = "<|im_start|>" in template and fmt.markup == ("<think>", "</think>")
    if chatml and style == "qwen3_coder" and fmt.prompt_opens:  # Qwen3.5 / 3.6 / Next: XML tool calls, prompt opens `<think>\n`
        return OllamaBuiltin("qwen3.5", "qwen3.5", "model/renderers/renderer.go `qwen3.5` (Qwen35Renderer), "
                             "model/parsers/parsers.go `qwen3.5` (Qwen35Parser)")
    if chatml and style == "hermes" and "<think>" in template:  # Qwen3 hybrid, thinking-2507, QwQ: `<think>`, `<tool_call>` JSON
        # (a template that never writes `<think>` (Qwen2.5, Qwen3-Instruct-2507) gets none: this parser reads
        # output as reasoning until `</think>`, which such a model may never write)
        return OllamaBuiltin(None, "qwen3-thinking", "model/parsers/parsers.go `qwen3-thinking` (Qwen3Parser: reasoning "
                             "first, an opening `<think>` optional; `<tool_call>` JSON)")
    if style == "openai":
        return OllamaBuiltin(None, "harmony", "model/parsers/parsers.go `harmony`; server/routes.go shouldUseHarmony")
    if fmt.switch is not None and fmt.switch.name == "thinking" and "<｜Assistant｜>" in template \
            and fmt.markup == ("<think>", "</think>"):  # DeepSeek-V3.1: `thinking` writes `<think>` or `</think>`
        return OllamaBuiltin("deepseek3.1", "deepseek3", "model/renderers/renderer.go rendererForName `deepseek3.1` "
                             "(DeepSeek3Renderer, Variant Deepseek31), model/parsers/parsers.go ParserForName "
                             "`deepseek3` (DeepSeek3Parser)")
    if "[gMASK]" in template and "clear_thinking" in template and fmt.markup == ("<think>", "</think>"):  # GLM-4.7
        return OllamaBuiltin("glm-4.7", "glm-4.7", "model/renderers/renderer.go rendererForName `glm-4.7` "
                             "(GLM47Renderer), model/parsers/parsers.go ParserForName `glm-4.7` (GLM47Parser)")
    return None
