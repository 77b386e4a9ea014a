"""`lf-think doctor`: the doctor's diagnosis (templates/diagnose.py) on the command line.

    lf-think doctor --model PATH_OR_HUB_ID [--template NAME] [--enable-thinking true|false|auto] [--mask-history]
                    [--template-kwargs JSON] [--json]
    lf-think doctor --table --model PATH [--model PATH ...]     markdown parity table (docs/templates.md)
    lf-think doctor --families FIXTURES_DIR                     family table of `template: native` (docs/templates.md)

A folder whose processor is a verified multimodal class (Qwen3-VL's) also gets a media section: probe
conversations with a generated image, encoded by `template: native` through LF and compared token for token with
the processor's own `apply_chat_template` (thinking on / off where the template has a switch), and the image
tokens of a 1024 x 1024 image: the processor's grid at the limits it serves with, the plugin's count, LF's count
at its default limits (serving/media.py).

Exit status: 0 when the checked template (or, without --template, some template) has parity and
nothing is broken (media probes included), 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..templates.diagnose import DoctorError, Report, diagnose, render_text

# Templates users reach for by habit; the docs table shows how each fares per model.
FOLKLORE = ("qwen", "qwen3", "qwen3_nothink", "deepseek3", "deepseekr1")


def render_table(reports: Sequence[Report], templates: Sequence[str]) -> str:
    """Markdown: model -> template -> parity, for docs/templates.md. Per model: the recommended template,
    the others given (habitual choices, the plugin's) unless they fail every probe and are the plugin's."""
    from ..templates import NAMES

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| model | tokenizer | template | parity (probes) | first divergence |", "|---|---|---|---|---|"]
    for report in reports:
        broken = any(f.topic == "tokenizer" and f.level == "error" for f in report.findings)
        loads = "misread by AutoTokenizer: set `tokenizer_class` (parity shown for tokenizer.json)" if broken else "ok"
        names = [report.recommended] if report.recommended else []
        names += [n for n in templates if n not in names]
        for name in names:
            result = report.scanner.check(name)
            if name in NAMES and not result.passed and name != report.recommended:
                continue
            failure = result.first_failure
            where = "" if failure is None else f"`{failure.probe}`: {failure.summary()}"
            label = f"**{name}**" if name == report.recommended else name
            status = f"{'yes' if result.ok else 'no'} ({result.passed}/{result.total})"
            rows.append(f"| {Path(report.model).name} | {loads} | {label} | {status} | {cell(where)} |")
    return "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lf-think doctor", description="Template parity and tokenizer checks for a model.")
    parser.add_argument("--model", action="append", help="model or tokenizer folder, or a hub id in the HF cache (repeat with --table)")
    parser.add_argument("--template", help="check this registered template in full instead of the recommended one")
    parser.add_argument(
        "--enable-thinking", default="true", choices=["true", "false", "auto"],
        help="LF's enable_thinking for the run: true (default), false, or auto (LF's null: per sample)",
    )  # fmt: skip
    parser.add_argument("--mask-history", action="store_true", help="LF's mask_history: true (train the last turn only)")
    parser.add_argument("--template-kwargs", help="JSON object of chat template settings of the run (e.g. "
                        "'{\"reasoning_effort\": \"low\"}'): parity with the template rendered with them")
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument("--table", action="store_true", help="markdown parity table for docs/templates.md")
    parser.add_argument("--families", metavar="DIR", help="family table of `template: native` for a fixtures folder "
                        "(tokenizer folders and chat_templates/*.jinja; stand-ins where a family has no tokenizer)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = {"true": True, "false": False, "auto": None}[args.enable_thinking]
    if args.families:
        from ..templates.families import family_rows, render_families

        if not Path(args.families).is_dir():
            print(f"lf-think doctor: --families {args.families}: no such folder", file=sys.stderr)
            return 2
        rows = family_rows(Path(args.families))
        print(render_families(rows))
        return 0 if all("error" not in r and "✗" not in r["on"] + r["off"] for r in rows) else 1
    if not args.model:
        print("lf-think doctor: --model is required (or --families DIR)", file=sys.stderr)
        return 2
    if len(args.model) > 1 and not args.table:
        print("lf-think doctor: several --model need --table", file=sys.stderr)
        return 2
    try:
        settings = None
        if args.template_kwargs:
            from ..evaluation.sweep import SweepError, parse_kwargs

            try:
                settings = parse_kwargs(args.template_kwargs)
            except SweepError as err:
                raise DoctorError(str(err)) from None
        reports = [diagnose(path, args.template, mode, args.mask_history, settings) for path in args.model]
        if not args.table:  # a vision-language model folder: media probes and image token counts
            from ..serving.media import media_report

            reports[0].media = media_report(reports[0].folder or args.model[0], mode)
    except DoctorError as err:
        print(f"lf-think doctor: {err}", file=sys.stderr)
        return 2
    if args.table:
        from ..templates import NAMES

        print(render_table(reports, [args.template] if args.template else list(NAMES) + list(FOLKLORE)))
    elif args.json:
        print(json.dumps(reports[0].to_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_text(reports[0]))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
