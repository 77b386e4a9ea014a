"""The run's record in output_dir (`thinkplugin_run.json`): the LF template the model was trained with,
LF's `enable_thinking`, and the reasoning format of the chat template that renders its prompts.

`lf-think eval` (and anything else that reads a trained model folder) takes the template and the
markup from here; nothing parses SERVING.md. A run with a multimodal processor also records its `media`:
LF's pixel limits and video sampling the run trained with (`image_max_pixels`, ...) and the size limits of
the processor it loaded (`media_record`), from which the serving bundle writes the processor files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from .format import NativeTemplateError, ReasoningFormat, learn

RUN_FILE = "thinkplugin_run.json"
VERSION = 1
logger = logging.getLogger("lf_thinkplugin")


def format_of(template: Any, tokenizer: Any) -> Optional[ReasoningFormat]:
    """The reasoning format of an LF template object set up on `tokenizer`: `native`'s own, else the one
    learnt from the Jinja LF (or the plugin) serves the template with; None where it cannot be learnt."""
    encoder = getattr(template, "encoder", None)
    if callable(encoder):
        return encoder(tokenizer).format
    try:
        jinja = template._get_jinja_template(tokenizer)
        return learn(tokenizer, jinja)
    except (NativeTemplateError, Exception):  # noqa: BLE001  (an LF template whose Jinja cannot render probes)
        return None


MEDIA_KEYS = ("image_min_pixels", "image_max_pixels", "video_min_pixels", "video_max_pixels", "video_fps", "video_maxlen")


def media_record(processor: Any) -> Optional[dict[str, Any]]:
    """The run's media settings as LF set them on its processor (`patch_processor`: what LF's multimodal plugin
    reads), and the processor's own size limits (`size` of its image / video processor); None without a processor."""
    if processor is None or getattr(processor, "image_processor", None) is None:
        return None
    record: dict[str, Any] = {key: getattr(processor, key) for key in MEDIA_KEYS if getattr(processor, key, None) is not None}
    from .media import size_edges

    for kind in ("image", "video"):
        limits = size_edges(getattr(getattr(processor, f"{kind}_processor", None), "size", None) or {})
        if limits:
            record[f"processor_{kind}_size"] = limits
    record["processor_class"] = type(processor).__name__
    return record


def write_record(folder: str | Path, template_name: Optional[str], enable_thinking: Optional[bool],
                 fmt: Optional[ReasoningFormat], template_settings: Optional[dict[str, Any]] = None,
                 media: Optional[dict[str, Any]] = None) -> Path:
    """`template_settings`: the run's `chat_template_kwargs`, the per-sample columns, the mix of settings in the
    data (sorted JSON -> samples) and what the template reads with its defaults (RunContext.settings_record).
    `media`: LF's pixel limits the run trained with (`image_max_pixels`, ...), for a model with a processor."""
    path = Path(folder) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": VERSION, "template": template_name, "enable_thinking": enable_thinking,
              "format": fmt.to_dict() if fmt is not None else None}
    if template_settings is not None:
        record["template_settings"] = template_settings
    if media is not None:
        record["media"] = media
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def read_record(folder: str | Path) -> Optional[dict[str, Any]]:
    """The record of a trained model folder (its `format` as a ReasoningFormat), or None when there is none."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format"):
        record["format"] = ReasoningFormat.from_dict(record["format"])
    record["path"] = str(path)
    return record
