"""`lf-think eval`: does the model think as trained?

    lf-think eval --model DIR [--adapter DIR] [--baseline DIR] --data FILE_OR_LF_DATASET
                  [--dataset-dir DIR] [--modes think,nothink|data] [--max-new-tokens N] [--batch-size N]
                  [--limit N] [--template NAME] [--engine hf|vllm] [--device cpu|cuda] [--json]
                  [--outputs FILE.jsonl] [--chart FILE.png] [--template-kwargs JSON] [--sweep NAME=V1,V2,...]

Renders each prompt with the template the model was trained on, generates greedily (think mode:
`enable_thinking=True`, nothink: False), classifies every output (lf_thinkplugin.evaluation.metrics)
and prints a table per mode, the baseline (same prompt ids, other weights) side by side. Template settings
(`--template-kwargs`, checked against what the chat template reads) go to every prompt; `--sweep` runs the
prompts once per value of one setting and reports reasoning length per value (sweep.py). Prompts with images
(an `images` column, `<image>` placeholders) go through the model folder's processor, at the served or the
trained pixel limits (generate.load_media); the report adds how many had images and their image tokens. Progress
goes to stderr after each batch. Exit 0 when it ran; 2 on bad input or an engine that is not available.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from .generate import (
    EvalError,
    Prompter,
    generate_hf,
    generate_vllm,
    load_media,
    load_model,
    load_samples,
    load_tokenizer,
    load_vllm,
    prompter,
    trained_with,
)
from .metrics import (
    DATA,
    NOTHINK,
    NOTHINK_STATUSES,
    PARSERS,
    THINK,
    THINK_STATUSES,
    aggregate,
    classify,
    plan,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lf-think eval", description="Does the model think as trained? Well-formed "
                                "reasoning rates, vLLM parser splits, lengths and accuracy per mode.")
    p.add_argument("--model", required=True, help="model folder (a training output_dir, or the base model with --adapter)")
    p.add_argument("--adapter", help="LoRA adapter folder (a LoRA training output_dir)")
    p.add_argument("--baseline", help="model folder to compare with (e.g. the untrained base), same prompts")
    p.add_argument("--data", required=True, help="JSON / JSONL file, or an LF dataset name in --dataset-dir; rows may "
                   "carry `images` (paths relative to the dataset folder, `<image>` where each goes)")
    p.add_argument("--dataset-dir", default="data", help="folder of dataset_info.json for an LF dataset name")
    p.add_argument("--modes", help="comma-separated: think, nothink; or data: each prompt in the mode its reference "
                   "shows (think where it reasons, nothink where it answers directly); default think,nothink (think "
                   "with --sweep)")
    p.add_argument("--template-kwargs", help="JSON object of chat template settings for every prompt, e.g. "
                   "'{\"reasoning_effort\": \"low\"}' (checked against what the template reads)")
    p.add_argument("--sweep", help="NAME=V1,V2,...: run the prompts once per value of one template setting, e.g. "
                   "reasoning_effort=low,medium,high; reports reasoning tokens per value and whether they rise")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="first N prompts only")
    p.add_argument("--template", help="LF template (the plugin's or LF's own) to encode prompts with; default: the one the run recorded, else the tokenizer's chat template")
    p.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    p.add_argument("--device", default="cpu", help="torch device for --engine hf (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--outputs", help="write every output (text, status, parser split) to this JSONL file")
    p.add_argument("--chart", "--plot", dest="chart", help="write a PNG of the output shapes per mode (needs matplotlib)")
    return p


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if modes == [DATA]:
        return modes
    bad = [m for m in modes if m not in (THINK, NOTHINK)]
    if bad or not modes:
        raise EvalError(f"--modes {text!r}: use think, nothink, think,nothink or data")
    return modes


def _progress(name: str, mode: str, value: str | None, started: float) -> Any:
    """A line on stderr after each batch: which run, mode and setting, prompts done, seconds."""
    where = f"{name} {mode}" + (f" {value}" if value is not None else "")

    def report(done: int, total: int) -> None:
        print(f"[lf_thinkplugin] eval: {where}: {done}/{total} prompts, {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)

    return report


def run_model(name: str, model_dir: str, adapter: str | None, prompts: Prompter, work: list[tuple[str, list]],
              args: argparse.Namespace, settings: list[tuple[str | None, dict]] | None = None) -> dict[str, Any]:
    """Generate every (mode, sample) of `work` (see `plan`) with one model, once per (label, template settings) of
    `settings`, and classify the outputs. `metrics`: the first settings' (the only ones without a sweep);
    `by_value`: label -> outputs, for a sweep."""
    settings = settings or [(None, {})]
    started = time.perf_counter()
    vision = prompts.media is not None
    model = load_model(model_dir, adapter, args.device, vision) if args.engine == "hf" else load_vllm(model_dir, adapter)
    load_s = time.perf_counter() - started
    records, timing, by_value = [], {}, {}
    for value, kwargs in settings:
        outputs = by_value.setdefault(value, [])
        for mode, samples in work:
            media = None
            if vision:  # prompts with images through the processor (their tensors beside the ids)
                inputs = [prompts.inputs(s, mode == THINK, kwargs) for s in samples]
                ids, media = [i for i, _ in inputs], [m for _, m in inputs]
            else:
                ids = [prompts.ids(s.messages, mode == THINK, kwargs) for s in samples]
            t0 = time.perf_counter()
            if args.engine == "hf":
                generated = generate_hf(model, prompts.tokenizer, ids, args.max_new_tokens, set(prompts.markup.stop_ids),
                                        args.batch_size, progress=_progress(name, mode, value, t0),
                                        **({"media": media} if media is not None else {}))
            else:
                generated = generate_vllm(model, adapter, ids, args.max_new_tokens, set(prompts.markup.stop_ids))
            seconds = time.perf_counter() - t0
            for sample, prompt_ids, gen in zip(samples, ids, generated):
                out = classify(gen, prompts.tokenizer, prompts.markup, mode, args.max_new_tokens, sample.reference)
                outputs.append(out)
                seen = {"images": sample.images, "image_tokens": prompts.media.tokens[sample.where],
                        "prompt_ids": prompt_ids} if sample.images else {}
                records.append({"model": name, "prompt": sample.messages[-1]["content"], "reference": sample.reference,
                                **({"settings": kwargs} if kwargs else {}), **seen, **out.to_dict()})
            tokens = sum(o.tokens for o in outputs if o.mode == mode)
            key = mode if value is None else f"{mode} {value}"
            timing[key] = {"seconds": round(seconds, 3), "generated_tokens": tokens,
                           "tokens_per_s": round(tokens / seconds, 1) if seconds else None}
    first = by_value[settings[0][0]]
    return {"model": model_dir, "adapter": adapter, "load_seconds": round(load_s, 3), "timing": timing,
            "metrics": aggregate(first), "_records": records, "_by_value": by_value}


def _images(args: argparse.Namespace, prompts: Prompter, samples: list) -> None:
    """Prompts with images: the processor of the model folder (the adapter's where it saved one) renders them,
    at the served or the trained pixel limits (generate.load_media); refused for vLLM and a text-only model."""
    first = next(s for s in samples if s.images)
    if args.engine != "hf":
        raise EvalError(f"{first.where} has images: --engine {args.engine} does not take image prompts here yet; "
                        "use --engine hf")
    adapter = args.adapter and (Path(args.adapter) / "preprocessor_config.json").is_file()
    prompts.media = load_media(args.adapter if adapter else args.model, [args.adapter, args.model], samples)
    if args.baseline:  # the baseline is shown the same pixels: it must read images too
        load_media(args.baseline, [], samples)
    name = prompts.template
    prompts.notes.append("prompts with images: the processor's chat template with typed image chunks"
                         + (f" (LF template {name} renders the text-only prompts)" if name and name != "native" else ""))
    prompts.notes.append(prompts.media.describe())


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


NOT_WELL_FORMED_OK = "ok shape, not well-formed"  # status ok, but no end of turn or tags spelled out (chart too)


def _ok_not_well_formed(metrics: dict[str, Any]) -> float | None:
    ok, well = metrics["status"].get("ok"), metrics["well_formed"]
    return None if ok is None or well is None else max(0.0, ok - well)


def render_table(report: dict[str, Any]) -> str:
    runs = [("model", report["model"])] + ([("baseline", report["baseline"])] if report.get("baseline") else [])
    modes = [m for m in report["modes"] if any(m in r["metrics"] for _, r in runs)]
    parser = report["parser"]
    rows: list[tuple[str, Any]] = []

    def row(label: str, get) -> None:
        cells = []
        for mode in modes:
            for _, run in runs:
                m = run["metrics"].get(mode)
                cells.append(_fmt(get(m, mode)) if m is not None else "")
        rows.append((label, cells))

    row("well-formed", lambda m, _: m["well_formed"])
    # the `ok` shape counts outputs that never end their turn or spell tags out: shown apart, as the chart does
    row(f"  {NOT_WELL_FORMED_OK}", lambda m, _: _ok_not_well_formed(m))
    for status in THINK_STATUSES + NOTHINK_STATUSES[1:]:
        row(f"  {status}", lambda m, _, s=status: m["status"].get(s, None) if s in m["status"] else None)
    row("tags spelled out", lambda m, _: m["spelled_out_tags"])
    row("end of turn", lambda m, _: m["end_of_turn"])
    row("cut at token limit", lambda m, _: m["truncated"])
    row("reasoning tokens (mean)", lambda m, _: m["reasoning_tokens"])
    row("answer tokens (mean)", lambda m, _: m["answer_tokens"])
    row(f"vLLM {parser}: empty content", lambda m, _: m["parsers"][parser]["empty_content"])
    row(f"vLLM {parser}: reasoning leaked", lambda m, _: m["parsers"][parser]["leaked"])
    for kind in ("exact", "normalised", "numeric"):
        row(f"accuracy {kind}", lambda m, _, k=kind: m["accuracy"][k])
    row("tokens/s", lambda m, mode: None)
    rows[-1] = ("tokens/s", [_fmt(run["timing"][mode]["tokens_per_s"], 1) if mode in run["timing"] else ""
                             for mode in modes for _, run in runs])
    width = max(len(label) for label, _ in rows) + 2
    col = 10
    first = runs[0][1]["metrics"]
    titles = [f"{m} (n={first[m]['n']})" if m in first else m for m in modes]
    header1 = " " * width + "".join(f"{t:<{col * len(runs)}}" for t in titles)
    header2 = " " * width + "".join(f"{name:<{col}}" for _ in modes for name, _ in runs)
    lines = [header1.rstrip(), header2.rstrip()] + [f"{label:<{width}}" + "".join(f"{c:<{col}}" for c in cells) for label, cells in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stdout = sys.stdout
    if args.json:  # stdout carries the JSON only: anything libraries print goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            return _main(args, stdout)
    return _main(args, stdout)


def _main(args: argparse.Namespace, stdout: Any) -> int:
    try:
        from .sweep import SweepError, parse_kwargs, parse_sweep, settings_list

        try:
            base_settings, sweep = parse_kwargs(args.template_kwargs), parse_sweep(args.sweep)
        except SweepError as err:
            raise EvalError(str(err)) from None
        modes = _modes(args.modes or ("think" if sweep else "think,nothink"))
        if args.chart:
            from .chart import available

            if not available():
                raise EvalError("--chart needs matplotlib, which is not importable here (pip install matplotlib)")
        if args.max_new_tokens < 1:
            raise EvalError("--max-new-tokens must be at least 1")
        if args.engine == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError as err:
                raise EvalError(f"--engine vllm needs vLLM, which is not importable here ({err}); install it "
                                "(pip install vllm, on a GPU machine) or use --engine hf") from None
        for label, folder in (("--model", args.model), ("--adapter", args.adapter), ("--baseline", args.baseline)):
            if folder and not Path(folder).is_dir():
                raise EvalError(f"{label} {folder}: not a folder")
        samples = load_samples(args.data, args.dataset_dir, args.limit)
        tok_dir = args.adapter if args.adapter and (Path(args.adapter) / "tokenizer_config.json").is_file() else args.model
        tokenizer = load_tokenizer(tok_dir)
        info = trained_with(args.adapter, args.model)
        prompts = prompter(tokenizer, args.model, info, args.template)
        if not base_settings and info.settings:  # prompts as trained: the run's settings, unless given here
            base_settings = dict(info.settings)
            prompts.notes.append(f"template settings {json.dumps(base_settings)} (the run's chat_template_kwargs)")
        thinking = modes != [NOTHINK]
        settings = [(label, prompts.check_settings(kw, thinking, "--sweep" if label is not None else "--template-kwargs")
                     if kw else {}) for label, kw in settings_list(base_settings, sweep)]
        if any(s.images for s in samples):
            _images(args, prompts, samples)
    except EvalError as err:
        print(f"[lf_thinkplugin] eval: error: {err}", file=sys.stderr)
        return 2
    notes = list(prompts.notes)
    work = plan(modes, samples)
    if modes == [DATA]:
        notes.append("modes from the data: " + ", ".join(f"{mode} for {len(group)} prompts" for mode, group in work))
    if any(mode == NOTHINK for mode, _ in work) and not prompts.has_switch:
        work = [(mode, group) for mode, group in work if mode != NOTHINK]
        notes.append("nothink skipped: the template's generation prompt does not change with enable_thinking")
        if not work:
            print("[lf_thinkplugin] eval: error: no mode left to run (the template has no thinking switch)", file=sys.stderr)
            return 2
    modes = [mode for mode, _ in work]
    report: dict[str, Any] = {"data": args.data, "prompts": len(samples), "modes": modes,
                              "max_new_tokens": args.max_new_tokens, "engine": args.engine, "template": prompts.template,
                              "prompt_opens_think": prompts.markup.prompt_opens_think, "parser": prompts.markup.parser,
                              "parsers": list(PARSERS), "notes": notes}
    if base_settings:
        report["template_kwargs"] = base_settings
    if prompts.media is not None:  # filled as the prompts render (image tokens per prompt): set after the runs
        report["images"] = {}
    report["model"] = run_model("model", args.model, args.adapter, prompts, work, args, settings)
    report["baseline"] = run_model("baseline", args.baseline, None, prompts, work, args, settings) if args.baseline else None
    records = report["model"].pop("_records") + (report["baseline"].pop("_records") if report["baseline"] else [])
    by_value = {run: report[run].pop("_by_value") for run in ("model", "baseline") if report[run]}
    if prompts.media is not None:
        tokens = list(prompts.media.tokens.values())
        report["images"] = {"prompts_with_images": sum(1 for s in samples if s.images),
                            "images": sum(len(s.images) for s in samples),
                            "image_tokens_mean": sum(tokens) / len(tokens) if tokens else None,
                            **prompts.media.to_dict()}
    if sweep is not None:
        from .sweep import sweep_report

        report["sweep"] = sweep_report(sweep[0], [label for label, _ in settings], modes, by_value)
    if args.outputs:
        Path(args.outputs).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    if args.chart:
        from .chart import write_chart
        from .sweep import write_sweep_chart

        write_sweep_chart(report, args.chart) if sweep is not None else write_chart(report, args.chart)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False), file=stdout)
    else:
        title = f"lf-think eval: {args.model}" + (f" + {args.adapter}" if args.adapter else "")
        title += f" vs baseline {args.baseline}" if args.baseline else ""
        print(title)
        print(f"{len(samples)} prompts from {args.data}; max_new_tokens {args.max_new_tokens}; engine {args.engine}; "
              f"vLLM parser {prompts.markup.parser}")
        if prompts.media is not None:
            img = report["images"]
            print(f"images: {img['prompts_with_images']} of {len(samples)} prompts with images ({img['images']} images); "
                  f"image tokens per prompt with images (mean) {_fmt(img['image_tokens_mean'], 1)}; pixel limits "
                  f"from the {'trained run' if img['pixel_limits_from'] == 'run' else 'processor, as served'}")
        for note in notes:
            print(f"note: {note}")
        if sweep is not None:
            from .sweep import render_sweep

            print(render_sweep(report["sweep"]))
        else:
            print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
