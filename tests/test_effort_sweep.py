"""Effort-conditioned SFT on CPU, end to end (issue 24): a tiny random model whose chat template writes a
gpt-oss-style `Reasoning: <effort>` system line is trained on data with short reasoning at low effort and long
reasoning at high effort (a per-sample dataset_info.json column), `eval_think` sweeps the effort during
training, and `lf-think eval --sweep reasoning_effort=low,high` reports reasoning at high at least twice as long
as at low for the trained model, and no such difference for the untrained one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import require_fixture
from lfrun import base_config, lf_think, log_history, train

from lf_thinkplugin.demo.fixtures import QWEN3

pytestmark = pytest.mark.slow

# gpt-oss-style: the effort is a template setting written into the prompt (default medium), on Qwen3's own template
EFFORT_LINE = ("{%- if reasoning_effort is not defined %}{%- set reasoning_effort = 'medium' %}{%- endif %}"
               "{{- '<|im_start|>system\\nReasoning: ' + reasoning_effort + '<|im_end|>\\n' }}")
SHORT = "Quick sum."
LONG = ("First I read the question, then I add the numbers one at a time, carry the tens, check the result "
        "twice, and only then write the answer down.")
QUESTIONS = [f"What is {a} + {b}?" for a, b in [(2, 3), (4, 5), (6, 1), (7, 2), (3, 3), (8, 1), (5, 4), (9, 0),
                                                   (1, 1), (2, 6), (3, 5), (4, 4)]]
HELD_OUT = ["What is 5 + 2?", "What is 6 + 3?", "What is 1 + 7?", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def effort_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lf_thinkplugin.demo.tiny_model import build_tiny_model
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    folder = require_fixture(QWEN3)
    out = build_tiny_model(tmp_path_factory.mktemp("effort_model"), folder)
    tok = from_pretrained(str(out))
    tok.chat_template = EFFORT_LINE + (folder.parent / "chat_templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    tok.save_pretrained(str(out))
    return out


def write_data(folder: Path) -> None:
    rows = []
    for question in QUESTIONS:
        answer = "Done."
        for effort, reasoning in (("low", SHORT), ("high", LONG)):
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}],
                         "settings": {"reasoning_effort": effort}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "effort.json").write_text(json.dumps(rows))
    (folder / "held_out.json").write_text(json.dumps([{"messages": [{"role": "user", "content": q},
                                                                    {"role": "assistant", "content": "Done."}]}
                                                      for q in HELD_OUT]))
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    (folder / "dataset_info.json").write_text(json.dumps({
        "effort": {"file_name": "effort.json", "formatting": "sharegpt", "tags": tags,
                   "columns": {"messages": "messages", "chat_template_kwargs": "settings"}},
        "held_out": {"file_name": "held_out.json", "formatting": "sharegpt", "tags": tags, "columns": {"messages": "messages"}},
    }))


def test_effort_conditioned_sft_and_sweep(effort_model: Path, tmp_path: Path) -> None:
    from lf_thinkplugin.serving.template_settings import settings_section

    write_data(tmp_path / "data")
    out = tmp_path / "out"
    steps = 120
    config = base_config(effort_model, out, dataset="effort", dataset_dir=str(tmp_path / "data"), template=None,
                         cutoff_len=256, max_steps=steps, learning_rate=5.0e-3, lr_scheduler_type="constant",
                         per_device_train_batch_size=4, logging_steps=20,
                         thinkplugin={"template": "native", "export_serving": False,
                                      "eval_think": {"every": steps, "prompts": 4, "max_new_tokens": 48, "data": "held_out",
                                                     "sweep": {"reasoning_effort": ["low", "high"]}}})
    config.pop("template")
    proc = train(config, tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    # eval_think swept the effort during training: per value, and the verdict
    evals = [r for r in log_history(out) if any(k.startswith("think_eval/") for k in r)]
    assert [r["step"] for r in evals] == [steps]
    logged = evals[0]
    low, high = (logged[f"think_eval/reasoning_effort={v}/think/reasoning_tokens_all_mean"] for v in ("low", "high"))
    assert high >= 2 * low > 0, logged
    assert logged["think_eval/reasoning_effort/think/rises"] == 1.0

    # the run record: the mix of settings in the data, what the template reads and its default
    record = json.loads((out / "thinkplugin_run.json").read_text())["template_settings"]
    assert record["mix"] == {'{"reasoning_effort": "high"}': len(QUESTIONS), '{"reasoning_effort": "low"}': len(QUESTIONS)}
    assert record["columns"] == {"effort": "settings"} and record["chat_template_kwargs"] == {}
    assert record["template"]["reads"] == ["reasoning_effort"] and record["template"]["defaults"] == {"reasoning_effort": "medium"}
    section = settings_section(record)
    assert '| `reasoning_effort` | "medium" | "high", "low" |' in section
    assert "--default-chat-template-kwargs '{\"reasoning_effort\": \"high\"}'" in section

    # lf-think eval --sweep: trained vs untrained, table, JSON and chart
    chart = tmp_path / "sweep.png"
    args = ["eval", "--model", str(out), "--baseline", str(effort_model), "--data", "held_out", "--dataset-dir",
            str(tmp_path / "data"), "--sweep", "reasoning_effort=low,high", "--max-new-tokens", "48", "--chart", str(chart)]
    proc = lf_think([*args, "--json"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    sweep = report["sweep"]
    assert sweep["name"] == "reasoning_effort" and sweep["values"] == ["low", "high"] and sweep["modes"] == ["think"]
    trained = sweep["model"]["think"]
    low, high = (trained["values"][v]["reasoning_tokens"]["mean"] for v in ("low", "high"))
    assert high >= 2 * low > 0, trained
    assert trained["trend"]["rises"] is True and trained["trend"]["ratio"] >= 2
    assert all(trained["values"][v]["well_formed"] == 1.0 for v in ("low", "high"))
    base = sweep["baseline"]["think"]
    base_low, base_high = (base["values"][v]["reasoning_tokens"]["mean"] for v in ("low", "high"))
    assert base["trend"]["rises"] is not True and not (base_high >= 2 * base_low > 0), base
    assert chart.stat().st_size > 10_000
    assert "[lf_thinkplugin] eval: model think low: 4/4 prompts" in proc.stderr  # progress, per batch
    table = lf_think(args, timeout=900)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "think: reasoning length rises with reasoning_effort: model yes" in table.stdout
    assert "think: reasoning length rises with reasoning_effort: baseline no" in table.stdout


def test_sweep_and_template_kwargs_are_checked(effort_model: Path, tmp_path: Path) -> None:
    """Unknown names and ignored values in `lf-think eval`: exit 2, the key named, no traceback, before any model loads."""
    write_data(tmp_path / "data")
    common = ["eval", "--model", str(effort_model), "--data", "held_out", "--dataset-dir", str(tmp_path / "data")]
    proc = lf_think([*common, "--sweep", "reasoning_efort=low,high"], timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown template setting `--sweep.reasoning_efort`" in proc.stderr
    assert "Did you mean `--sweep.reasoning_effort`?" in proc.stderr
    proc = lf_think([*common, "--template-kwargs", '{"enable_thinking": false}', "--modes", "think"], timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "`--template-kwargs.enable_thinking` = False contradicts LF's `enable_thinking: true`" in proc.stderr
    proc = lf_think([*common, "--sweep", "reasoning_effort=low"], timeout=300)
    assert proc.returncode == 2 and "at least two values" in proc.stderr
