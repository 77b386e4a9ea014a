"""`lf-think eval --sweep NAME=V1,V2,...` (and `eval_think.sweep`): the same prompts under each value of one
template setting (`reasoning_effort=low,medium,high`, `thinking_budget=256,1024`), and whether reasoning
length follows it.

Per value: reasoning tokens of every output of the mode (mean, median, p90; outputs without reasoning count
0, so a model that stops reasoning shows it), the well-formed rate and accuracy. `rises`: the mean never
falls from one value to the next, in the order given, and the last is above the first; `ratio`: last mean
over first mean.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Optional, Sequence

from .metrics import Output, aggregate


class SweepError(ValueError):
    """A bad --sweep / --template-kwargs; the message is for the user as is."""


def parse_value(text: str) -> Any:
    """`low` -> "low", `512` -> 512, `true` -> True (JSON where the text is JSON, else the text)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, (bool, int, float, str)) else text


def parse_sweep(text: Optional[str]) -> Optional[tuple[str, list[Any]]]:
    if not text:
        return None
    name, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not name.strip() or len(items) < 2:
        raise SweepError(f"--sweep {text!r}: expected NAME=V1,V2[,...] with at least two values, e.g. "
                         "reasoning_effort=low,medium,high")
    parsed = [parse_value(v) for v in items]
    if len({json.dumps(v) for v in parsed}) != len(parsed):
        raise SweepError(f"--sweep {text!r}: a value is repeated")
    return name.strip(), parsed


def parse_kwargs(text: Optional[str], where: str = "--template-kwargs") -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SweepError(f"{where} {text!r} is not JSON ({err}); e.g. '{{\"reasoning_effort\": \"low\"}}'") from None
    if not isinstance(value, dict):
        raise SweepError(f"{where} {text!r}: expected a JSON object, e.g. '{{\"reasoning_effort\": \"low\"}}'")
    return value


def settings_list(base: dict[str, Any], sweep: Optional[tuple[str, list[Any]]]) -> list[tuple[Optional[str], dict]]:
    """(value label, settings) to run: one per swept value over `base`, or `base` alone (label None)."""
    if sweep is None:
        return [(None, dict(base))]
    name, values = sweep
    return [(value_label(v), {**base, name: v}) for v in values]


def value_label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def lengths(outputs: Sequence[Output]) -> dict[str, Any]:
    values = sorted(o.reasoning_tokens for o in outputs)
    if not values:
        return {"mean": None, "median": None, "p90": None}
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values),
            "p90": values[max(0, -(-9 * len(values) // 10) - 1)]}


def row(outputs: Sequence[Output], mode: str) -> Optional[dict[str, Any]]:
    """One value's numbers in `mode`: n, reasoning tokens, well-formed rate, accuracy, statuses."""
    group = [o for o in outputs if o.mode == mode]
    if not group:
        return None
    metrics = aggregate(group)[mode]
    return {"n": len(group), "reasoning_tokens": lengths(group), "well_formed": metrics["well_formed"],
            "accuracy": metrics["accuracy"], "status": metrics["status"], "end_of_turn": metrics["end_of_turn"]}


def trend(rows: list[Optional[dict[str, Any]]]) -> dict[str, Any]:
    """Whether the mean reasoning length rises along the values (see the module docstring)."""
    means = [r["reasoning_tokens"]["mean"] if r else None for r in rows]
    if any(m is None for m in means) or len(means) < 2:
        return {"rises": None, "ratio": None, "means": means}
    rises = all(b >= a for a, b in zip(means, means[1:])) and means[-1] > means[0]
    ratio = round(means[-1] / means[0], 2) if means[0] else None
    return {"rises": rises, "ratio": ratio, "means": means}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def render_sweep(sweep: dict[str, Any]) -> str:
    """The sweep's table: per mode, value and run, reasoning tokens (mean / median / p90), well-formed, accuracy."""
    runs = [r for r in ("model", "baseline") if sweep.get(r)]
    lines = [f"sweep {sweep['name']} = {', '.join(sweep['values'])}"]
    header = f"{'mode':<8}{'value':<12}" + "".join(
        f"{run + ': reasoning mean/median/p90':<38}{'well-formed':<13}{'accuracy':<10}" for run in runs)
    lines.append(header.rstrip())
    for mode in sweep["modes"]:
        for value in sweep["values"]:
            cells = []
            for run in runs:
                r = sweep[run][mode]["values"].get(value)
                if r is None:
                    cells.append(" " * 61)
                    continue
                t = r["reasoning_tokens"]
                acc = r["accuracy"].get("normalised")
                cells.append(f"{_fmt(t['mean']) + ' / ' + _fmt(t['median']) + ' / ' + _fmt(t['p90']):<38}"
                             f"{_fmt(r['well_formed']):<13}{_fmt(acc):<10}")
            lines.append((f"{mode:<8}{value:<12}" + "".join(cells)).rstrip())
        for run in runs:
            t = sweep[run][mode]["trend"]
            verdict = "-" if t["rises"] is None else ("yes" if t["rises"] else "no")
            ratio = f" ({t['ratio']}x from {sweep['values'][0]} to {sweep['values'][-1]})" if t["ratio"] is not None else ""
            lines.append(f"{mode}: reasoning length rises with {sweep['name']}: {run} {verdict}{ratio}")
    return "\n".join(lines)


def sweep_report(name: str, labels: list[str], modes: list[str], per_run: dict[str, dict[str, list[Output]]]) -> dict:
    """`per_run`: run ("model" / "baseline") -> value label -> its outputs."""
    out: dict[str, Any] = {"name": name, "values": labels, "modes": modes}
    for run, by_value in per_run.items():
        out[run] = {}
        for mode in modes:
            rows = [row(by_value.get(v, []), mode) for v in labels]
            out[run][mode] = {"values": {v: r for v, r in zip(labels, rows) if r is not None}, "trend": trend(rows)}
    return out


def write_sweep_chart(report: dict[str, Any], path: str) -> None:
    """Mean reasoning tokens (p90 as a whisker) and the well-formed rate, one series (colour) per value, the model
    beside the baseline, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = report["sweep"]
    runs = [r for r in ("model", "baseline") if sweep.get(r)]
    groups = [(mode, run) for mode in sweep["modes"] for run in runs]
    values = sweep["values"]
    width = 0.8 / len(values)
    colours = plt.get_cmap("viridis")([i / max(1, len(values) - 1) * 0.85 for i in range(len(values))])
    fig, (ax_len, ax_ok) = plt.subplots(1, 2, figsize=(3.0 + 1.6 * len(groups) * 2, 4.2))
    for i, value in enumerate(values):
        xs, means, p90s, oks = [], [], [], []
        for g, (mode, run) in enumerate(groups):
            r = sweep[run][mode]["values"].get(value)
            if r is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            means.append(r["reasoning_tokens"]["mean"] or 0.0)
            p90s.append(r["reasoning_tokens"]["p90"] or 0.0)
            oks.append(r["well_formed"] or 0.0)
        ax_len.bar(xs, means, width=width * 0.95, color=colours[i], label=f"{sweep['name']}={value}")
        ax_len.errorbar(xs, means, yerr=[[0] * len(means), [max(0.0, p - m) for p, m in zip(p90s, means)]], fmt="none",
                        ecolor="#424242", capsize=2, linewidth=0.8)
        ax_ok.bar(xs, oks, width=width * 0.95, color=colours[i], label=f"{sweep['name']}={value}")
        for x, ok in zip(xs, oks):
            ax_ok.text(x, ok + 0.02, f"{ok:.2f}", ha="center", va="bottom", fontsize=7)
    labels = [f"{mode}\n{run}" for mode, run in groups]
    for ax, title in ((ax_len, "reasoning tokens (mean; whisker: p90)"), (ax_ok, "well-formed rate")):
        ax.set_xticks(range(len(groups)), labels)
        ax.set_title(title, fontsize=10)
    ax_ok.set_ylim(0, 1.15)
    ax_ok.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"lf-think eval --sweep {sweep['name']}: {report['prompts']} prompts, max_new_tokens "
                 f"{report['max_new_tokens']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
