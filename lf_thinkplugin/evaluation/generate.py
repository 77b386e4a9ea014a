"""Prompts as the model was trained to see them, and greedy generation (HF transformers, CPU or GPU).

Template: the LF template named by `--template NAME`, else the one a plugin run recorded in its
output_dir (`thinkplugin_run.json`, which also holds the reasoning format), or `thinkplugin_args.yaml`,
encodes the prompts through LF's own encoder: the tokens training encoded. Without a name, the
tokenizer's chat template renders them (in a plugin output_dir that is the serving bundle's Jinja,
token parity with training checked). The reasoning format (templates/format.py) gives the markup the
outputs are read with, the vLLM parser, and the switch between the modes (a keyword argument, a value,
or a flag in the system / user text); a template whose prompt does not change with it has no nothink mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .metrics import PARSERS, Markup, markup_for


class EvalError(ValueError):
    """A problem with the eval's input, meant for the user as is."""


# ---------------------------------------------------------------------------------------------------------------
# What the training run left in the model folder


@dataclass
class TrainedWith:
    template: str | None = None  # LF template name
    format: Any = None  # ReasoningFormat the run recorded
    source: str = "tokenizer chat template"
    settings: dict | None = None  # the run's `chat_template_kwargs` (every sample was trained with them)


def trained_with(*folders: str | None) -> TrainedWith:
    """The LF template and reasoning format a plugin run recorded (thinkplugin_run.json; thinkplugin_args.yaml's
    `template` when it names one); first folder that has them wins."""
    from ..templates.record import read_record

    found = TrainedWith()
    for folder in folders:
        if not folder:
            continue
        record = read_record(folder)
        if record is not None:
            if found.template is None and record.get("template"):
                found.template, found.source = record["template"], record["path"]
            if found.format is None and record.get("format") is not None:
                found.format = record["format"]
            if found.settings is None and (record.get("template_settings") or {}).get("chat_template_kwargs"):
                found.settings = record["template_settings"]["chat_template_kwargs"]
        options = Path(folder) / "thinkplugin_args.yaml"
        if options.is_file() and found.template is None:
            block = (yaml.safe_load(options.read_text(encoding="utf-8")) or {}).get("thinkplugin") or {}
            if block.get("template") not in (None, "auto"):
                found.template, found.source = block["template"], str(options)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Sample:
    messages: list[dict[str, str]]  # the conversation up to the turn to generate
    reference: str | None = None  # reference answer (reasoning removed)
    thinks: bool | None = None  # the reference reasons (a non-blank think block); None: no reference


def _sample_of(messages: list[dict[str, str]], content: Any) -> Sample:
    from ..templates.reasoning import split_reasoning

    if content is None:
        return Sample(messages)
    reasoning, answer = split_reasoning(str(content))
    return Sample(messages, answer.strip(), bool(reasoning and reasoning.strip()))


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def _role(message: dict[str, Any], tags: dict[str, str]) -> tuple[str, str]:
    role_tag, content_tag = tags.get("role_tag", "role"), tags.get("content_tag", "content")
    role = message.get(role_tag, message.get("from"))
    content = message.get(content_tag, message.get("value", ""))
    names = {tags.get("user_tag", "user"): "user", tags.get("assistant_tag", "assistant"): "assistant",
             tags.get("system_tag", "system"): "system", "human": "user", "gpt": "assistant"}
    return names.get(role, role), content


def _sample(record: dict[str, Any], columns: dict[str, str], tags: dict[str, str]) -> Sample | None:
    messages_key = columns.get("messages", "messages" if "messages" in record else "conversations")
    if messages_key in record:
        turns = [_role(m, tags) for m in record[messages_key]]
        last = max((i for i, (r, _) in enumerate(turns) if r == "assistant"), default=None)
        context = turns if last is None else turns[:last]
        if not context or context[-1][0] != "user":
            return None
        system = record.get(columns.get("system", "system"))
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": r, "content": c} for r, c in context]
        return _sample_of(msgs, turns[last][1] if last is not None else None)
    parts = [record.get(columns.get("prompt", "instruction")), record.get(columns.get("query", "input"))]
    prompt = "\n".join(str(p) for p in parts if p) or record.get("prompt") or record.get("question")
    if not prompt:
        return None
    reference = next((record[k] for k in (columns.get("response", "output"), "response", "answer", "reference")
                      if k in record), None)
    system = record.get(columns.get("system", "system"))
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return _sample_of(msgs, reference)


def load_samples(data: str, dataset_dir: str = "data", limit: int | None = None) -> list[Sample]:
    """Samples from a JSON / JSONL file (sharegpt / OpenAI messages, alpaca, query-response records), or an
    LF dataset name looked up in dataset_dir/dataset_info.json (its columns and tags honoured)."""
    path, columns, tags = Path(data), {}, {}
    if not path.is_file():
        info_file = Path(dataset_dir) / "dataset_info.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        if data not in info:
            known = f"; known there: {', '.join(sorted(info))}" if info else ""
            raise EvalError(f"--data {data!r} is neither a file nor a dataset in {info_file}{known}")
        entry = info[data]
        if "file_name" not in entry:
            raise EvalError(f"dataset {data!r} has no local `file_name` in {info_file} (hub datasets are not read here)")
        path, columns, tags = Path(dataset_dir) / entry["file_name"], entry.get("columns", {}), entry.get("tags", {})
    samples = [s for s in (_sample(r, columns, tags) for r in _records(path)) if s is not None]
    if not samples:
        raise EvalError(f"no prompts read from {path} (expected `messages` conversations or instruction/output records)")
    return samples[:limit] if limit else samples


# ---------------------------------------------------------------------------------------------------------------
# Prompts


@dataclass
class Prompter:
    tokenizer: Any
    chat_template: str | None  # None: the tokenizer's own
    markup: Markup
    has_switch: bool  # the generation prompt changes with enable_thinking
    template: str | None = None
    notes: list[str] = field(default_factory=list)
    lf_template: Any = None  # LF's Template object: prompts encoded by LF's own training encoder
    format: Any = None  # the ReasoningFormat of the template that renders the prompts
    _settings: Any = None  # templates.settings.TemplateSettings, probed on first use

    def ids(self, messages: list[dict[str, str]], thinking: bool, settings: dict[str, Any] | None = None) -> list[int]:
        """`settings`: the chat template's other keyword arguments (checked by `check_settings`)."""
        if self.lf_template is not None:
            system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
            turns = messages[1:] if system is not None else messages
            if settings:  # carried as training carries them (templates/settings.py); native reads them
                from ..templates.settings import embed

                system = embed(system, settings)
            self.lf_template.enable_thinking = thinking
            prompt, _ = self.lf_template.encode_oneturn(self.tokenizer, [*turns, {"role": "assistant", "content": ""}], system)
            return prompt
        switch = getattr(self.format, "switch", None)
        kwargs = switch.kwargs(thinking) if switch is not None else {"enable_thinking": thinking}
        if switch is not None and switch.kind == "flag":  # `/no_think` in the system or last user message
            flag = switch.on if thinking else switch.off
            messages = [dict(m) for m in messages]
            if switch.name == "system" and flag:
                if messages and messages[0]["role"] == "system":
                    messages[0]["content"] = f"{messages[0]['content']} {flag}".strip()
                else:
                    messages.insert(0, {"role": "system", "content": flag})
            elif flag:
                last = max(i for i, m in enumerate(messages) if m["role"] == "user")
                messages[last]["content"] = f"{messages[last]['content']} {flag}"
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  chat_template=self.chat_template, **{**(settings or {}), **kwargs})
        return self.tokenizer.encode(text, add_special_tokens=False)

    def render(self, messages: list[dict[str, str]], thinking: bool) -> str:
        return self.tokenizer.decode(self.ids(messages, thinking), skip_special_tokens=False)

    def check_settings(self, settings: dict[str, Any], thinking: bool | None, where: str) -> dict[str, Any]:
        """`settings` checked against the chat template that renders the prompts (EvalError naming the key)."""
        from ..templates.format import NativeTemplateError
        from ..templates.settings import SettingsError, TemplateSettings

        if not settings:
            return {}
        native = self.lf_template is not None and type(self.lf_template).__name__ == "NativeTemplate"
        if self.lf_template is not None and not native:
            raise EvalError(f"{where}: template settings go to the model's own chat template; the LF template "
                            f"{self.template} renders these prompts (pass --template native, or drop the settings)")
        try:
            if self._settings is None:
                from ..templates.format import learn

                fmt = self.format or learn(self.tokenizer, self.chat_template)
                self._settings = TemplateSettings(self.tokenizer, fmt, self.chat_template)
            return self._settings.check(settings, thinking, where)
        except (SettingsError, NativeTemplateError) as err:
            raise EvalError(str(err)) from None


def stop_ids(model_dir: str, tokenizer: Any) -> set[int]:
    """generation_config.json's eos ids (what generation stops at), else config.json's, plus the tokenizer's eos."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        file = Path(model_dir) / name
        if file.is_file():
            eos = json.loads(file.read_text()).get("eos_token_id")
            if eos is not None:
                ids |= set(eos) if isinstance(eos, list) else {eos}
                break
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def lf_template(tokenizer: Any, name: str) -> Any:
    """LF's template `name` (the plugin's registered too), set up on the tokenizer as LF's training does."""
    from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from ..templates import register_templates

    register_templates()
    if name not in TEMPLATES:
        import difflib

        close = difflib.get_close_matches(name, list(TEMPLATES), n=3, cutoff=0.5)
        raise EvalError(f"unknown LF template {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))


def prompter(tokenizer: Any, model_dir: str, info: TrainedWith, template: str | None = None) -> Prompter:
    """How prompts are encoded, and the family markup read from the generation prompt: the LF template named
    by --template or recorded by the training run, through LF's own encoder (what training encoded); else the
    tokenizer's chat template."""
    from ..templates import NAMES

    notes = []
    name = template or info.template
    p = Prompter(tokenizer, None, Markup(), False, name, notes)
    if name is not None:
        import llamafactory.data.template  # noqa: F401  (LF sets its log level on import: import before quieting it)

        from ..templates.parity import quiet_lf

        with quiet_lf():
            p.lf_template = lf_template(tokenizer, name)
        notes.append(f"prompts: LF template {name}" + (" (--template)" if template else f" (per {info.source})"))
    elif getattr(tokenizer, "chat_template", None):
        notes.append("prompts: the tokenizer's chat template")
    else:
        raise EvalError(f"{model_dir}: the tokenizer has no chat template and no LF template is recorded there; "
                        f"pass --template NAME (e.g. {', '.join(NAMES)})")
    from ..templates.format import DATA_MARKUP, NativeTemplateError, learn
    from ..templates.record import format_of

    fmt = info.format
    if fmt is None:
        try:
            fmt = format_of(p.lf_template, tokenizer) if p.lf_template is not None else learn(tokenizer)
        except NativeTemplateError:
            fmt = None
    p.format = fmt
    probe = [{"role": "user", "content": "Hi"}]
    think, nothink = p.render(probe, True), p.render(probe, False)
    open_tag, close_tag = fmt.markup if fmt is not None and fmt.markup else DATA_MARKUP
    opens = think.rstrip().endswith(open_tag)
    p.has_switch = think != nothink
    stops = stop_ids(model_dir, tokenizer)
    words = list(getattr(p.lf_template, "stop_words", None) or [])  # LF's template stop words end a turn too
    if fmt is not None and fmt.end_of_turn and fmt.end_of_turn != fmt.closer:  # the tag the template ends a turn
        words.append(fmt.end_of_turn)  # with, unless it also closes the reasoning block (a stop there cuts the turn)
    for word in words:
        word_ids = tokenizer.encode(word, add_special_tokens=False)
        if len(word_ids) == 1:
            stops.add(word_ids[0])
    parser = getattr(fmt, "reasoning_parser", None)
    if parser is not None and parser not in PARSERS:
        notes.append(f"vLLM parser {parser} (of the reasoning format) is not modelled here; showing the default")
        parser = None
    p.markup = markup_for(tokenizer, prompt_opens_think=opens, stop_ids=stops, parser=parser,
                          open_tag=open_tag, close_tag=close_tag)
    if fmt is not None:
        from dataclasses import replace

        p.markup = replace(p.markup, answer_prefix=fmt.separator.strip(),
                           end_tag=fmt.end_of_turn if fmt.end_of_turn and fmt.end_of_turn == fmt.closer else "")
    if opens:
        notes.append(f"the generation prompt opens {open_tag}: the model only closes it")
    return p


# ---------------------------------------------------------------------------------------------------------------
# Generation


def load_model(model_dir: str, adapter: str | None = None, device: str = "cpu") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device).eval()


def load_tokenizer(folder: str) -> Any:
    from ..loading.tokenizer import from_pretrained

    tok = from_pretrained(folder, local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def generate_hf(model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_new_tokens: int, stops: set[int],
                batch_size: int = 8, progress: Any = None) -> list[list[int]]:
    """Greedy generation, batched with left padding; returns the ids generated after each prompt.
    `progress(done, total)` is called after each batch (a long eval shows where it is)."""
    import torch

    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=sorted(stops), pad_token_id=pad, temperature=None, top_p=None, top_k=None)
        outputs += [row[width:].tolist() for row in out]
        if progress is not None:
            progress(len(outputs), len(prompts))
    return outputs


def load_vllm(model_dir: str, adapter: str | None = None) -> Any:
    """A vLLM engine for the model (LoRA enabled when an adapter is given); GPU."""
    from vllm import LLM  # checked importable by the caller

    return LLM(model=model_dir, tokenizer=model_dir, **({"enable_lora": True} if adapter else {}))


def generate_vllm(llm: Any, adapter: str | None, prompts: Sequence[list[int]], max_new_tokens: int,
                  stops: set[int]) -> list[list[int]]:
    """Greedy generation with vLLM from the same prompt ids; its token_ids include the stop token it ended on."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=sorted(stops), skip_special_tokens=False)
    lora = None
    if adapter:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("adapter", 1, adapter)
    results = llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, lora_request=lora)
    return [list(r.outputs[0].token_ids) for r in results]
