"""Ollama: a Modelfile whose TEMPLATE (Go text/template over `.Messages`) renders the trained format.

Ollama hands a template `.System`, `.Messages` (`.Role`, `.Content`, `.Thinking`), `.Think` and
`.IsThinkSet`. For a thinking model it splits the reasoning off into `.Thinking`, so the template
decides where reasoning appears: in a later turn's history, never (Qwen3, R1) or always (keep-history);
`ollama run --think=false` is `.IsThinkSet` without `.Think`. The template is one line of actions:
Go's `{{-` trimming would eat the newlines the chat format needs, so it is never used.
"""

from __future__ import annotations

from ..templates.reasoning import split_reasoning
from .formats import ChatFormat


def _go(text: str) -> str:
    """Literal text for a Go template (only `{{` could start an action)."""
    return text.replace("{{", '{{ "{{" }}')


def template_text(fmt: ChatFormat) -> str:
    think_block = "<think>\n{{ .Thinking }}\n</think>\n\n"
    if fmt.history == "answer":  # Qwen3: reasoning only in turns after the last user message
        assistant = "{{ if gt $i $lastUser }}{{ if or $last .Thinking }}" + think_block + "{{ end }}{{ end }}{{ .Content }}"
    elif fmt.history == "keep":
        assistant = think_block + "{{ .Content }}"
    elif fmt.history == "after_think":  # R1 keeps the text after </think>: "\n\n" + answer for its own output
        assistant = '{{ if .Thinking }}{{ "\\n\\n" }}{{ end }}{{ .Content }}'
    else:
        assistant = "{{ .Content }}"
    separator = "{{ if not $last }}" + _go(fmt.separator) + "{{ end }}" if fmt.separator else ""
    nothink = "{{ if and $.IsThinkSet (not $.Think) }}" + _go(fmt.nothink) + "{{ end }}" if fmt.nothink else ""
    return (
        "{{ if .System }}" + _go(fmt.system) + "{{ .System }}" + _go(fmt.eosys) + "{{ end }}"
        "{{ $lastUser := -1 }}{{ range $i, $m := .Messages }}{{ if eq $m.Role \"user\" }}{{ $lastUser = $i }}{{ end }}{{ end }}"
        "{{ range $i, $m := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        "{{ if eq .Role \"user\" }}" + _go(fmt.user) + "{{ .Content }}" + _go(fmt.eoh)
        + "{{ if $last }}" + _go(fmt.think_opener) + nothink + "{{ end }}"
        "{{ else if eq .Role \"assistant\" }}" + assistant + _go(fmt.eoa) + separator + "{{ end }}{{ end }}"
    )


def modelfile(fmt: ChatFormat, num_ctx: int | None = None) -> str:
    template = template_text(fmt)
    if '"""' in template or '"""' in fmt.default_system:
        raise ValueError('the template contains """, which a Modelfile cannot quote')
    lines = [
        f"# Ollama Modelfile for a model fine-tuned with LF template `{fmt.template}` (written by lf-think export).",
        "# FROM: the model converted to GGUF (or a safetensors folder Ollama can import). Build: ollama create NAME -f Modelfile",
        "FROM .",
        f'TEMPLATE """{template}"""',
    ]
    if fmt.default_system:
        lines.append(f'SYSTEM """{fmt.default_system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in fmt.stop]
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def ollama_messages(fmt: ChatFormat, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation in Ollama's message fields: reasoning in `thinking` for a thinking format."""
    out = []
    for message in messages:
        if fmt.thinks and message["role"] == "assistant":
            reasoning, answer = split_reasoning(message["content"])
            out.append({"role": "assistant", "content": answer, "thinking": (reasoning or "").strip("\n")})
        else:
            out.append({"role": message["role"], "content": message["content"], "thinking": ""})
    return out


def unexpressible(fmt: ChatFormat, messages: list[dict[str, str]], adds_bos: bool) -> str | None:
    """Why this conversation (ending in a user turn) cannot render exactly from Ollama's fields, or None.

    adds_bos: the GGUF's add_bos_token (llama.cpp adds BOS to the rendered prompt), from tokenizer_config.json."""
    if fmt.bos and not adds_bos:
        return "BOS (tokenizer_config.json add_bos_token is false, so the GGUF will not add it)"
    if fmt.history != "after_think":
        return None
    for message in messages:
        if message["role"] != "assistant":
            continue
        reasoning, answer = split_reasoning(message["content"])
        if fmt.render_history(message["content"]) != ("\n\n" if reasoning else "") + answer:
            return "an earlier answer not separated from its reasoning by exactly `\\n\\n` (Ollama passes the answer alone)"
    return None
