"""SERVING.md: the exact commands for each engine, and what each file cannot express."""

from __future__ import annotations

from .formats import ChatFormat


def serving_md(fmt: ChatFormat, parity: str, lmdeploy_limits: list[str], num_ctx: int | None) -> str:
    name = fmt.template
    parser = f" --reasoning-parser {fmt.reasoning_parser}" if fmt.reasoning_parser else ""
    lines = [
        f"# Serving a model trained with LF template `{name}`",
        "",
        (
            "Written by `lf-think export`. Each file renders the prompt tokens the model was trained on, except "
            "where a limit is listed below."
        ),
        f"`chat_template.jinja`, rendered by transformers' `apply_chat_template` (what vLLM does): {parity}.",
        "If this folder is the training output_dir, the saved tokenizer already carries this chat template.",
        "",
        "## vLLM",
        "",
        "```",
        f"vllm serve MODEL_DIR --chat-template chat_template.jinja{parser}",
        "```",
    ]
    if fmt.nothink:
        lines += [
            "",
            "Thinking is on by default. To turn it off for one request (Qwen3's `enable_thinking`):",
            "",
            "```",
            'curl localhost:8000/v1/chat/completions -H "Content-Type: application/json" -d \'{"model": "MODEL_DIR",',
            '  "messages": [{"role": "user", "content": "Hi"}], "chat_template_kwargs": {"enable_thinking": false}}\'',
            "```",
        ]
    elif fmt.thinks:
        lines += ["", "The generation prompt always opens the think block; `enable_thinking` has no effect."]
    lines += [
        "",
        "## Ollama",
        "",
        "Convert the model to GGUF, point `FROM` in the Modelfile at it, then build and run:",
        "",
        "```",
        "python llama.cpp/convert_hf_to_gguf.py MODEL_DIR --outfile model.gguf",
        "sed -i 's|^FROM .*|FROM ./model.gguf|' Modelfile",
        "ollama create my-model -f Modelfile",
        "ollama run my-model" + (" --think=false   # thinking off" if fmt.nothink else ""),
        "```",
        "",
        "The TEMPLATE renders from Ollama's message fields: `.Content`, and `.Thinking` for the reasoning "
        "Ollama splits off a thinking model's output." if fmt.thinks else "The TEMPLATE renders `.System` and `.Messages`.",
        f"PARAMETER stop: {', '.join(f'`{s}`' for s in fmt.stop)}. "
        + (f"num_ctx: {num_ctx}." if num_ctx else "No num_ctx: Ollama's default applies (set `PARAMETER num_ctx N` for long reasoning)."),
        "",
        "## LMDeploy",
        "",
        "Recommended: LMDeploy renders the model folder's own chat template (this `chat_template.jinja`):",
        "",
        "```",
        "lmdeploy serve api_server MODEL_DIR" + (" --reasoning-parser default" if fmt.thinks else ""),
        "```",
    ]
    if fmt.thinks:
        lines.append(
            "(`--reasoning-parser default` is LMDeploy 0.18's name; older versions: "
            + ("`qwen-qwq`" if fmt.nothink else "`deepseek-r1`") + ".)"
        )
    lines += [
        "",
        "Or with the explicit template file:",
        "",
        "```",
        "lmdeploy serve api_server MODEL_DIR --chat-template lmdeploy_chat_template.json",
        "```",
        "",
    ]
    if lmdeploy_limits:
        lines.append("`lmdeploy_chat_template.json` cannot express:")
        lines += [f"- {limit}" for limit in lmdeploy_limits]
    else:
        lines.append("`lmdeploy_chat_template.json` expresses this template fully.")
    return "\n".join(lines) + "\n"


def native_serving_md(style: dict, parity: str) -> str:
    """SERVING.md for `template: native`: the model's own Jinja is the only faithful form."""
    switch = style.get("switch", "none")
    lines = [
        "# Serving a model trained with template `native` (the model's own chat template)",
        "",
        "Training rendered every sample with this model's own chat template, so `chat_template.jinja` here is",
        f"that template, verbatim. Rendered by transformers' `apply_chat_template` (what vLLM does): {parity}.",
        "",
        "## vLLM",
        "",
        "```",
        "vllm serve MODEL_DIR --chat-template chat_template.jinja",
        "```",
    ]
    if switch != "none":
        lines += ["", f"Thinking switch: pass `\"chat_template_kwargs\": {{\"{switch}\": false}}` in a request to turn it off."]
    lines += [
        "",
        "## Ollama and LMDeploy: not written",
        "",
        "No `Modelfile` or `lmdeploy_chat_template.json` is written for `native`: a Go template or LMDeploy's",
        "role-prefix JSON cannot express a Jinja chat template in general (its history rule, tool-call layout and",
        f"thinking switch; here: reasoning {style.get('reasoning')}, switch {switch}, last-turn reasoning "
        f"{style.get('last-turn reasoning')}), and a near-miss would serve other tokens than were trained.",
        "Serve with an engine that renders the Jinja itself (vLLM, SGLang, transformers), or train with a named",
        "template that `lf-think export` can write for Ollama / LMDeploy (`lf-think doctor` lists those with parity).",
    ]
    return "\n".join(lines) + "\n"
