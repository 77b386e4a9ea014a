"""`lf-think eval --chart FILE.png`: the output shapes per mode as stacked bars, model beside baseline.

matplotlib is optional (not a dependency of the plugin); without it the eval refuses `--chart`.
"""

from __future__ import annotations

from typing import Any

from .metrics import NOTHINK_STATUSES, THINK_STATUSES

_COLOURS = {"ok": "#2e7d32", "ok_not_well_formed": "#a5d6a7", "empty": "#9e9d24", "unclosed": "#ef6c00", "missing": "#c62828", "misplaced": "#6a1b9a",
            "thinks_when_off": "#ad1457"}


# the legend's words: the table's (cli.py) for the same shares
_LABELS = {"ok": "well-formed", "ok_not_well_formed": "ok shape, not well-formed"}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def segments(metrics: dict[str, Any], mode: str) -> list[tuple[str, float]]:
    """One bar's stacked parts: (part, share) in drawing order. The `ok` shape is split as the table splits it:
    well-formed (green), and ok but not well-formed (no end of turn, tags spelled out; hatched), so a model
    that never ends its turn is never a green bar over a well-formed rate of 0."""
    out: list[tuple[str, float]] = []
    for status in THINK_STATUSES if mode == "think" else NOTHINK_STATUSES:
        rate = metrics["status"].get(status) or 0.0
        if status == "ok":
            well = min(rate, metrics["well_formed"] or 0.0)
            out += [("ok", well), ("ok_not_well_formed", rate - well)]
        else:
            out.append((status, rate))
    return out


def write_chart(report: dict[str, Any], path: str) -> None:
    """Stacked status rates per (mode, model / baseline) bar, with the well-formed rate written on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("model", report["model"])] + ([("baseline", report["baseline"])] if report.get("baseline") else [])
    bars = [(f"{mode}\n{name}", run["metrics"][mode], mode) for mode in report["modes"] for name, run in runs
            if mode in run["metrics"]]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(bars), 4.2))
    seen = set()
    for x, (_, metrics, mode) in enumerate(bars):
        bottom = 0.0
        for part, share in segments(metrics, mode):
            label = _LABELS.get(part, part) if part not in seen else None
            seen.add(part)
            ax.bar(x, share, bottom=bottom, color=_COLOURS[part], label=label, width=0.6,
                   hatch="//" if part == "ok_not_well_formed" else None)
            bottom += share
        ax.text(x, 1.02, f"well-formed\n{metrics['well_formed']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(bars)), [label for label, _, _ in bars])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("share of outputs")
    ax.set_title(f"lf-think eval: {report['prompts']} prompts, max_new_tokens {report['max_new_tokens']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
