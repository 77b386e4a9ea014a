"""`lf-think export`: the serving bundle of a template, proven to render the training tokens.

    lf-think export --template NAME --tokenizer PATH_OR_HUB_ID --out DIR [--force] [--enable-thinking ...] [--num-ctx N]
    lf-think export --out OUTPUT_DIR [--force]     (a training output_dir: template and mode from thinkplugin_run.json)
    lf-think export --table FIXTURES_DIR [--write docs/serving.md]   (family x engine table, serving/table.py)

Writes into DIR:
- `chat_template.jinja`: vLLM's `--chat-template`, and the tokenizer's own chat template (transformers
  reads it from a model folder). The plugin's templates ship theirs; for an LF template it is the
  tokenizer's own template when that has parity with the template, else LF's generated Jinja;
- `Modelfile`: Ollama (serving/ollama.py);
- `lmdeploy_chat_template.json`: LMDeploy `ChatTemplateConfig` fields (serving/lmdeploy.py);
- `SERVING.md`: the commands per engine and what each file cannot express;
- a vision-language model trained with `native`: its processor files with the pixel limits the run trained with
  (`thinkplugin_run.json`'s `media`) and a Media section in SERVING.md (serving/media.py).
The Jinja is checked against LF's training encoder on the doctor's probes before anything is written;
the result goes into SERVING.md and the exit status (0 parity, 1 none, 2 bad input).
`make_callbacks(opts)` writes the same bundle into output_dir (and each checkpoint) after training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .bundle import BUNDLE, Bundle, ExportError, adds_bos, build_bundle, write_bundle  # noqa: F401  (the package's API)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lf-think export", description="Serving bundle (vLLM, SGLang, Ollama, LMDeploy) of a template.")
    parser.add_argument("--template", help="registered LF or plugin template the model was trained with "
                        "(default: the one --out's thinkplugin_run.json records)")
    parser.add_argument("--tokenizer", help="folder with the model's tokenizer, or its hub id (HF cache) "
                        "(default: --out, a training output_dir)")
    parser.add_argument("--out", help="folder to write the bundle into")
    parser.add_argument("--force", action="store_true", help="replace bundle files already in --out")
    parser.add_argument("--enable-thinking", choices=["true", "false", "auto"],
                        help="LF's enable_thinking of the run (default: as recorded, else true)")
    parser.add_argument("--num-ctx", type=int, help="write PARAMETER num_ctx into the Modelfile")
    parser.add_argument("--table", metavar="FIXTURES_DIR", help="print the family x engine serving table of `template: "
                        "native` for a fixtures folder (chat_templates/ and tokenizer folders) instead of exporting")
    parser.add_argument("--write", metavar="DOC", help="with --table: replace the table between the markers in DOC")
    return parser


def _table(args: argparse.Namespace) -> int:
    from .table import family_rows, render_table, write_table

    folder = Path(args.table)
    if not folder.is_dir() or not (folder / "chat_templates").is_dir():
        print(f"lf-think export: --table {args.table}: not a fixtures folder (it needs chat_templates/)", file=sys.stderr)
        return 2
    if args.write and not Path(args.write).is_file():
        print(f"lf-think export: --write {args.write}: no such file", file=sys.stderr)
        return 2
    table = render_table(family_rows(folder))
    if args.write:
        try:
            write_table(Path(args.write), table)
        except ValueError as err:
            print(f"lf-think export: {err}", file=sys.stderr)
            return 2
        print(f"wrote the table into {args.write}")
    else:
        print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    from ..templates.diagnose import DoctorError, load_tokenizer
    from .files import ExistingFiles

    from ..templates.record import RUN_FILE, read_record

    args = _parser().parse_args(argv)
    if args.table:
        return _table(args)
    if not args.out:
        print("lf-think export: name --out (the folder to write the bundle into), or --table FIXTURES_DIR", file=sys.stderr)
        return 2
    record = read_record(args.out) if args.template is None or args.tokenizer is None else None
    if (args.template is None or args.tokenizer is None) and not (record and record.get("template")):
        print(f"lf-think export: name --template and --tokenizer, or point --out at a training output_dir that holds "
              f"{RUN_FILE} (written by every plugin run); {args.out} has none", file=sys.stderr)
        return 2
    template = args.template or record["template"]
    recorded = record.get("enable_thinking", True) if record else True
    mode = {"true": True, "false": False, "auto": None}[args.enable_thinking] if args.enable_thinking else recorded
    if record is not None:
        print(f"from {record['path']}: template {template}, enable_thinking {mode}")
    try:
        tokenizer, findings = load_tokenizer(args.tokenizer or args.out)
        processor = _processor(args.tokenizer or args.out) if template == "native" else None
        bundle = build_bundle(template, tokenizer, mode, args.num_ctx, record.get("template_settings") if record else None,
                              processor, record.get("media") if record else None)
        written = write_bundle(bundle, Path(args.out), args.force)
    except (DoctorError, ExportError, ExistingFiles) as err:
        print(f"lf-think export: {err}", file=sys.stderr)
        return 2
    for finding in findings:
        print(f"[{finding.level}] {finding.topic}: {finding.message}", file=sys.stderr)
    parity = bundle.parity
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}")
    print(f"chat_template.jinja: parity with LF's training encoder on {parity.passed}/{parity.total} probes")
    for result in parity.probes:
        if not result.ok:
            print(f"  {result.probe}: {result.summary()}")
    for limit in bundle.lmdeploy_limits:
        print(f"lmdeploy_chat_template.json cannot express: {limit}")
    for report in bundle.native.reports if bundle.native is not None else []:
        print(f"{report.engine}: {report.how}; {report.parity}")
    if bundle.media is not None:
        size = bundle.media.trained_image
        print(f"media: {', '.join(bundle.media.files)} with the trained image limits (shortest_edge "
              f"{size.get('shortest_edge')}, longest_edge {size.get('longest_edge')} pixels)")
    return 0 if parity.ok else 1


def _processor(folder: str) -> Any:
    """The folder's multimodal processor where its class is verified (templates/media.py), else None."""
    from ..templates.diagnose import model_folder
    from ..templates.media import PROCESSOR_PLUGINS, processor_class

    path = model_folder(folder)
    if processor_class(path) not in PROCESSOR_PLUGINS:
        return None
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path, local_files_only=True)


def make_callbacks(opts: Any, settings: Any = None) -> list[Any]:
    """Trainer callbacks that write the serving bundle into output_dir and every checkpoint. `settings`: a callable
    giving the run's template settings record (RunContext.settings_record), or None."""
    from .callback import ServingBundleCallback

    return [ServingBundleCallback(settings)] if getattr(opts, "export_serving", True) else []
