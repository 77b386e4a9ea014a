"""Prompts as the model was trained to see them, and greedy generation (HF transformers, CPU or GPU).

Template: the LF template named by `--template NAME`, else the one a plugin run recorded in its
output_dir (`thinkplugin_run.json`, which also holds the reasoning format), or `thinkplugin_args.yaml`,
encodes the prompts through LF's own encoder: the tokens training encoded. Without a name, the
tokenizer's chat template renders them (in a plugin output_dir that is the serving bundle's Jinja,
token parity with training checked). The reasoning format (templates/format.py) gives the markup the
outputs are read with, the vLLM parser, and the switch between the modes (a keyword argument, a value,
or a flag in the system / user text); a template whose prompt does not change with it has no nothink mode.
Prompts with images (LF's `images` column and `<image>` placeholders) are rendered by the model folder's processor
(`Media`): its own chat template on typed chunks, its image tokens and pixel tensors, at the served pixel limits
or the trained run's where its record differs.
"""

from __future__ import annotations

import json
import os
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
    images: list[str] = field(default_factory=list)  # image files (resolved), in the order of the placeholders
    where: str = ""  # "sample 3 of FILE ("first words…")", for messages that name it


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


IMAGE_PLACEHOLDER = os.environ.get("IMAGE_PLACEHOLDER", "<image>")  # LF's placeholder (and its env override)


def _media(record: dict[str, Any], columns: dict[str, str], key: str) -> list[Any]:
    value = record.get(columns.get(key, key))
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


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


def _media_file(name: Any, media_dir: Path, where: str) -> str:
    """The image file as LF finds it: media_dir/name where that is a file, else name as given."""
    if isinstance(name, dict) and isinstance(name.get("path"), str):  # an HF datasets Image record
        name = name["path"]
    if not isinstance(name, str) or not name:
        raise EvalError(f"{where}: an `images` entry must be a file path, got {name!r}")
    for candidate in (media_dir / name, Path(name)):
        if candidate.is_file():
            return str(candidate)
    raise EvalError(f"{where}: image {name!r} not found (looked in {media_dir} and {Path.cwd()}); relative paths are "
                    "read against the dataset's folder (--dataset-dir, or the data file's own folder)")


def _place_images(sample: Sample) -> None:
    """Each image has its `<image>` placeholder in the text (as LF requires); without any, the images go before
    the text of the last user message (the eval JSON's `prompt` + `images`); another count is refused."""
    found = sum(str(m["content"]).count(IMAGE_PLACEHOLDER) for m in sample.messages)
    if found == 0:
        last = max(i for i, m in enumerate(sample.messages) if m["role"] == "user")
        sample.messages[last] = {**sample.messages[last],
                                 "content": IMAGE_PLACEHOLDER * len(sample.images) + str(sample.messages[last]["content"])}
    elif found != len(sample.images):
        raise EvalError(f"{sample.where}: {len(sample.images)} images but {found} {IMAGE_PLACEHOLDER} placeholders in "
                        "its prompt; write one placeholder where each image goes")


def load_samples(data: str, dataset_dir: str = "data", limit: int | None = None) -> list[Sample]:
    """Samples from a JSON / JSONL file (sharegpt / OpenAI messages, alpaca, query-response records), or an
    LF dataset name looked up in dataset_dir/dataset_info.json (its columns and tags honoured)."""
    path, columns, tags = Path(data), {}, {}
    named = not path.is_file()
    if named:
        info_file = Path(dataset_dir) / "dataset_info.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        if data not in info:
            known = f"; known there: {', '.join(sorted(info))}" if info else ""
            raise EvalError(f"--data {data!r} is neither a file nor a dataset in {info_file}{known}")
        entry = info[data]
        if "file_name" not in entry:
            raise EvalError(f"dataset {data!r} has no local `file_name` in {info_file} (hub datasets are not read here)")
        path, columns, tags = Path(dataset_dir) / entry["file_name"], entry.get("columns", {}), entry.get("tags", {})
    # LF joins a relative media path to `media_dir` (default: dataset_dir) where that file exists, else keeps it
    # as given (relative to the working folder); a file given directly: its own folder plays dataset_dir's part
    media_dir = Path(dataset_dir) if named else path.parent
    from ..data.sample_errors import preview

    samples: list[Sample] = []
    for index, record in enumerate(_records(path)):
        if limit and len(samples) == limit:
            break
        sample = _sample(record, columns, tags)
        if sample is None:
            continue
        sample.where = f"sample {index} of {path} ({preview(sample.messages)})"
        for kind in ("videos", "audios"):
            if _media(record, columns, kind):
                raise EvalError(f"{sample.where} has {kind}: `lf-think eval` reads images only so far; drop the "
                                f"`{kind}` column from the prompts to evaluate")
        sample.images = [_media_file(m, media_dir, sample.where) for m in _media(record, columns, "images")]
        if sample.images:
            _place_images(sample)
        samples.append(sample)
    if not samples:
        raise EvalError(f"no prompts read from {path} (expected `messages` conversations or instruction/output records)")
    return samples


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
    media: Any = None  # Media: how prompts with images are rendered (load_media), where any has images

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
        messages, kwargs = self._switched(messages, thinking)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  chat_template=self.chat_template, **{**(settings or {}), **kwargs})
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _switched(self, messages: list[dict[str, Any]], thinking: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages and chat template arguments of the mode: the format's switch (a keyword argument, or a
        `/no_think` flag in the system or last user message)."""
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
        return messages, kwargs

    def inputs(self, sample: Sample, thinking: bool, settings: dict[str, Any] | None = None) -> tuple[list[int], dict | None]:
        """(prompt ids, the processor's media tensors or None): a sample with images through the processor (`media`),
        any other as `ids`."""
        if not sample.images:
            return self.ids(sample.messages, thinking, settings), None
        if self.media is None:
            raise EvalError(f"{sample.where} has images, but no processor was loaded for them")
        messages, kwargs = self._switched(sample.messages, thinking)
        return self.media.encode(messages, sample, {**(settings or {}), **kwargs})

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
# Images

IMAGE_KEYS = ("image_min_pixels", "image_max_pixels")
LF_IMAGE_DEFAULTS = {"image_min_pixels": 32 * 32, "image_max_pixels": 768 * 768}  # LF's ProcessorArguments defaults


def _chunks(message: dict[str, Any]) -> dict[str, Any]:
    """LF's `<image>` placeholders as the template's typed content chunks, the text around them as text chunks."""
    content = message.get("content")
    if not isinstance(content, str) or IMAGE_PLACEHOLDER not in content:
        return message
    parts: list[dict[str, str]] = []
    for i, text in enumerate(content.split(IMAGE_PLACEHOLDER)):
        if i:
            parts.append({"type": "image"})
        if text:
            parts.append({"type": "text", "text": text})
    return {**message, "content": parts}


@dataclass
class Media:
    """Prompts with images: the processor's own chat template renders the typed chunks, the processor expands the
    image tokens and makes the pixel tensors, each image seen at `limits` (the served processor's, or the trained
    run's where its record says otherwise: then LF's own resize at those limits comes first, as in training)."""

    processor: Any
    folder: str  # where the processor was loaded from
    image_token_id: int
    served: dict[str, int]  # LF pixel keys -> the processor's
    limits: dict[str, int]  # what the images are seen with
    source: str  # "processor" | "run"
    record: str | None = None  # the run record that set the limits (or agreed with the processor's)
    resize: Any = None  # PIL image -> PIL image at the run's limits (LF's pre-processing); None: the processor's own
    _loaded: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # sample.where -> image tokens in its prompt

    def images(self, sample: Sample) -> list[Any]:
        from PIL import Image

        out = []
        for path in sample.images:
            if path not in self._loaded:
                try:
                    with Image.open(path) as img:
                        image = img.convert("RGB")
                except (OSError, ValueError) as err:
                    raise EvalError(f"{sample.where}: image {path} cannot be read ({err})") from None
                self._loaded[path] = self.resize(image) if self.resize is not None else image
            out.append(self._loaded[path])
        return out

    def encode(self, messages: list[dict[str, Any]], sample: Sample, kwargs: dict[str, Any]) -> tuple[list[int], dict]:
        chunked = [_chunks(m) for m in messages]
        extra = {} if getattr(self.processor, "chat_template", None) else {
            "chat_template": self.processor.tokenizer.chat_template}
        text = self.processor.apply_chat_template(chunked, tokenize=False, add_generation_prompt=True, **extra, **kwargs)
        encoded = self.processor(text=[text], images=self.images(sample), return_tensors="pt")
        ids = encoded["input_ids"][0].tolist()
        self.tokens[sample.where] = ids.count(self.image_token_id)
        tensors = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        return ids, tensors

    def describe(self) -> str:
        def show(limits: dict[str, int]) -> str:
            return ", ".join(f"{k} {limits[k]}" for k in IMAGE_KEYS if k in limits) or "not read"

        if self.source == "run":
            differ = {k: v for k, v in self.limits.items() if self.served.get(k) != v}
            return (f"image pixel limits: the trained run's ({self.record}: {show(differ)}), not the processor's "
                    f"({show({k: self.served[k] for k in differ if k in self.served})}): images seen as in training")
        agree = f"; the run trained with the same ({self.record})" if self.record else ""
        return f"image pixel limits: the processor's, as served ({show(self.limits)}){agree}"

    def to_dict(self) -> dict[str, Any]:
        return {"processor": type(self.processor).__name__, "pixel_limits": dict(self.limits),
                "pixel_limits_from": self.source, "served_pixel_limits": dict(self.served),
                **({"record": self.record} if self.record else {})}


def _served(folder: str, image_processor: Any) -> dict[str, int]:
    """The processor's pixel limits as LF's keys: templates/media.py's reading of the folder (the classes `native`
    trains), else the image processor's `size` shortest / longest edge where those are pixel counts (Qwen-VL)."""
    from ..templates.media import served_limits

    limits = {k: v for k, v in served_limits(folder).items() if k in IMAGE_KEYS}
    if limits:
        return limits
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    edges = {"image_min_pixels": get("shortest_edge"), "image_max_pixels": get("longest_edge")}
    return {k: int(v) for k, v in edges.items() if isinstance(v, int)} if get("longest_edge") else {}


def _lf_resize(folder: str, limits: dict[str, int]) -> Any:
    """LF's own pre-processing of an image at `limits` (its multimodal plugin for the folder's processor, as the
    training run applied it), else the rule of LF's base plugin (scale into [min, max] pixels, RGB)."""
    import math

    from ..templates.media import media_plugin

    plugin = media_plugin(folder)
    if plugin is not None:
        return lambda image: plugin._preprocess_image(image, **limits)

    def base(image: Any) -> Any:  # llamafactory/data/mm_plugin.py BasePlugin._preprocess_image
        for key, shrink in (("image_max_pixels", True), ("image_min_pixels", False)):
            area = image.width * image.height
            if (area > limits[key]) if shrink else (area < limits[key]):
                factor = math.sqrt(limits[key] / area)
                image = image.resize((int(image.width * factor), int(image.height * factor)))
        return image

    return base


def load_media(folder: str, record_folders: Sequence[str | None], samples: Sequence[Sample]) -> Media:
    """The processor of `folder` for the prompts with images; EvalError naming the first such sample where the
    folder has no image processor."""
    from ..templates.record import read_record

    first = next(s for s in samples if s.images)
    processor, why = None, ""
    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001  (any failure to load one means: no processor to render images with)
        why = f" ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise EvalError(f"{first.where} has images, but the model folder {folder} has no image processor{why}: "
                        "evaluate prompts with images on a vision-language model folder (its processor files, "
                        "preprocessor_config.json, next to the weights), or drop their `images`")
    tokenizer = processor.tokenizer
    token = getattr(processor, "image_token", None)
    image_token_id = getattr(processor, "image_token_id", None)
    if image_token_id is None and token is not None:
        image_token_id = tokenizer.convert_tokens_to_ids(token)
    served = _served(folder, image_processor)
    record_path, trained = None, {}
    for candidate in record_folders:
        record = read_record(candidate) if candidate else None
        if record and record.get("media"):
            record_path = record["path"]
            trained = {k: int(v) for k, v in record["media"].items() if k in IMAGE_KEYS and v is not None}
            break
    differ = {k: v for k, v in trained.items() if served.get(k) != v}
    if differ:
        limits = {**LF_IMAGE_DEFAULTS, **served, **trained}
        return Media(processor, folder, image_token_id, served, limits, "run", record_path, _lf_resize(folder, limits))
    return Media(processor, folder, image_token_id, served, dict(served), "processor", record_path if trained else None)


# ---------------------------------------------------------------------------------------------------------------
# Generation


def load_model(model_dir: str, adapter: str | None = None, device: str = "cpu", vision: bool = False) -> Any:
    """`vision`: the image-text-to-text class (prompts with images), else the causal LM one (a vision-language
    config that the causal LM class does not map loads as image-text-to-text too)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    if vision:
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
        except ValueError as err:
            if "Unrecognized configuration class" not in str(err):
                raise
            model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
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


def _media_batch(batch: Sequence[list[int]], media: Sequence[dict | None], width: int, model: Any) -> dict[str, Any]:
    """The processor's tensors of a batch: per-token ones (one row of the prompt's length, e.g. mm_token_type_ids)
    left-padded with 0 (text-only prompts: zeros), the others (pixel_values, image_grid_thw) concatenated in order."""
    import torch

    device = next(model.parameters()).device
    keys = sorted({k for m in media if m for k in m})
    out = {}
    for key in keys:
        per_token = all(m[key].dim() == 2 and m[key].shape == (1, len(p)) for p, m in zip(batch, media) if m and key in m)
        if per_token:
            rows = [[0] * (width - len(p)) + (m[key][0].tolist() if m and key in m else [0] * len(p))
                    for p, m in zip(batch, media)]
            out[key] = torch.tensor(rows, device=device)
        else:
            value = torch.cat([m[key] for m in media if m and key in m])
            out[key] = value.to(device, dtype=model.dtype) if value.is_floating_point() else value.to(device)
    return out


def generate_hf(model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_new_tokens: int, stops: set[int],
                batch_size: int = 8, progress: Any = None, media: Sequence[dict | None] | None = None) -> list[list[int]]:
    """Greedy generation, batched with left padding; returns the ids generated after each prompt.
    `progress(done, total)` is called after each batch (a long eval shows where it is). `media`: per prompt, the
    processor's tensors for its images (None for a text-only prompt)."""
    import torch

    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        extra = _media_batch(batch, media[start:start + batch_size], width, model) if media is not None else {}
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=sorted(stops), pad_token_id=pad, temperature=None, top_p=None, top_k=None,
                                 **extra)
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
