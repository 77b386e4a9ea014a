"""vLLM's own response parsing of generated token ids, as `vllm serve` does it for a chat completion; run as a
script by tests/test_serving_vllm.py in a subprocess whose PYTHONPATH holds `.engines/vllm` (vLLM 0.34.0 and the
pure-Python part of its import chain, installed with --no-deps by scripts/setup_integration.sh).

stdin: {"jobs": [{"tokenizer", "reasoning_parser", "tool_parser", "harmony", "tools", "chat_template_kwargs",
"prompt_ids", "output_ids"}]}; stdout: one {"text", "reasoning", "content", "tool_calls", "stream"} per job.

The path mirrored is vllm/entrypoints/openai/chat_completion/serving.py (0.34.0):
- `OpenAIServingChat.__init__`: `ParserManager.get_parser(tool_parser, reasoning_parser, enable_auto_tools,
  is_harmony=hf_config.model_type == "gpt_oss", tokenizer=...)`;
- `_make_parser` and `adjust_request` (which may turn `skip_special_tokens` off) before sampling;
- `chat_completion_full_generator`: `set_prompt_token_ids(prompt)`, `parse(output.text, request,
  enable_auto_tools, model_output_token_ids)`, then `assemble_chat_message_fields`;
- the stream: `parse_delta(delta_text, delta_ids, request, prompt_ids, finished=...)` token by token.
`output.text` is the detokenized output without the stop token (vLLM does not append the EOS / stop token's text,
and `skip_special_tokens` defaults to True: protocol.py `to_sampling_params`).
"""

from __future__ import annotations

import json
import sys


def _calls(calls) -> list[dict]:
    return [{"name": c.function.name if hasattr(c, "function") else c.name,
             "arguments": c.function.arguments if hasattr(c, "function") else c.arguments} for c in calls or []]


_SERVERS: dict = {}


def _server(job: dict):
    """(tokenizer, parser class) of one `vllm serve` command, as OpenAIServingChat builds them (once per command)."""
    from vllm.parser.parser_manager import ParserManager
    from vllm.tokenizers import get_tokenizer

    key = (job["tokenizer"], job["reasoning_parser"], job["tool_parser"], job["harmony"])
    if key not in _SERVERS:
        tokenizer = get_tokenizer(job["tokenizer"])
        _SERVERS[key] = (tokenizer, ParserManager.get_parser(
            tool_parser_name=job["tool_parser"], reasoning_parser_name=job["reasoning_parser"], enable_auto_tools=True,
            is_harmony=job["harmony"], tokenizer=tokenizer))
    return _SERVERS[key]


def run(job: dict) -> dict:
    from vllm.entrypoints.openai.chat_completion.message_assembly import assemble_chat_message_fields
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    tokenizer, parser_cls = _server(job)
    kwargs = job["chat_template_kwargs"]

    def request():
        req = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "-"}], tools=job["tools"],
                                    chat_template_kwargs=kwargs or None)
        parser = parser_cls(tokenizer, req.tools, chat_template_kwargs=kwargs, model_config=None)
        return parser.adjust_request(req), parser

    req, parser = request()
    skip = True if req.skip_special_tokens is None else req.skip_special_tokens
    ids = job["output_ids"]  # ending in the stop token the model stopped at (in token_ids, not in the text)
    shown = ids[:-1]
    text = tokenizer.decode(shown, skip_special_tokens=skip)
    parser.set_prompt_token_ids(job["prompt_ids"])
    reasoning, content, calls = parser.parse(text, req, enable_auto_tools=True, model_output_token_ids=ids)
    fields = assemble_chat_message_fields(req, reasoning, content, calls, enable_auto_tools=True, parser_cls=parser_cls)
    out = {"text": text, "reasoning": fields.reasoning, "content": fields.content, "tool_calls": _calls(fields.tool_calls)}

    # the stream: one delta per token; text held back while it ends in an incomplete UTF-8 sequence, as vLLM's
    # incremental detokenizer does
    req, parser = request()
    stream = {"reasoning": "", "content": "", "tool_calls": {}}
    sent, pending = "", []
    for k, token in enumerate(ids):
        pending.append(token)
        full = tokenizer.decode(shown[: k + 1], skip_special_tokens=skip)
        last = k == len(ids) - 1
        if full.endswith("\ufffd") and not last:
            continue
        delta = parser.parse_delta(full[len(sent):], pending, req, job["prompt_ids"], finished=last)
        sent, pending = full, []
        if delta is None:
            continue
        stream["reasoning"] += delta.reasoning or ""
        stream["content"] += delta.content or ""
        for call in delta.tool_calls or []:
            slot = stream["tool_calls"].setdefault(call.index, {"name": "", "arguments": ""})
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
    stream["tool_calls"] = [stream["tool_calls"][i] for i in sorted(stream["tool_calls"])]
    out["stream"] = stream
    return out


def main() -> int:
    import logging

    logging.disable(logging.WARNING)
    jobs = json.load(sys.stdin)["jobs"]
    out = []
    for job in jobs:
        try:
            out.append(run(job))
        except Exception as err:  # noqa: BLE001 - vLLM refusing a parser for a tokenizer is a result to report
            out.append({"error": f"{type(err).__name__}: {err}"})
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
