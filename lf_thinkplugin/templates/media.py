"""Images and videos under `template: native`: the model's own chat template renders the text, LF's multimodal
plugin for the model's processor expands the media tokens.

LF's plugin replaces each `<image>` / `<video>` placeholder in the text with the processor's vision tokens
(`<|vision_start|>` + `<|image_pad|>` x (grid / merge^2) + `<|vision_end|>` for Qwen3-VL) before any
template encodes it; the chat template then renders that text where the processor's `apply_chat_template`
renders an image chunk and expands it: the same ids (tests/test_media.py, against the processor itself).
Which plugin: by the processor class the model folder declares, verified per class (an unknown class with
media is refused by LF's base plugin, naming the media type). For Qwen3-VL it is LF's plugin with three
fixes (`ServedQwen3VLPlugin`): a video's frames are sampled by the processor's rule, each video's timestamps
and frame count are its own (LF reads the metadata of the message's index, an IndexError for a video outside
the first message, and the first video's frame count for all), and a placeholder count that does not match
the sample's media names the sample instead of raising LF's ValueError from a worker.

The view of each image is the processor's: `served_limits` reads the limits the processor serves with,
which the run follows where the YAML sets none (LF's defaults, 768 x 768 for images, give a 1024 x 1024
image 576 tokens where the served processor gives 1024; 128 frames at most per video where it serves 768).
"""

from __future__ import annotations

import functools
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

# processor class -> the LF template whose multimodal plugin expands its media (checked token for token)
PROCESSOR_PLUGINS = {"Qwen3VLProcessor": "qwen3_vl"}
# LF's image pixel keys -> the image processor's key in `size` (pixels per image, as LF counts them)
_IMAGE_LIMITS = {"image_min_pixels": "shortest_edge", "image_max_pixels": "longest_edge"}
_VIDEO_DEFAULTS = {"fps": 2.0, "min_frames": 4, "max_frames": 768}  # Qwen3VLVideoProcessor's class defaults


def _read(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def size_edges(size: Any) -> dict[str, int]:
    """{"shortest_edge", "longest_edge"} (pixels per image, as LF counts them) of an image or video processor's
    `size`: a dict (its JSON file) or transformers' SizeDict; only the integer ones."""
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    return {key: get(key) for key in ("shortest_edge", "longest_edge") if isinstance(get(key), int)}


def image_tokens(height: int, width: int, size: dict[str, int], patch: int, merge: int) -> int:
    """Vision tokens of a height x width image under `size` ({shortest_edge, longest_edge}): the Qwen-VL image
    processor's smart_resize, as its `get_number_of_image_patches` (the count vLLM reserves) divided by merge^2."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=patch * merge, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
    return (h // patch) * (w // patch) // (merge * merge)


def processor_class(folder: str | Path) -> str | None:
    folder = model_folder(folder)
    if folder is None:
        return None
    for name in ("processor_config.json", "preprocessor_config.json"):
        found = _read(folder, name).get("processor_class")
        if found:
            return str(found)
    return None


def model_folder(name_or_path: str | Path) -> Path | None:
    """The local folder of a model folder or hub id (the HF cache's snapshot, as the tokenizer was loaded from)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from ..loading.hub import ModelNotFound, local_dir

    try:
        return local_dir(str(name_or_path)) if str(name_or_path) else None
    except ModelNotFound:
        return None


def media_plugin(folder: str | Path) -> Any | None:
    """The multimodal plugin for the folder's (or hub id's) processor, or None where the class is not verified."""
    found = model_folder(folder)
    name = PROCESSOR_PLUGINS.get(processor_class(found) or "") if found is not None else None
    if name is None:
        return None
    from llamafactory.data.template import TEMPLATES

    lf_plugin = TEMPLATES[name].mm_plugin
    return _served_plugin_class()(**{f.name: getattr(lf_plugin, f.name) for f in fields(lf_plugin)},
                                  min_frames=int(served_video(found)["min_frames"]))


def served_video(folder: str | Path) -> dict[str, float]:
    """The video processor's frame sampling: fps, min_frames, max_frames (its file, else its class defaults)."""
    config = _read(Path(folder), "video_preprocessor_config.json")
    return {key: config.get(key) if isinstance(config.get(key), (int, float)) else value
            for key, value in _VIDEO_DEFAULTS.items()}


def served_limits(folder: str | Path) -> dict[str, float]:
    """LF's media keys -> the value that makes LF show the model each medium as the folder's processor serves it.

    Images: LF resizes each image into [image_min_pixels, image_max_pixels] before the image processor, so these
    take the processor's own `size` bounds (pixels per image). Videos: the video processor's bounds count the
    pixels of all frames together and it resizes the frames itself, so LF's per-frame limits must not act first
    (video_min_pixels 1, video_max_pixels the processor's whole-video bound, which no frame exceeds alone in
    practice); frames are sampled at the processor's fps, up to its max_frames."""
    folder = Path(folder)
    if processor_class(folder) not in PROCESSOR_PLUGINS:
        return {}
    out: dict[str, float] = {}
    size = size_edges(_read(folder, "preprocessor_config.json").get("size") or {})
    for key, edge in _IMAGE_LIMITS.items():
        if edge in size:
            out[key] = size[edge]
    video_size = size_edges(_read(folder, "video_preprocessor_config.json").get("size") or {})
    if "longest_edge" in video_size:
        out["video_max_pixels"] = video_size["longest_edge"]
        out["video_min_pixels"] = 1
    served = served_video(folder)
    out["video_fps"] = float(served["fps"])
    out["video_maxlen"] = int(served["max_frames"])
    return out


def follow_served_limits(lf_args: dict[str, Any], folder: str | Path) -> list[str]:
    """Set LF's media limits the YAML leaves unset to the processor's; the report lines (a user's own value is
    kept and reported where it differs from what the processor serves)."""
    lines = []
    for key, served in served_limits(folder).items():
        given = lf_args.get(key)
        if given is None:
            lf_args[key] = served
            lines.append(f"{key}: {served} (the processor's, as served; LF's default differs)")
        elif float(given) != float(served):
            lines.append(f"{key}: {given} as set (the processor serves with {served}: the model trains on another "
                         "view of some media than it will be shown)")
    return lines


@functools.cache
def _served_plugin_class() -> type:
    """LF's Qwen3-VL plugin with its video defects fixed (built on first use: LF is imported lazily)."""
    from dataclasses import dataclass

    import numpy as np
    from llamafactory.data.mm_plugin import Qwen3VLPlugin
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

    @dataclass
    class ServedQwen3VLPlugin(Qwen3VLPlugin):
        min_frames: int = 4

        def _get_video_sample_indices(self, video_stream, video_fps: float, video_maxlen: int, **kwargs) -> list[int]:
            # Qwen3VLVideoProcessor.sample_frames: int(frames / native fps * fps) within [min_frames, max], rounded
            total = video_stream.frames
            if total == 0 or not video_stream.average_rate:  # a stream without a frame count: LF's own rule
                return super()._get_video_sample_indices(video_stream, video_fps, video_maxlen, **kwargs)
            count = int(total / float(video_stream.average_rate) * video_fps)
            count = min(max(count, self.min_frames), video_maxlen, total)
            return np.linspace(0, total - 1, count).round().astype(int).tolist()

        def _validate_input(self, processor, images, videos, audios) -> None:
            if images or videos or audios:  # a text-only sample needs no processor (the doctor's probes have none)
                super()._validate_input(processor, images, videos, audios)

        def process_messages(self, messages, images, videos, audios, processor):
            from ..data.sample_errors import SampleError

            self._validate_input(processor, images, videos, audios)
            try:
                self._validate_messages(messages, images, videos, audios)
            except ValueError:
                given = {"<image>": (IMAGE_PLACEHOLDER, images), "<video>": (VIDEO_PLACEHOLDER, videos)}
                found = {tag: sum(str(m["content"]).count(ph) for m in messages) for tag, (ph, _) in given.items()}
                reason = "; ".join(f"{found[tag]} {tag} placeholder(s) for {len(files)} {tag[1:-1]} file(s)"
                                   for tag, (_, files) in given.items() if found[tag] != len(files))
                raise SampleError(reason, "put one placeholder in the messages for each file of the sample's "
                                  "`images` / `videos` list, in order, or remove the sample", messages) from None
            if not (images or videos):
                return messages
            messages = [dict(m) for m in messages]
            image_processor = processor.image_processor
            video_processor = processor.video_processor
            image_merge = image_processor.merge_size ** 2
            video_merge = video_processor.merge_size ** 2
            image_grid, video_grid, video_meta = [None] * len(images), [None] * len(videos), []
            if self.expand_mm_tokens:
                mm_inputs = self._get_mm_token_metadata(images, videos, audios, processor)
                if mm_inputs is None:
                    mm_inputs = self._get_mm_inputs(images, videos, audios, processor)
                image_grid = mm_inputs.get("image_grid_thw", [])
                video_grid = mm_inputs.get("video_grid_thw", [])
                video_meta = mm_inputs.get("video_metadata", [])
            n_image = n_video = 0
            for message in messages:
                content = message["content"]
                while IMAGE_PLACEHOLDER in content:
                    seqlen = image_grid[n_image].prod() // image_merge if self.expand_mm_tokens else 1
                    content = content.replace(
                        IMAGE_PLACEHOLDER, f"{self.vision_bos_token}{self.image_token * seqlen}{self.vision_eos_token}", 1)
                    n_image += 1
                while VIDEO_PLACEHOLDER in content:
                    if self.expand_mm_tokens:  # this video's own frames and timestamps
                        grid, meta = video_grid[n_video], video_meta[n_video]
                        stamps = processor._calculate_timestamps(meta.frames_indices, meta.fps, video_processor.merge_size)
                        frame = self.vision_bos_token + self.video_token * int(grid[1:].prod() // video_merge) \
                            + self.vision_eos_token
                        structure = "".join(f"<{stamps[t]:.1f} seconds>{frame}" for t in range(int(grid[0])))
                    else:
                        structure = f"{self.vision_bos_token}{self.video_token}{self.vision_eos_token}"
                    content = content.replace(VIDEO_PLACEHOLDER, structure, 1)
                    n_video += 1
                message["content"] = content
            return messages

    return ServedQwen3VLPlugin


REPORT_IMAGE_SAMPLES = 2000  # image samples whose files the report opens (headers only): bounded start-up I/O


def image_token_report(dataset: Any, folder: str | Path, tokenizer: Any, image_processor: Any = None) -> str | None:
    """One line: the image tokens of a tokenized dataset (what trains) against what the folder's processor gives the
    same images when it serves them (its `size`, the count vLLM reserves); None when the dataset holds no images or
    the processor is not verified. Samples cut by `cutoff_len` count as they train. `image_processor`: the one LF
    loaded for the run (LF sets its pixel limits on the processor, not on `size`), else the folder's is loaded.
    Only the first REPORT_IMAGE_SAMPLES samples with images are opened; the line says so when there are more."""
    plugin = media_plugin(folder)
    columns = getattr(dataset, "column_names", ())
    ids = next((c for c in ("input_ids", "chosen_input_ids") if c in columns), None)  # pairs: one prompt, both sides
    if plugin is None or not hasattr(dataset, "__len__") or "images" not in columns or ids is None:
        return None
    rows = [index for index, files in enumerate(dataset["images"]) if files]
    if not rows:
        return None
    from PIL import Image

    if image_processor is None:
        from transformers import AutoImageProcessor

        image_processor = AutoImageProcessor.from_pretrained(str(model_folder(folder)))
    size = size_edges(image_processor.size)
    patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
    token_id = tokenizer.convert_tokens_to_ids(plugin.image_token)
    checked = rows[:REPORT_IMAGE_SAMPLES]
    images = trained = served = 0
    differ = []
    for index, row in zip(checked, dataset.select(checked).select_columns([ids, "images"]), strict=True):
        want = 0
        for file in row["images"]:
            with Image.open(file) as image:  # the header: PIL decodes no pixels for .size
                want += image_tokens(image.height, image.width, size, patch, merge)
        have = row[ids].count(token_id)
        images, trained, served = images + len(row["images"]), trained + have, served + want
        if have != want:
            differ.append(index)
    scope = f" (the first {len(checked):,} of {len(rows):,} samples with images)" if len(rows) > len(checked) else ""
    line = (f"{images} images{scope}: {trained:,} image tokens as trained, {served:,} as the processor serves them "
            f"({size.get('shortest_edge')} to {size.get('longest_edge')} pixels per image)")
    if differ:
        shown = ", ".join(map(str, differ[:5])) + (", ..." if len(differ) > 5 else "")
        return line + (f"; {len(differ)} sample(s) differ (tokenized samples {shown}): the model trains on another view "
                       "of those images than it will be shown (LF's image_max_pixels / image_min_pixels, or cutoff_len)")
    return line + "; the same in every sample"
