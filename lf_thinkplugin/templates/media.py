"""Images and videos under `template: native`: the model's own chat template renders the text, LF's multimodal
plugin for the model's processor expands the media tokens.

LF's plugin replaces each `<image>` / `<video>` placeholder in the text with the processor's vision tokens
(`<|vision_start|>` + `<|image_pad|>` x (grid / merge^2) + `<|vision_end|>` for Qwen3-VL) before any
template encodes it; the chat template then renders that text where the processor's `apply_chat_template`
renders an image chunk and expands it: the same ids (tests/test_media.py, against the processor itself).
Which plugin: by the processor class the model folder declares, verified per class (an unknown class with
media is refused by LF's base plugin, naming the media type).

The view of each image is the processor's: `served_limits` reads the pixel limits the processor serves
with, which the run follows where the YAML sets none (LF's defaults, 768 x 768 for images, give a
1024 x 1024 image 576 tokens where the served processor gives 1024).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

# processor class -> the LF template whose multimodal plugin expands its media (checked token for token)
PROCESSOR_PLUGINS = {"Qwen3VLProcessor": "qwen3_vl"}
# LF's pixel keys -> (processor file, the processor's key in `size`)
_LIMITS = {"image_min_pixels": ("preprocessor_config.json", "shortest_edge"),
           "image_max_pixels": ("preprocessor_config.json", "longest_edge"),
           "video_min_pixels": ("video_preprocessor_config.json", "shortest_edge"),
           "video_max_pixels": ("video_preprocessor_config.json", "longest_edge")}


def _read(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def processor_class(folder: str | Path) -> Optional[str]:
    folder = Path(folder)
    for name in ("processor_config.json", "preprocessor_config.json"):
        found = _read(folder, name).get("processor_class")
        if found:
            return str(found)
    return None


def media_plugin(folder: str | Path) -> Optional[Any]:
    """LF's multimodal plugin for the folder's processor (a copy), or None where the class is not verified."""
    name = PROCESSOR_PLUGINS.get(processor_class(folder) or "")
    if name is None:
        return None
    from llamafactory.data.template import TEMPLATES

    return copy.deepcopy(TEMPLATES[name].mm_plugin)


def served_limits(folder: str | Path) -> dict[str, int]:
    """LF's pixel keys -> the value the folder's processor serves with (Qwen-VL: `size` shortest / longest edge,
    which its image processor reads as pixel counts)."""
    folder = Path(folder)
    if processor_class(folder) not in PROCESSOR_PLUGINS:
        return {}
    out = {}
    for key, (file, edge) in _LIMITS.items():
        value = (_read(folder, file).get("size") or {}).get(edge)
        if isinstance(value, int):
            out[key] = value
    return out


def follow_served_limits(lf_args: dict[str, Any], folder: str | Path) -> list[str]:
    """Set LF's pixel limits the YAML leaves unset to the processor's; the report lines (a user's own value is
    kept and reported where it differs from what the processor serves)."""
    lines = []
    for key, served in served_limits(folder).items():
        given = lf_args.get(key)
        if given is None:
            lf_args[key] = served
            lines.append(f"{key}: {served} (the processor's, as served; LF's default differs)")
        elif int(given) != served:
            lines.append(f"{key}: {given} as set (the processor serves with {served}: the model trains on another "
                         "view of some media than it will be shown)")
    return lines
