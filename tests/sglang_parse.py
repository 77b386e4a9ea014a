"""SGLang's own handling of a chat completion's generated token ids, as `python -m sglang.launch_server` does it; run
as a script by tests/test_serving_sglang.py in a subprocess whose PYTHONPATH holds `.engines/sglang` (SGLang 0.5.23
and the pure-Python part of its import chain, installed with --no-deps by scripts/setup_integration.sh).

stdin: {"jobs": [{"tokenizer", "reasoning_parser", "tool_parser", "tools", "chat_template_kwargs", "prompt_ids",
"output_ids"}]}; stdout: one {"text", "reasoning", "content", "tool_calls", "stream", "force_reasoning",
"reasoning_config"} per job (the last two: what TemplateManager detected in the chat template).

Only the model is replaced: everything from the request to the response is SGLang's code (0.5.23).
- The server, once per command: `ServerArgs` with the bundle's `--model-path`, `--chat-template`,
  `--reasoning-parser`, `--tool-call-parser`, published as the tokenizer process does (`runtime_context.publish`);
  the tokenizer from `utils/hf_transformers/tokenizer.py` `get_tokenizer` (as `TokenizerManager.__init__` loads it);
  `TemplateManager.initialize_templates` (parser/template_manager.py: `_load_jinja_template` reads the .jinja file,
  `_run_template_detection` infers `force_reasoning` and the reasoning toggle from it); `OpenAIServingChat(...)`
  (entrypoints/openai/serving_chat.py).
- The request: `ChatCompletionRequest` with the tools, `chat_template_kwargs` and the trained prompt as
  `input_ids` ("bypasses chat template tokenization entirely", protocol.py), through
  `OpenAIServingBase.handle_request` -> `OpenAIServingChat._convert_to_internal_request` (`_process_messages`:
  `skip_special_tokens` off for gpt-oss and for requests with tools) -> `_handle_non_streaming_request` /
  `_handle_streaming_request`.
- The engine's answer, faked in `_Engine.generate_request` (TokenizerManager's side of the scheduler): the output
  ids one token per step through SGLang's `DetokenizerManager._decode_batch_token_id_output`
  (managers/detokenizer_manager.py: incremental decode with the prompt's last 5 ids as context, as
  `Req.init_incremental_detokenize` (managers/schedule_batch.py) sends them, and `trim_matched_stop` dropping the
  stop token the model stopped at, `FINISH_MATCHED_TOKEN`), accumulated into `text` as TokenizerManager does.
- Then SGLang's own `_build_chat_response` (`ReasoningParser(...).parse_non_stream`, `_process_tool_calls` with
  `FunctionCallParser.has_tool_call` / `parse_non_stream`) and `_generate_chat_stream` (`_process_reasoning_stream`,
  `_process_tool_call_stream`, `_check_for_unstreamed_tool_args`), whose SSE chunks are read back here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import SimpleNamespace

_SERVERS: dict = {}


class _Engine:
    """What OpenAIServingChat reads from its TokenizerManager, with the model replaced by the job's output ids."""

    def __init__(self, server_args, tokenizer, hf_config):
        from sglang.srt.managers.detokenizer_manager import DetokenizerManager, LimitedCapacityDict
        from sglang.srt.managers.schedule_batch import INIT_INCREMENTAL_DETOKENIZATION_OFFSET
        from sglang.srt.parser.response_template import tool_close_token_ids
        from sglang.srt.runtime_context import get_serving

        self.server_args = server_args
        self.tokenizer = tokenizer
        self.served_model_name = "m"
        self.model_path = server_args.model_path
        # ModelConfig's fields OpenAIServingChat reads (a text model; no generation_config sampling defaults)
        self.model_config = SimpleNamespace(hf_config=hf_config, is_multimodal=False, get_default_sampling_params=dict)
        self.request_logger = SimpleNamespace(log_requests=False, log_requests_level=0)
        self.offset = INIT_INCREMENTAL_DETOKENIZATION_OFFSET
        # DetokenizerManager.__init__ without its zmq sockets: init_tokenizer's tokenizer and the fields
        # init_running_status sets (decode_status, disable_tokenizer_batch_decode, is_tool_call_parser_gpt_oss,
        # tool_close_token_ids)
        detok = DetokenizerManager.__new__(DetokenizerManager)
        detok.tokenizer = tokenizer
        detok.vocab_size = len(tokenizer)
        detok.decode_status = LimitedCapacityDict(capacity=64)
        detok.disable_tokenizer_batch_decode = get_serving().disable_tokenizer_batch_decode
        detok.is_tool_call_parser_gpt_oss = get_serving().tool_call_parser == "gpt-oss"
        detok.tool_close_token_ids = tool_close_token_ids(get_serving().tool_call_parser, tokenizer)
        self.detok = detok
        self.job = None

    def create_abort_task(self, adapted_request):
        return None  # the background task that aborts the request when the client goes away

    def config_value(self, name):
        return getattr(self.server_args, name)

    def detokenize(self, skip_special_tokens: bool, spaces_between_special_tokens: bool) -> list[str]:
        """The output strings the detokenizer sends back, one step per generated token (scheduler side:
        output_streamer.py sends `decode_ids[send_decode_id_offset:]` and `read_offset - surr_offset`)."""
        prompt, output = self.job["prompt_ids"], self.job["output_ids"]
        surr = max(len(prompt) - self.offset, 0)
        rid = f"r{id(self.job)}"
        outs = []
        for k, token in enumerate(output):
            last = k == len(output) - 1
            recv = SimpleNamespace(
                rids=[rid], decoded_texts=[""], decode_ids=[(prompt[surr:] if k == 0 else []) + [token]],
                read_offsets=[len(prompt) - surr],
                finished_reasons=[{"type": "stop", "matched": token} if last else None],  # FINISH_MATCHED_TOKEN.to_json
                no_stop_trim=[False], skip_special_tokens=[skip_special_tokens],
                spaces_between_special_tokens=[spaces_between_special_tokens])
            outs.append(self.detok._decode_batch_token_id_output(recv)[0])
        return outs

    async def generate_request(self, adapted_request, raw_request=None):
        params = adapted_request.sampling_params or {}
        steps = self.detokenize(params.get("skip_special_tokens", True), params.get("spaces_between_special_tokens", True))
        self.job["_steps"] = steps
        output = self.job["output_ids"]
        text = ""
        stream = bool(adapted_request.stream)
        for k, piece in enumerate(steps):
            text += piece  # TokenizerManager accumulates the detokenizer's increments into state.text
            last = k == len(steps) - 1
            if not stream and not last:
                continue
            yield {"index": 0, "text": text, "output_ids": output[: k + 1],
                   "meta_info": {"id": "chatcmpl-x", "finish_reason": {"type": "stop", "matched": output[-1]} if last else None,
                                 "prompt_tokens": len(self.job["prompt_ids"]), "completion_tokens": k + 1,
                                 "cached_tokens": 0, "weight_version": "default"}}


def _server(job: dict):
    """(engine, OpenAIServingChat) of one `python -m sglang.launch_server` command (built once per command; the last
    published ServerArgs is the process's, as SGLang allows)."""
    from pathlib import Path

    from sglang.srt.entrypoints.openai.serving_chat import OpenAIServingChat
    from sglang.srt.parser.template_manager import TemplateManager
    from sglang.srt.runtime_context import publish
    from sglang.srt.server_args import ServerArgs
    from sglang.srt.utils.hf_transformers.tokenizer import get_tokenizer

    key = (job["tokenizer"], job["reasoning_parser"], job["tool_parser"])
    if key not in _SERVERS:
        folder = Path(job["tokenizer"])
        args = ServerArgs(model_path=str(folder), chat_template=str(folder / "chat_template.jinja"),
                          reasoning_parser=job["reasoning_parser"], tool_call_parser=job["tool_parser"], device="cpu")
        publish(args, role="tokenizer")
        tokenizer = get_tokenizer(str(folder))
        config = folder / "config.json"
        hf_config = SimpleNamespace(**json.loads(config.read_text())) if config.is_file() else SimpleNamespace(model_type=None)
        engine = _Engine(args, tokenizer, hf_config)
        templates = TemplateManager()
        templates.initialize_templates(engine, model_path=str(folder), chat_template=args.chat_template)
        _SERVERS[key] = (args, engine, OpenAIServingChat(engine, templates))
    args, engine, serving = _SERVERS[key]
    from sglang.srt.runtime_context import publish

    publish(args, role="tokenizer")
    return engine, serving


def _request(job: dict, stream: bool):
    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest

    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "-"}], tools=job["tools"],
                                 chat_template_kwargs=dict(job["chat_template_kwargs"]) or None,
                                 input_ids=list(job["prompt_ids"]), stream=stream)


def _sse(body: str) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in body.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


async def _run(job: dict) -> dict:
    engine, serving = _server(job)
    engine.job = job
    response = await serving.handle_request(_request(job, False), None)
    if not hasattr(response, "choices"):
        body = getattr(response, "body", b"")
        return {"error": body.decode() if isinstance(body, bytes) else str(response)}
    message = response.choices[0].message
    text = "".join(job["_steps"])
    out = {"text": text, "reasoning": message.reasoning_content, "content": message.content,
           "tool_calls": [{"name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls or []],
           "force_reasoning": serving.template_manager.force_reasoning,
           "reasoning_config": str(serving.template_manager.reasoning_config)}

    streamed = await serving.handle_request(_request(job, True), None)
    if not hasattr(streamed, "body_iterator"):
        return {**out, "error": bytes(streamed.body).decode()}
    body = ""
    async for chunk in streamed.body_iterator:
        body += chunk.decode() if isinstance(chunk, bytes) else chunk
    stream = {"reasoning": "", "content": "", "tool_calls": {}}
    for event in _sse(body):
        if "error" in event:
            return {**out, "error": json.dumps(event["error"])}
        for choice in event.get("choices", []):
            delta = choice.get("delta") or {}
            stream["reasoning"] += delta.get("reasoning_content") or ""
            stream["content"] += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = stream["tool_calls"].setdefault(call["index"], {"name": "", "arguments": ""})
                slot["name"] += (call.get("function") or {}).get("name") or ""
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
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
            out.append(asyncio.run(_run(job)))
        except Exception as err:  # noqa: BLE001 - SGLang refusing a parser or a request is a result to report
            import traceback

            out.append({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]})
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
