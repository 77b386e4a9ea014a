"""The serving bundle of a registered template: its files, and the Jinja's parity with LF's training
encoder on the doctor's probes (the library under `lf-think export` and the after-training callback)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE = ("chat_template.jinja", "Modelfile", "Modelfile.template", "Modelfile.renderer", "lmdeploy_chat_template.json",
          "SERVING.md")


class ExportError(ValueError):
    """Bad export input: unknown template, no tokenizer."""


@dataclass
class Bundle:
    template: str
    files: dict[str, str]  # name -> text
    parity: Any  # TemplateResult of chat_template.jinja vs LF's training encoder
    format: Any  # ChatFormat
    lmdeploy_limits: list[str] = field(default_factory=list)
    lmdeploy_adds_bos: bool = False  # the tokenizer adds BOS when encoding (LMDeploy's path)
    gguf_adds_bos: bool = False  # tokenizer_config.json add_bos_token (what a GGUF / Ollama does)
    native: Any = None  # NativeServing for `template: native` (engine reports, learnt Ollama pieces)
    media: Any = None  # MediaServing for a vision-language model trained with `native` (serving/media.py)


def adds_bos(tokenizer: Any) -> tuple[bool, bool]:
    """(encoding with special tokens adds BOS, tokenizer_config.json says add_bos_token)."""
    bos = tokenizer.bos_token_id
    on_encode = bos is not None and tokenizer.encode("a", add_special_tokens=True)[:1] == [bos]
    config_file = Path(str(getattr(tokenizer, "name_or_path", ""))) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    return on_encode, bool(config.get("add_bos_token"))


def _setup(name: str, scanner: Any, enable_thinking: bool | None) -> tuple[Any, Any]:
    """The template and tokenizer view as LF's training sets them up (shared objects untouched)."""
    from llamafactory.data.template import TEMPLATES, ReasoningTemplate

    view = scanner.view()
    template = copy.deepcopy(TEMPLATES[name])
    if isinstance(template, ReasoningTemplate):
        template.enable_thinking = enable_thinking
    template.fix_special_tokens(view)
    return template, view


def _jinja(name: str, template: Any, view: Any, scanner: Any) -> str:
    from ..templates import NAMES, jinja_text

    if name in NAMES:  # the plugin's: the Jinja it trains to (`native`: the model's own, verbatim)
        return jinja_text(template.jinja_file) if hasattr(template, "jinja_file") else template._get_jinja_template(view)
    if scanner.tokenizer.chat_template and scanner.check(name, stop_at_first_failure=True).ok:
        return scanner.tokenizer.chat_template
    try:
        return template._get_jinja_template(view)
    except ValueError as err:  # LF cannot write some slot kinds (token dicts) as Jinja
        raise ExportError(f"template {name!r} has no Jinja form ({err}); the tokenizer's own template lacks parity with it") from None


def build_bundle(name: str, tokenizer: Any, enable_thinking: bool | None = True, num_ctx: int | None = None,
                 settings: dict | None = None, processor: Any = None, media: dict | None = None) -> Bundle:
    """Every file of the bundle for registered template `name`, with the Jinja's parity result. `settings`: the run
    record's `template_settings` (template keyword arguments trained under: a SERVING.md section). `processor`: the
    run's multimodal processor, `media`: the run record's media settings (templates/record.py); for `native` on a
    verified processor class the bundle adds the processor files with the trained pixel limits and a Media section
    (serving/media.py)."""
    from llamafactory.data.template import TEMPLATES

    from ..templates import register_templates
    from ..templates.parity import Scanner, quiet_lf
    from ..templates.probes import SCAN_PROBES
    from .formats import FormatError, chat_format
    from .lmdeploy import config, limitations
    from .ollama import modelfile
    from .serving import serving_md

    register_templates()
    if name not in TEMPLATES:
        raise ExportError(f"unknown template {name!r}; known: {', '.join(sorted(TEMPLATES))}")
    from ..templates.format import NativeTemplateError

    scanner = Scanner(tokenizer, enable_thinking)
    try:
        with quiet_lf():
            template, view = _setup(name, scanner, enable_thinking)
    except NativeTemplateError as err:  # `native` on a tokenizer without a usable chat template
        raise ExportError(str(err)) from None
    jinja = _jinja(name, template, view, scanner)
    rendered = copy.copy(tokenizer)  # a shallow copy: only its chat_template differs
    rendered.chat_template = jinja
    probes = {"probes": SCAN_PROBES} if name == "native" else {}  # native trains tool calls too: check them
    parity = Scanner(rendered, enable_thinking, facts=scanner.facts, **probes).check(name)
    if name == "native":  # the model's own Jinja: every engine from the format learnt from it (serving/native.py)
        from .native import build_native, serving_md as native_md

        mode = {True: "true", False: "false", None: "auto"}[enable_thinking]
        summary = f"parity with LF's training encoder on {parity.passed}/{parity.total} probes (enable_thinking: {mode})"
        native = build_native(tokenizer, jinja, enable_thinking, summary, num_ctx, adds_bos(tokenizer)[1])
        fmt = template.encoder(view).format
        from .template_settings import settings_section

        section = settings_section(settings)
        md = native_md(native, fmt, summary, num_ctx) + (f"\n{section}" if section else "")
        files = {"chat_template.jinja": jinja, **native.files, "SERVING.md": md}
        bundle = Bundle(name, files, parity, None, [], *adds_bos(tokenizer))
        bundle.native = native
        from .media import is_vlm, media_md, processor_files

        if is_vlm(processor):
            from ..templates.record import media_record

            bundle.media = processor_files(processor, media or media_record(processor))
            files.update(bundle.media.files)
            files["SERVING.md"] = md + "\n" + media_md(bundle.media)
        return bundle
    try:
        fmt = chat_format(name, template, view)
    except FormatError as err:
        raise ExportError(str(err)) from None
    lmdeploy_bos, gguf_bos = adds_bos(tokenizer)
    limits = limitations(fmt, lmdeploy_bos)
    mode = {True: "true", False: "false", None: "auto"}[enable_thinking]
    summary = f"parity with LF's training encoder on {parity.passed}/{parity.total} probes (enable_thinking: {mode})"
    files = {
        "chat_template.jinja": jinja,
        "Modelfile": modelfile(fmt, num_ctx),
        "lmdeploy_chat_template.json": json.dumps(config(fmt), ensure_ascii=False, indent=2) + "\n",
        "SERVING.md": serving_md(fmt, summary, limits, num_ctx),
    }
    return Bundle(name, files, parity, fmt, limits, lmdeploy_bos, gguf_bos)


def write_bundle(bundle: Bundle, out: Path, force: bool) -> list[Path]:
    """Write the bundle (all or nothing). A tokenizer_config.json in out that holds a chat_template
    (transformers 4 layout) gets the exported one, so the saved tokenizer renders what was trained."""
    from .files import ExistingFiles, _same, write_all

    # a file that already holds exactly the text to write loses nothing (the trainer's saved chat_template.jinja)
    names = list(BUNDLE) + [name for name in bundle.files if name not in BUNDLE]  # the processor files of a VLM
    existing = [name for name in names if (out / name).exists() and not _same(out / name, bundle.files.get(name))]
    if existing and not force:
        raise ExistingFiles(f"{out} already has {', '.join(existing)}; nothing written. Use --force to replace them")
    files = dict(bundle.files)
    config_file = out / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if "chat_template" in config:
            config["chat_template"] = bundle.files["chat_template.jinja"]
            files["tokenizer_config.json"] = json.dumps(config, ensure_ascii=False, indent=2) + "\n"
    return write_all(out, files, force=True)
