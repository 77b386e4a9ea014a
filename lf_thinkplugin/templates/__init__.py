"""The plugin's chat templates, registered in LF's TEMPLATES under new names (LF's own are never touched).

| name | for | rule |
|---|---|---|
| `qwen3_think` | Qwen3 (hybrid thinking) | Qwen3's official template: history reasoning dropped, empty think block for answers without reasoning, `enable_thinking` |
| `qwen3_think_keep_history` | Qwen3, deliberately | every turn keeps and trains its reasoning (not what Qwen3's template renders) |
| `r1_distill_qwen` | DeepSeek-R1-Distill-Qwen | BOS once, generation prompt `<｜Assistant｜><think>\\n`, `<｜end▁of▁sentence｜>` after each answer |
| `deepseek_r1` | DeepSeek-R1 (V3 vocabulary) | the same chat format as `r1_distill_qwen` |
| `native` | any model with a chat template | the model's own chat template renders every turn (native.py): tool calls, switch, history rule |

The Jinja files beside this module are the chat templates each plugin template trains to (the
official ones, verbatim, where one exists); `jinja_text(name)` reads them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .jinja import jinja_text  # noqa: F401  (the package's API)

logger = logging.getLogger("lf_thinkplugin")


@dataclass(frozen=True)
class PluginTemplate:
    name: str
    family: str
    model_types: tuple[str, ...]  # config.json `model_type`s it is made for: the doctor's tie-break


PLUGIN_TEMPLATES: tuple[PluginTemplate, ...] = (
    PluginTemplate("qwen3_think", "Qwen3 (hybrid thinking)", ("qwen3", "qwen3_moe")),
    PluginTemplate("qwen3_think_keep_history", "Qwen3, history reasoning kept", ()),
    PluginTemplate("r1_distill_qwen", "DeepSeek-R1-Distill-Qwen", ("qwen2",)),
    PluginTemplate("deepseek_r1", "DeepSeek-R1 (V3 vocabulary)", ("deepseek_v3",)),
    PluginTemplate("native", "any chat template (the model's own)", ()),
)
NAMES: tuple[str, ...] = tuple(t.name for t in PLUGIN_TEMPLATES)

_lock = threading.Lock()


def plugin_template(name: str) -> PluginTemplate | None:
    return next((t for t in PLUGIN_TEMPLATES if t.name == name), None)


def _specs() -> dict[str, dict]:
    from llamafactory.data.formatter import (
        EmptyFormatter,
        FunctionFormatter,
        StringFormatter,
        ToolFormatter,
    )

    from .encoders import (
        DeepSeekR1Template,
        NativeTemplate,
        Qwen3KeepHistoryTemplate,
        Qwen3ThinkTemplate,
    )

    def qwen3(template_class: type) -> dict:  # LF's own `qwen3` slots; the class changes how turns encode
        return {
            "format_user": StringFormatter(slots=["<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]),
            "format_assistant": StringFormatter(slots=["{{content}}<|im_end|>\n"]),
            "format_system": StringFormatter(slots=["<|im_start|>system\n{{content}}<|im_end|>\n"]),
            "format_function": FunctionFormatter(slots=["{{content}}<|im_end|>\n"], tool_format="qwen"),
            "format_observation": StringFormatter(
                slots=["<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"]
            ),
            "format_tools": ToolFormatter(tool_format="qwen"),
            "stop_words": ["<|im_end|>"],
            "replace_eos": True,
            "template_class": template_class,
        }

    def deepseek_r1() -> dict:
        return {
            "format_user": StringFormatter(slots=["<｜User｜>{{content}}<｜Assistant｜>"]),
            "format_assistant": StringFormatter(slots=["{{content}}<｜end▁of▁sentence｜>"]),
            "format_system": StringFormatter(slots=["{{content}}"]),
            "format_prefix": EmptyFormatter(slots=[{"bos_token"}]),
            "template_class": DeepSeekR1Template,
        }

    return {
        "qwen3_think": qwen3(Qwen3ThinkTemplate),
        "qwen3_think_keep_history": qwen3(Qwen3KeepHistoryTemplate),
        "r1_distill_qwen": deepseek_r1(),
        "deepseek_r1": deepseek_r1(),
        # the slots are unused: the tokenizer's chat template renders (only LF's plumbing reads them)
        "native": {"format_user": StringFormatter(slots=["{{content}}"]), "replace_jinja_template": False,
                   "template_class": NativeTemplate},
    }


def register_templates() -> list[str]:
    """Register the plugin's templates in LF's TEMPLATES; idempotent. Returns the plugin's names there."""
    from llamafactory.data.template import TEMPLATES, register_template

    from .encoders import NativeTemplate, OfficialThinkTemplate

    with _lock:
        names = []
        for name, kwargs in _specs().items():
            existing = TEMPLATES.get(name)
            if existing is None:
                register_template(name=name, **kwargs)
            elif not isinstance(existing, (OfficialThinkTemplate, NativeTemplate)):  # someone else's: never overwrite
                logger.warning("LF template `%s` exists and is not the plugin's; the plugin's is not registered", name)
                continue
            names.append(name)
        return names
