"""`template: native`: data and template failures end cleanly, through the command a user runs.

Each failure goes through `llamafactory-cli train` with `tokenized_path` inside output_dir: exit status 2, a
message naming the dataset, the sample (index and first words of its first user message), the template's
own exception text and the fix; no traceback; nothing left in output_dir (the tokenized data included).
The chat templates are written here: a Qwen-style template that raises on a system message, and none at all.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from lfrun import train

pytestmark = pytest.mark.slow

QUESTION = "What is the weather in Paris today, and should I bring an umbrella?"
FIRST_WORDS = '("What is the weather in Paris today, and'
CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city.",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
# A chat template that refuses system messages, as Gemma's and Mistral's do.
NO_SYSTEM = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def direct(question: str) -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": question},
                              {"from": "gpt", "value": "<think>\nEasy.\n</think>\n\nDone."}], "system": "", "tools": ""}


def weather(call: str = CALL, tools: str = TOOLS, system: str = "") -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": QUESTION}, {"from": "function_call", "value": call},
                              {"from": "observation", "value": '{"temp": 21, "rain": false}'},
                              {"from": "gpt", "value": "<think>\nNo rain.\n</think>\n\n21 degrees, no umbrella."}],
            "system": system, "tools": tools}


LONG = "Read the whole question before you answer it: " + "the quick brown fox jumps over the lazy dog, " * 12 + "ok?"

# case -> (samples of dataset `convs`, chat template: None keeps Qwen3's own, "" removes it, config changes,
#          texts stderr must hold beyond the dataset and sample)
CASES: dict[str, tuple[list[dict], Any, dict[str, Any], list[str]]] = {
    "function_call_not_json": (
        [direct("Hi"), direct("What is 2 + 2?"), direct("Name a colour."), weather(call="get_weather(Paris)")], None, {},
        ["a `function_call` message is not JSON", "Expecting value", "'get_weather(Paris)'", "Fix: correct the sample"]),
    "tools_not_json": (
        [direct("Hi"), direct("What is 2 + 2?"), direct("Name a colour."), weather(tools="[{name: get_weather}")], None, {},
        ["the `tools` column is not JSON", "Expecting property name", "Fix: correct the sample"]),
    "template_raises": (
        [direct("Hi"), direct("What is 2 + 2?"), direct("Name a colour."), weather(system="You are terse.")], NO_SYSTEM, {},
        ["the chat template raised: System role not supported", "Fix: the model's own chat template refuses this sample"]),
    # the same failure in LF's worker processes: `datasets` re-raises it in the main process
    "template_raises_in_workers": (
        [direct("Hi"), direct("What is 2 + 2?"), direct("Name a colour."), weather(system="You are terse.")], NO_SYSTEM,
        {"preprocessing_num_workers": 2},
        ["the chat template raised: System role not supported", "Fix: the model's own chat template refuses this sample"]),
}


def model_with_template(tiny: Path, folder: Path, chat_template: str) -> Path:
    """A copy of the tiny model whose tokenizer_config.json holds `chat_template` ("" : none at all)."""
    shutil.copytree(tiny, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    if chat_template:
        config["chat_template"] = chat_template
    config_path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def run(tmp: Path, model: Path, samples: list[dict], **changes: Any):
    data = tmp / "data"
    data.mkdir(parents=True)
    (data / "convs.json").write_text(json.dumps(samples, ensure_ascii=False))
    (data / "dataset_info.json").write_text(json.dumps({"convs": {
        "file_name": "convs.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}))
    out = tmp / "out"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "convs", "dataset_dir": str(data), "cutoff_len": 1024, "tokenized_path": str(out / "tokenized"),
        "output_dir": str(out), "report_to": "none", "overwrite_cache": True, "max_steps": 1,
        "per_device_train_batch_size": 1, "save_strategy": "no",
        "thinkplugin": {"template": "native", "export_serving": False},
        **changes,
    }
    proc = train(config, tmp, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert not out.exists() or not any(out.rglob("*")), sorted(str(p) for p in out.rglob("*"))
    return proc


@pytest.mark.parametrize("case", list(CASES))
def test_sample_failure_names_the_sample(case: str, tiny_qwen3: Path, tmp_path: Path) -> None:
    samples, chat_template, changes, texts = CASES[case]
    model = tiny_qwen3 if chat_template is None else model_with_template(tiny_qwen3, tmp_path / "model", chat_template)
    proc = run(tmp_path, model, samples, **changes)
    assert "[lf_thinkplugin] error: dataset `convs`, sample 3 " + FIRST_WORDS in proc.stderr, proc.stderr[-3000:]
    for text in texts:
        assert text in proc.stderr, (text, proc.stderr[-3000:])


def test_model_without_chat_template(tiny_qwen3: Path, tmp_path: Path) -> None:
    model = model_with_template(tiny_qwen3, tmp_path / "model", "")
    proc = run(tmp_path, model, [direct("Hi")])
    err = proc.stderr
    assert "[lf_thinkplugin] error: `thinkplugin.template: native`" in err, err[-3000:]
    assert f"the model folder {model} has none it can use" in err and "has no chat template" in err, err[-3000:]
    assert "Fix: give that folder the model's chat template" in err and "set `thinkplugin.template`" in err, err[-3000:]
    assert "loading weights file" not in proc.stdout + err  # refused before the model loads
    assert "Running tokenizer on dataset" not in err


def test_cutoff_len_that_trains_nothing(tiny_qwen3: Path, tmp_path: Path) -> None:
    # every prompt is far longer than its answer: LF's truncation to 8 tokens keeps only prompt tokens
    proc = run(tmp_path, tiny_qwen3, [direct(LONG + str(i)) for i in range(4)], cutoff_len=8)
    err = proc.stderr
    assert "[lf_thinkplugin] error: `cutoff_len: 8` leaves no sample of dataset `convs` with a trained token" in err, \
        err[-3000:]
    assert "Fix: raise `cutoff_len`" in err, err[-3000:]


# --- the pieces, in process -----------------------------------------------------------------------------------


def test_sample_error_pickles_and_is_located() -> None:
    from datasets import Dataset

    from lf_thinkplugin.data.sample_errors import DATA_FIX, SampleError, find_sample_error, locate, sample_message

    def row(*contents: str, system: str = "") -> dict[str, Any]:
        roles = [("user", "assistant")[i % 2] for i in range(len(contents))]
        msgs = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]
        return {"_prompt": msgs[:-1], "_response": msgs[-1:], "_system": system, "_tools": ""}

    aligned = Dataset.from_list([row("a", "b"), row("q", "x", "q2", "y"), row("q", "x", "q2", "y", system="s")])
    pairs = Dataset.from_list([{"_prompt": [{"role": "user", "content": "p"}],
                                "_response": [{"role": "assistant", "content": "good"}, {"role": "assistant", "content": "bad"}],
                                "_system": "", "_tools": ""}])
    datasets = [("one", aligned), ("prefs", pairs)]
    prefix = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]  # expand_turns: a prefix
    err = pickle.loads(pickle.dumps(SampleError("boom", DATA_FIX, prefix, "s", "")))
    assert locate(datasets, err) == ("one", 2)  # the system message tells the two apart
    rejected = SampleError("boom", DATA_FIX, [{"role": "user", "content": "p"}, {"role": "assistant", "content": "bad"}])
    assert locate(datasets, rejected) == ("prefs", 0)  # pairwise: the prompt and the second response
    try:
        try:
            raise err
        except SampleError as inner:
            raise RuntimeError("wrapped by datasets") from inner
    except RuntimeError as outer:
        assert find_sample_error(outer) is err
    stranger = SampleError("boom", DATA_FIX, [{"role": "user", "content": "never seen"}])
    assert locate(datasets, stranger) is None
    assert sample_message(stranger, datasets, ["one"]).startswith('dataset `one`, a sample ("never seen"; not found')
