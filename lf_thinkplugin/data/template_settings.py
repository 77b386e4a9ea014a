"""Template settings in the data: the run's `thinkplugin.chat_template_kwargs` and a per-sample settings column,
carried into each aligned sample's `_system` (templates/settings.py says why there) and checked before any
sample is tokenized.

The column is declared in dataset_info.json beside LF's own columns:

    "effort_sft": {"file_name": "effort.json", "formatting": "sharegpt",
                   "columns": {"messages": "conversations", "chat_template_kwargs": "settings"}}

LF ignores column keys it does not know; the plugin reads this one from the same file. A cell is a mapping
(`{"reasoning_effort": "low"}`), a JSON object string, or empty; it is merged over the run's settings (the
sample wins). LF's aligned dataset is built row by row from the raw one (no filtering), so row i of the
aligned dataset is row i of the raw dataset: the column is read from the raw dataset and joined by index.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Optional

from ..templates.settings import COLUMN, SettingsError, embed, extract, label, parse_cell


def settings_column(dataset_dir: Optional[str], name: Optional[str]) -> Optional[str]:
    """The column dataset_info.json names under `columns.chat_template_kwargs` for dataset `name`, if any."""
    if not name:
        return None
    info = Path(dataset_dir or "data") / "dataset_info.json"
    try:
        entry = json.loads(info.read_text(encoding="utf-8")).get(name) or {}
    except (OSError, ValueError):
        return None
    return (entry.get("columns") or {}).get(COLUMN)


def carry(aligned: Any, raw: Any, column: Optional[str], run: dict[str, Any], name: str) -> Any:
    """`aligned` with each sample's settings (run's, then its cell) at the front of its `_system`."""
    cells: Optional[list] = None
    if column is not None:
        if raw is None or not hasattr(raw, "__len__") or not hasattr(aligned, "__len__"):
            raise SettingsError(f"the `{COLUMN}` column `{column}` of dataset `{name}` needs a map-style dataset read by "
                                "stock LLaMA-Factory 0.9.5 (not `streaming: true`, not an LF whose dataset hook sees the "
                                "aligned data only); drop the column or `streaming`")
        if column not in raw.column_names:
            raise SettingsError(f"dataset_info.json declares `columns.{COLUMN}: {column}` for `{name}`, and its data "
                                f"has no column `{column}` (columns: {', '.join(raw.column_names)})")
        if len(raw) != len(aligned):
            raise SettingsError(f"dataset `{name}`: {len(raw)} raw rows but {len(aligned)} aligned samples; the "
                                f"`{COLUMN}` column cannot be joined")
        cells = [parse_cell(c, f"dataset `{name}` row {i}, column `{column}`") for i, c in enumerate(raw[column])]
    if cells is None and not run:
        return aligned

    def put(example: dict, index: int) -> dict:
        settings = {**run, **(cells[index] if cells is not None else {})}
        return {"_system": embed(example["_system"], settings)}

    return aligned.map(put, with_indices=True, desc=f"Template settings of {name}")


def distinct(aligned: Any) -> dict[str, int]:
    """Sorted-JSON settings -> samples carrying them (no settings: `{}`)."""
    out: dict[str, int] = {}
    for system in aligned["_system"]:
        key = json.dumps(extract(system)[0], sort_keys=True)
        out[key] = out.get(key, 0) + 1
    return out


def reasoning_lengths(aligned: Any, tokenizer: Any, read: Any) -> dict[str, list[int]]:
    """Settings label -> reasoning tokens of every response turn with reasoning (`read`: content -> (reasoning, answer))."""
    out: dict[str, list[int]] = {}
    for system, prompt, response in zip(aligned["_system"], aligned["_prompt"], aligned["_response"]):
        lengths = out.setdefault(label(extract(system)[0]), [])
        for message in list(prompt) + list(response[:1]):
            if message["role"] in ("assistant", "function"):
                reasoning = read(message["content"])[0]
                if reasoning and reasoning.strip():
                    lengths.append(len(tokenizer.encode(reasoning.strip(), add_special_tokens=False)))
    return out


def stats(lengths: list[int]) -> dict[str, Any]:
    """mean, median, p90 (nearest rank) of token counts; None for none."""
    if not lengths:
        return {"n": 0, "mean": None, "median": None, "p90": None}
    ordered = sorted(lengths)
    p90 = ordered[max(0, -(-9 * len(ordered) // 10) - 1)]
    return {"n": len(ordered), "mean": round(statistics.fmean(ordered), 1), "median": statistics.median(ordered), "p90": p90}


def mix_lines(carried: list[tuple[str, Any]], run: dict[str, Any], columns: dict[str, str], tokenizer: Any,
              read: Any) -> list[str]:
    """`lf-think check`'s report: the run's settings, the columns, and per mix of settings in the data its samples and
    the reasoning length of its turns (tokens: mean, median, p90)."""
    lines = [f"template settings: chat_template_kwargs {json.dumps(run, ensure_ascii=False) if run else 'none'}; "
             + ("per-sample column " + ", ".join(f"`{c}` in {n}" for n, c in columns.items()) if columns else "no per-sample column")]
    samples: dict[str, int] = {}
    lengths: dict[str, list[int]] = {}
    for _, dataset in carried:
        for key, count in distinct(dataset).items():
            name = label(json.loads(key))
            samples[name] = samples.get(name, 0) + count
        for name, found in reasoning_lengths(dataset, tokenizer, read).items():
            lengths.setdefault(name, []).extend(found)
    for name in sorted(samples):
        s = stats(lengths.get(name, []))
        shown = f"mean {s['mean']}, median {s['median']}, p90 {s['p90']} over {s['n']} turns" if s["n"] else "none"
        lines.append(f"  {name}: {samples[name]} samples; reasoning tokens {shown}")
    return lines
