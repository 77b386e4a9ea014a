"""Reasoning datasets: the `reasoning` dataset converter (formatting: reasoning in dataset_info.json).

`formatting: reasoning` in dataset_info.json reads a reasoning column next to the usual ones and
writes canonical think-tagged responses, `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` (the
spacing Qwen3's and R1's own chat templates render). Two layouts:

    "r1_distill": {                      # one prompt / response / reasoning per row (alpaca-like)
      "file_name": "r1.jsonl", "formatting": "reasoning",
      "columns": {"query": "input", "response": "content", "reasoning": "reasoning_content"}
    }
    "chat_with_reasoning": {             # messages whose assistant turns carry a reasoning field
      "file_name": "chat.json", "formatting": "reasoning",
      "columns": {"messages": "messages", "reasoning": "reasoning_content"},
      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    }

`reasoning` defaults to `reasoning_content`. A row whose reasoning is empty keeps its bare answer:
a direct-answer sample, to which LF's hybrid (reasoning) templates add the empty think block
themselves (trained or not per `enable_thinking`; see docs/think_loss.md).

The malformed-think-tag report, which runs on every dataset of a plugin run, is in `malformed.py`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from ..templates.format import DATA_MARKUP

# No llamafactory import at module level: importing llamafactory loads the plugin, whose
# register() imports this module; the converter class is built on first use instead.

FORMATTING = "reasoning"
DEFAULT_REASONING_COLUMN = "reasoning_content"
OPEN, CLOSE = DATA_MARKUP  # the tags LF datasets write reasoning in



def canonical_response(reasoning: str | None, answer: str | None) -> str:
    """`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`, or the bare answer when there is no reasoning."""
    answer = answer or ""
    if reasoning is None or not str(reasoning).strip():
        return answer
    return f"{OPEN}\n{str(reasoning).strip(chr(10))}\n{CLOSE}\n\n{answer.lstrip(chr(10))}"


@functools.cache
def converter_class() -> type:
    """The `reasoning` converter: merges reasoning into responses, then converts like LF's alpaca / sharegpt."""
    from dataclasses import dataclass

    from llamafactory.data.converter import (
        AlpacaDatasetConverter,
        DatasetConverter,
        SharegptDatasetConverter,
    )

    @dataclass
    class ReasoningDatasetConverter(DatasetConverter):
        def __post_init__(self) -> None:
            entry = _dataset_info_entry(self.dataset_attr, self.data_args)
            columns = entry.get("columns") or {}
            self.reasoning = columns.get("reasoning", DEFAULT_REASONING_COLUMN)
            self.chat = "messages" in columns
            base = SharegptDatasetConverter if self.chat else AlpacaDatasetConverter
            self._inner = base(self.dataset_attr, self.data_args)

        def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
            example = dict(example)
            if self.chat:
                messages = example[self.dataset_attr.messages] or []
                example[self.dataset_attr.messages] = [self._merge_turn(m) for m in messages]
            else:
                if self.reasoning not in example:
                    raise ValueError(
                        f"dataset {self.dataset_attr}: no column `{self.reasoning}` for the reasoning; name it in "
                        f'dataset_info.json, e.g. "columns": {{"reasoning": "<column>"}} (columns: {sorted(example)})'
                    )
                response = self.dataset_attr.response
                if response and isinstance(example.get(response), str):
                    example[response] = canonical_response(example[self.reasoning], example[response])
            return self._inner(example)

        def _merge_turn(self, message: dict[str, Any]) -> dict[str, Any]:
            attr = self.dataset_attr
            if message.get(attr.role_tag) != attr.assistant_tag or self.reasoning not in message:
                return message
            merged = dict(message)
            merged[attr.content_tag] = canonical_response(message[self.reasoning], message.get(attr.content_tag))
            return merged

    ReasoningDatasetConverter.__module__ = __name__  # pickles by reference (datasets' map workers)
    ReasoningDatasetConverter.__qualname__ = "ReasoningDatasetConverter"
    return ReasoningDatasetConverter


def __getattr__(name: str) -> Any:
    if name == "ReasoningDatasetConverter":
        return converter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dataset_info_entry(dataset_attr: Any, data_args: Any) -> dict[str, Any]:
    """The raw dataset_info.json entry of this dataset (LF's DatasetAttr keeps no unknown column)."""
    info = data_args.dataset_dir
    if isinstance(info, str):
        path = os.path.join(info, "dataset_info.json")
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    if not isinstance(info, dict):
        return {}
    url_keys = {"file": "file_name", "hf_hub": "hf_hub_url", "ms_hub": "ms_hub_url", "om_hub": "om_hub_url",
                "script": "script_url", "cloud_file": "cloud_file_name"}
    key = url_keys.get(dataset_attr.load_from, "file_name")
    matches = [e for e in info.values() if isinstance(e, dict) and e.get(key) == dataset_attr.dataset_name
               and e.get("formatting") == FORMATTING]
    reasoning = {json.dumps((e.get("columns") or {}).get("reasoning")) for e in matches}
    if len(reasoning) > 1:
        raise ValueError(
            f"dataset_info.json has several `formatting: reasoning` entries for {dataset_attr.dataset_name} with "
            "different `columns.reasoning`; keep one entry per file"
        )
    return matches[0] if matches else {}


def register_converters() -> list[str]:
    """Register the `reasoning` dataset converter with LF (idempotent); returns the names added."""
    from llamafactory.data.converter import (
        DATASET_CONVERTERS,
        register_dataset_converter,
    )

    if DATASET_CONVERTERS.get(FORMATTING) is converter_class():
        return [FORMATTING]
    register_dataset_converter(FORMATTING, converter_class())  # raises if LF has its own `reasoning`
    return [FORMATTING]
