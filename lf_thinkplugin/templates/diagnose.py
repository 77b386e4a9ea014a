"""The doctor's diagnosis of a model (the library under `lf-think doctor`, `template: auto`, `lf-think check`
and `lf-think export`): which LF template renders this model's chat format token for token, and what else
in the tokenizer will bite a reasoning fine-tune.

It loads the tokenizer only. (a) Every registered template (LF's and the plugin's) encodes the probe
conversations through LF's SFT path and is compared with the tokenizer's own chat template
(`lf_thinkplugin.templates.parity`); (b) the ones with parity on every probe are named and one is
recommended; (c) the think tags and (d) the end-of-turn token are checked; and the tokenizer itself is
checked against its tokenizer.json (transformers 5 loads byte-level BPE tokenizers that declare
`LlamaTokenizerFast` through a SentencePiece pipeline that drops spaces and newlines).
`render_text` is the report as `lf-think doctor` prints it (and as a refused `template: auto` shows it).

Choice among templates with parity (they encode every probe identically, so any is correct):
the plugin's templates first (made for these official templates, and they keep parity under every
`enable_thinking` mode), preferring one made for the model's config.json `model_type`; then LF's
text-only templates before multimodal ones; then by name; `native` (the model's own chat template, for
any family: native.py) last, so it is chosen where no registered template has full parity. A folder with a
processor whose media `native` verifies (templates/media.py) gets `native` first: the probes are text, and only
`native` renders its images and videos as the processor does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..options import OptionsError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class DoctorError(ValueError):
    """The model path cannot be diagnosed (no tokenizer, no chat template, unknown template)."""


@dataclass
class Finding:
    level: str  # "ok" | "info" | "warn" | "error"
    topic: str
    message: str


@dataclass
class Report:
    model: str
    tokenizer_class: str
    enable_thinking: bool | None
    findings: list[Finding] = field(default_factory=list)
    scan: list[Any] = field(default_factory=list)  # TemplateResult, first failure only
    detail: Any | None = None  # TemplateResult of the checked template, every probe
    requested: str | None = None
    recommended: str | None = None
    seconds: float = 0.0
    folder: str | None = None  # where the files were read: the HF cache snapshot of a hub id
    scanner: Any = field(default=None, repr=False)  # reused by render_table
    media: Any = None  # MediaReport of a vision-language model folder (serving/media.py; `lf-think doctor` sets it)

    @property
    def with_parity(self) -> list[str]:
        return [r.template for r in self.scan if r.ok]

    @property
    def ok(self) -> bool:
        if any(f.level == "error" for f in self.findings):
            return False
        if self.media is not None and not self.media.ok:
            return False
        if self.requested:
            return self.detail is not None and self.detail.ok
        return self.recommended is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "folder": self.folder,
            "tokenizer_class": self.tokenizer_class,
            "enable_thinking": self.enable_thinking,
            "ok": self.ok,
            "requested": self.requested,
            "recommended": self.recommended,
            "templates_with_parity": self.with_parity,
            "findings": [asdict(f) for f in self.findings],
            "template": self.detail.to_dict() if self.detail else None,
            "scan": [_scan_entry(r) for r in self.scan],
            "seconds": round(self.seconds, 2),
            **({"media": self.media.to_dict()} if self.media is not None else {}),
        }


def _scan_entry(result: Any) -> dict[str, Any]:
    failure = result.first_failure
    return {
        "template": result.template,
        "plugin": result.plugin,
        "parity": result.ok,
        "first_failure": None if failure is None else asdict(failure),
    }


def has_tokenizer(path: str | Path) -> bool:
    folder = Path(path)
    return folder.is_dir() and any((folder / name).is_file() for name in TOKENIZER_FILES)


def model_folder(model: str) -> str:
    """A model folder, or the local snapshot of a hub id (HF cache, as LF resolves it; offline under HF_HUB_OFFLINE)."""
    from ..loading.hub import ModelNotFound, local_dir

    try:
        return str(local_dir(model))
    except ModelNotFound as err:
        raise DoctorError(str(err)) from None


def load_tokenizer(model: str) -> tuple[Any, list[Finding]]:
    """The tokenizer LF would load (AutoTokenizer), or a faithful one when that one is broken; `model` is a
    folder or a hub id."""
    from transformers import AutoTokenizer

    model_path = model_folder(model)
    if not has_tokenizer(model_path):
        raise DoctorError(
            f"no tokenizer in {model_path!r} (looked for {', '.join(TOKENIZER_FILES)}); "
            "pass the folder of a saved model or tokenizer"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    except Exception as err:  # noqa: BLE001  (whatever transformers raises, the user gets the path and the reason)
        raise DoctorError(f"cannot load the tokenizer in {model_path!r}: {err}") from None
    from ..loading.tokenizer import faithful

    tokenizer, found = faithful(tokenizer, model_path, local_files_only=True)
    findings = [] if found is None else [
        Finding("error", "tokenizer", found.describe() + " Parity here is checked on tokenizer.json as it is meant to be read.")
    ]
    if not tokenizer.chat_template:
        raise DoctorError(
            f"the tokenizer in {model_path!r} has no chat template, so there is no official rendering to match; "
            "pick a template by hand (`template: NAME`)"
        )
    return tokenizer, findings


def _model_type(model_path: str) -> str | None:
    config = Path(model_path) / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            return None
    return None


def choose(results: Sequence[Any], model_type: str | None, media: bool = False) -> str | None:
    """The recommended template among those with parity (rule in the module docstring)."""
    from llamafactory.data.template import TEMPLATES

    from . import PLUGIN_TEMPLATES

    plugin_order = {t.name: i for i, t in enumerate(PLUGIN_TEMPLATES)}
    made_for = {t.name for t in PLUGIN_TEMPLATES if model_type in t.model_types}

    def key(name: str) -> tuple:
        if name == "native":  # the model's own template: where no registered template has full parity
            return (-1 if media else 2, False, 0, name)
        if name in plugin_order:
            return (0, name not in made_for, plugin_order[name], name)
        multimodal = type(TEMPLATES[name].mm_plugin).__name__ != "BasePlugin"
        return (1, multimodal, 0, name)

    names = sorted((r.template for r in results if r.ok), key=key)
    return names[0] if names else None


def _is_special(tokenizer: Any, token_id: int) -> bool:
    added = tokenizer.added_tokens_decoder.get(token_id)
    return token_id in set(tokenizer.all_special_ids) or bool(added is not None and added.special)


def check_think_tags(tokenizer: Any, fmt: Any = None) -> list[Finding]:
    """Each tag of the family's reasoning markup (the learnt format's, else the data's `<think>` tags): one token,
    and whether decoding keeps it. gpt-oss's channel tags are special by design: its parser reads token ids."""
    from .format import _TAG, DATA_MARKUP

    markup = fmt.markup if fmt is not None and fmt.markup else DATA_MARKUP
    tags = list(dict.fromkeys(tag for part in markup for tag in (_TAG.findall(part) or [part])))
    parser = getattr(fmt, "reasoning_parser", None)
    findings = []
    for tag in tags:
        ids = tokenizer.encode(tag, add_special_tokens=False)
        if len(ids) != 1:
            findings.append(
                Finding(
                    "info",
                    "think tags",
                    f"`{tag}` is not in the vocabulary ({len(ids)} tokens {ids}); templates still train it as text, "
                    "`thinkplugin.token_init` adds it as one token",
                )
            )
        elif _is_special(tokenizer, ids[0]) and parser == "openai_gptoss":
            findings.append(Finding("ok", "think tags", f"`{tag}` (id {ids[0]}) is a special token of the harmony "
                                    "format: vLLM's `openai_gptoss` parser reads the channels from the token ids"))
        elif _is_special(tokenizer, ids[0]):
            findings.append(
                Finding(
                    "warn",
                    "think tags",
                    f"`{tag}` (id {ids[0]}) is a special token: decoding with skip_special_tokens=True (vLLM's default) "
                    "strips it, so clients cannot tell reasoning from answer. Fix: serve with a reasoning parser "
                    f"(vLLM `--reasoning-parser {parser or 'qwen3'}`, as the serving bundle's SERVING.md names it) or "
                    "`skip_special_tokens: false`, or re-add the tag as a normal (non-special) added token",
                )
            )
        else:
            findings.append(Finding("ok", "think tags", f"`{tag}` is one token (id {ids[0]}), not special: decoding keeps it"))
    return findings


def _learnt(tokenizer: Any) -> Any:
    """The reasoning format learnt from the tokenizer's chat template, or None where it cannot be learnt."""
    from .format import NativeTemplateError, learn

    try:
        return learn(tokenizer)
    except NativeTemplateError:
        return None


def _generation_eos(model_path: str, tokenizer: Any) -> tuple[set[int], str]:
    for name in ("generation_config.json", "config.json"):
        path = Path(model_path) / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if value is not None:
                return set(value if isinstance(value, list) else [value]), name
    return {tokenizer.eos_token_id}, "the tokenizer's eos_token (no generation_config.json / config.json)"


def check_end_of_turn(model_path: str, tokenizer: Any, scanner: Any, detail: Any | None) -> list[Finding]:
    from .probes import PROBES

    findings = []
    expected = scanner.official.turns(PROBES[0])[0].response_ids or []
    eot = next((i for i in expected if _is_special(tokenizer, i)), None)
    if eot is None:
        findings.append(
            Finding("warn", "end of turn", "the official template ends an assistant turn with no special token; "
                    "generation can only stop on a stop string")
        )
        return findings
    name = tokenizer.convert_ids_to_tokens(eot)
    if detail is not None:  # the first probe's response, when it matches, ends with the official end of turn
        findings.append(
            Finding("ok", "end of turn", f"`{name}` ({eot}) ends the trained responses of `{detail.template}`")
            if detail.probes[0].ok
            else Finding("error", "end of turn", f"`{detail.template}` does not train `{name}` ({eot}) as the official template renders it")
        )
    stops, source = _generation_eos(model_path, tokenizer)
    if eot in stops:
        findings.append(Finding("ok", "end of turn", f"`{name}` ({eot}) stops generation ({source} eos_token_id {sorted(stops)})"))
    else:
        findings.append(
            Finding(
                "warn",
                "end of turn",
                f"`{name}` ({eot}) is not an eos_token_id in {source} ({sorted(stops)}): generation runs past the end "
                f"of the turn. Fix: add {eot} to eos_token_id in generation_config.json",
            )
        )
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id:
        findings.append(
            Finding(
                "warn",
                "end of turn",
                f"pad token == eos token (`{tokenizer.eos_token}`, {tokenizer.eos_token_id}): collators that mask labels "
                "by pad id (e.g. TRL's DataCollatorForLanguageModeling, many scripts) also mask every EOS, and the model "
                "never learns to stop. LF's SFT collator pads labels with IGNORE_INDEX and is not affected; set a "
                "distinct pad token for other trainers",
            )
        )
    return findings


def diagnose(
    model_path: str, template: str | None = None, enable_thinking: bool | None = True, mask_history: bool = False,
    settings: dict | None = None,
) -> Report:
    """Load the tokenizer, scan every registered template, check the chosen (or given) one in full.

    enable_thinking / mask_history: LF's data arguments of the run (they change how LF's templates encode);
    settings: the chat template's other keyword arguments (checked against what it reads: DoctorError)."""
    from llamafactory.data.template import TEMPLATES

    from . import register_templates
    from .parity import Scanner

    started = time.perf_counter()
    register_templates()
    if template is not None and template not in TEMPLATES:
        raise DoctorError(_unknown_template(template))
    folder = model_folder(model_path)
    tokenizer, findings = load_tokenizer(folder)
    from .probes import SCAN_PROBES

    if settings:
        from .format import NativeTemplateError, learn
        from .settings import SettingsError, TemplateSettings

        try:
            settings = TemplateSettings(tokenizer, learn(tokenizer)).check(settings, enable_thinking, "--template-kwargs")
        except (SettingsError, NativeTemplateError) as err:
            raise DoctorError(str(err)) from None
    scanner = Scanner(tokenizer, enable_thinking, probes=SCAN_PROBES, mask_history=mask_history, settings=settings)
    report = Report(model_path, type(tokenizer).__name__, enable_thinking, findings=findings, requested=template,
                    folder=folder, scanner=scanner)
    report.scan = scanner.scan()
    from .media import PROCESSOR_PLUGINS, processor_class

    report.recommended = choose(report.scan, _model_type(folder), media=bool(folder) and processor_class(folder) in PROCESSOR_PLUGINS)
    checked = template or report.recommended
    if checked is not None:
        report.detail = scanner.check(checked)
    report.findings += check_think_tags(tokenizer, _learnt(tokenizer))
    report.findings += check_end_of_turn(folder, tokenizer, scanner, report.detail)
    report.seconds = time.perf_counter() - started
    return report


def _unknown_template(name: str) -> str:
    import difflib

    from llamafactory.data.template import TEMPLATES

    close = difflib.get_close_matches(name, list(TEMPLATES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown template {name!r}.{hint} Known: {', '.join(sorted(TEMPLATES))}"


def resolve_template(model_path: str, enable_thinking: bool | None = True, mask_history: bool = False) -> str:
    """`thinkplugin.template: auto`: the template with full parity for the tokenizer at model_path.

    Pass the run's LF `enable_thinking` / `mask_history` where known (LF's defaults otherwise)."""
    try:
        report = diagnose(model_path, enable_thinking=enable_thinking, mask_history=mask_history)
    except DoctorError as err:
        raise OptionsError(f"`thinkplugin.template: auto` cannot pick a template: {err}") from None
    # A tokenizer class that corrupts ids is an error for the checkpoint (other tools misread it), not for
    # this run: plugin runs load it faithfully (loading/tokenizer.py) and save the faithful one.
    misread = [f for f in report.findings if f.topic == "tokenizer" and f.level == "error"]
    partial: list[str] = []
    if report.recommended is None and any(r.template == "native" for r in report.scan):
        # No template renders every probe shape: the model's own template still trains every sample whose
        # shape it renders. A probe shape the data does not hold never blocks a run; a sample that cannot be
        # rendered is reported at tokenization (left as context), and a dataset with nothing trained is refused.
        # A template that renders no probe shape at all (it drops the answers) trains nothing: refused here.
        native = report.scanner.check("native")
        if native.passed:
            report.recommended, report.detail = "native", native
            partial = [p.probe for p in native.probes if not p.ok]
            report.findings = [f for f in report.findings if not (f.topic == "end of turn" and f.level == "error")] \
                + check_end_of_turn(report.folder or model_path, report.scanner.tokenizer, report.scanner, native)
    blocking = [f for f in report.findings if f.level == "error" and f not in misread]
    if blocking or report.recommended is None:
        raise OptionsError(
            f"`thinkplugin.template: auto` found no usable template for {model_path}:\n{render_text(report)}\n"
            "Override with `thinkplugin.template: NAME` (or LF's `template: NAME`) once you have checked it with "
            f"`lf-think doctor --model {model_path} --template NAME`."
        )
    tied = [n for n in report.with_parity if n != report.recommended]
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        for finding in misread:
            print(f"[lf_thinkplugin] warning: {finding.message}", flush=True)
        if partial:
            print(f"[lf_thinkplugin] warning: template: auto -> native, although the model's chat template does not "
                  f"render these probe shapes as the model generates them: {', '.join(partial)}. Samples of those shapes "
                  "are named at tokenization and left untrained; the rest train. `lf-think doctor --model "
                  f"{model_path} --template native` shows each probe.", flush=True)
        print(
            f"[lf_thinkplugin] template: auto -> {report.recommended} (token parity with {model_path}'s chat template "
            f"on {report.detail.passed}/{report.detail.total} probes"
            + (f"; also identical: {', '.join(tied)}" if tied else "")
            + f"; {report.seconds:.1f}s)",
            flush=True,
        )
    return report.recommended


def _mark(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def render_text(report: Report) -> str:
    where = "" if report.folder in (None, report.model) else f" ({report.folder})"
    lines = [f"lf-think doctor: {report.model}{where}", f"  tokenizer: {report.tokenizer_class}, enable_thinking={_mode(report.enable_thinking)}"]
    lines.append(f"  templates with parity on every probe: {', '.join(report.with_parity) or 'none'}")
    if report.recommended:
        lines.append(f"  recommended: {report.recommended}")
    near = sorted((r for r in report.scan if not r.ok and r.passed), key=lambda r: -r.passed)[:5]
    if near:
        lines.append("  closest without parity (first failing probe):")
        lines += [f"    {r.template:26s} {r.first_failure.probe}: {r.first_failure.summary()}" for r in near]
    if report.detail is not None:
        detail = report.detail
        lines.append(f"\n  probes with `{detail.template}`: {detail.passed}/{detail.total}")
        lines.append(f"    {'probe':34s} {'turns':6s} {'trained':8s} result")
        for p in detail.probes:
            trained = ",".join(map(str, p.trained_turns)) or "-"
            lines.append(f"    {p.probe:34s} {p.turns:<6d} {trained:8s} {p.summary()}")
            if p.divergence is not None and p.divergence.part != "turns":
                lines.append(f"      official: {p.divergence.expected_context!r}")
                lines.append(f"      template: {p.divergence.got_context!r}")
    if report.media is not None:
        from ..serving.media import render_media

        lines += render_media(report.media)
    lines.append("")
    lines += [f"  [{f.level}] {f.topic}: {f.message}" for f in report.findings]
    lines.append(f"\n  verdict: {_mark(report.ok)} ({report.seconds:.1f}s)")
    return "\n".join(lines)


def _mode(value: bool | None) -> str:
    return {True: "true", False: "false", None: "auto"}[value]
