"""Pieces of `lf-think eval --sweep` and the chart fix (issue 24), on hand-made outputs: the sweep's parsing,
per-value statistics and trend, the eval_think sweep log keys, and that the chart's bars and the table agree on
outputs whose shape is ok but that never end their turn."""

from __future__ import annotations

import pytest

from lf_thinkplugin.evaluation.callback import sweep_metrics
from lf_thinkplugin.evaluation.chart import segments
from lf_thinkplugin.evaluation.cli import NOT_WELL_FORMED_OK, render_table
from lf_thinkplugin.evaluation.metrics import Output, aggregate
from lf_thinkplugin.evaluation.sweep import SweepError, parse_sweep, render_sweep, settings_list, sweep_report


def output(mode: str, reasoning: int, status: str = "ok", end: bool = True) -> Output:
    parsers = {"qwen3": {"reasoning": None, "content": None, "empty_content": False, "leaked": False}}
    return Output(mode=mode, status=status, tokens=reasoning + 3, end_of_turn=end, truncated=not end, tags_as_ids=True,
                  spelled_out=[], reasoning="r" * reasoning or None, answer="a", reasoning_tokens=reasoning, answer_tokens=3, parsers=parsers, text="")


def test_parse_sweep_values_and_settings() -> None:
    assert parse_sweep("reasoning_effort=low,medium,high") == ("reasoning_effort", ["low", "medium", "high"])
    assert parse_sweep("thinking_budget=0,512") == ("thinking_budget", [0, 512])
    assert settings_list({"a": 1}, ("thinking_budget", [0, 512])) == [("0", {"a": 1, "thinking_budget": 0}),
                                                                      ("512", {"a": 1, "thinking_budget": 512})]
    for bad in ("reasoning_effort", "reasoning_effort=low", "=low,high", "x=low,low"):
        with pytest.raises(SweepError):
            parse_sweep(bad)


def test_sweep_statistics_and_trend() -> None:
    by_value = {"low": [output("think", n) for n in (2, 4, 6, 8, 10)],
                "high": [output("think", n) for n in (10, 20, 30, 40, 100)]}
    report = sweep_report("reasoning_effort", ["low", "high"], ["think"], {"model": by_value})
    low, high = (report["model"]["think"]["values"][v]["reasoning_tokens"] for v in ("low", "high"))
    assert low == {"mean": 6.0, "median": 6, "p90": 10} and high == {"mean": 40.0, "median": 30, "p90": 100}
    assert report["model"]["think"]["trend"] == {"rises": True, "ratio": 6.67, "means": [6.0, 40.0]}
    flat = report["model"]["think"]
    assert flat["values"]["low"]["well_formed"] == 1.0
    reverse = sweep_report("reasoning_effort", ["high", "low"], ["think"], {"model": by_value})
    assert reverse["model"]["think"]["trend"]["rises"] is False
    table = render_sweep(report)
    assert "think   low         6.00 / 6 / 10" in table
    assert "think: reasoning length rises with reasoning_effort: model yes (6.67x from low to high)" in table
    logged = sweep_metrics("reasoning_effort", by_value)
    assert logged["think_eval/reasoning_effort=high/think/reasoning_tokens_p90"] == 100.0
    assert logged["think_eval/reasoning_effort/think/rises"] == 1.0 and logged["think_eval/reasoning_effort/think/ratio"] == 6.67


def test_chart_and_table_agree_on_a_turn_that_never_ends() -> None:
    """The untrained model in nothink mode: no tag (status ok) but no end of turn: well-formed 0, and no green bar."""
    outputs = [output("nothink", 0, end=False) for _ in range(4)] + [output("think", 5, end=True), output("think", 5, end=False)]
    metrics = aggregate(outputs)
    assert metrics["nothink"]["well_formed"] == 0.0 and metrics["nothink"]["status"]["ok"] == 1.0
    assert [(p, s) for p, s in segments(metrics["nothink"], "nothink") if s] == [("ok_not_well_formed", 1.0)]
    assert [(p, s) for p, s in segments(metrics["think"], "think") if s] == [("ok", 0.5), ("ok_not_well_formed", 0.5)]
    report = {"modes": ["think", "nothink"], "parser": "qwen3", "model": {"metrics": metrics, "timing": {}}, "baseline": None}
    rows = {line[:30].strip(): line[30:].split() for line in render_table(report).splitlines()[2:]}
    assert rows["well-formed"] == ["0.50", "0.00"] and rows[NOT_WELL_FORMED_OK] == ["0.50", "1.00"]


def test_eval_takes_the_runs_settings_from_its_record(tmp_path) -> None:
    from lf_thinkplugin.evaluation.generate import trained_with
    from lf_thinkplugin.templates.record import write_record

    write_record(tmp_path, "native", True, None, {"chat_template_kwargs": {"reasoning_effort": "high"}, "columns": {},
                                                  "mix": {}, "template": {"reads": ["reasoning_effort"]}})
    assert trained_with(str(tmp_path)).settings == {"reasoning_effort": "high"}
    write_record(tmp_path, "native", True, None)
    assert trained_with(str(tmp_path)).settings is None
