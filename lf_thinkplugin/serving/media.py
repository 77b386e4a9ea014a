"""Vision-language models (a processor class in templates/media.py's PROCESSOR_PLUGINS: Qwen3-VL, Qwen3.5 / 3.6):
the processor files of the serving bundle, SERVING.md's Media section, and the doctor's media report.

What a run trained with: LF's multimodal plugin resizes each image to at most `image_max_pixels` (at least
`image_min_pixels`), then the processor's own `smart_resize` applies its `size` (`shortest_edge` / `longest_edge`:
pixel counts for Qwen-VL). An engine that loads the processor only applies `size`, so the bundle writes the
processor files with `size` = the limits training applied (the tighter of LF's and the processor's), and SERVING.md
gives the engine flags that carry them where the model is served from another folder.

Checked in transformers 5.6.0 (tests/test_media_serving.py calls the processor as vLLM does):
- `Qwen2VLImageProcessor` takes `min_pixels` / `max_pixels` in `from_pretrained` (they set `size`) and in a call,
  where only both together replace `size` (`_standardize_kwargs`); `max_pixels` alone is ignored;
- a `size` key is shared by the image and the video processor (the processor's flat keyword arguments go to
  every modality that accepts them): it would also set the video budget, which for Qwen3-VL's video processor
  covers all frames of a video (`smart_resize(num_frames, ...)`), so the bundle's flags use min / max pixels;
- `processor.save_pretrained` writes `processor_config.json` with the image and video processors nested; a
  folder's `processor_config.json` takes precedence over `preprocessor_config.json` when both are present.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..templates.media import image_tokens, size_edges

MEDIA_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")
# ollama model/models/qwen3vl/imageprocessor.go (read at ollama 043e990): `longestEdge: 2 << 20`, fixed in code
OLLAMA_MAX_PIXELS = 2 << 20
PROBE_SIDE = 1024  # the doctor's probe image, and the example in SERVING.md (the issue's 1024 x 1024 case)


def is_vlm(processor: Any) -> bool:
    from ..templates.media import PROCESSOR_PLUGINS

    return processor is not None and type(processor).__name__ in PROCESSOR_PLUGINS


def trained_image_size(media: dict[str, Any]) -> dict[str, int]:
    """The image limits a run trained at: LF's resize, then the processor's (the tighter bound of each)."""
    processor = media.get("processor_image_size") or {}
    lows = [v for v in (processor.get("shortest_edge"), media.get("image_min_pixels")) if v is not None]
    highs = [v for v in (processor.get("longest_edge"), media.get("image_max_pixels")) if v is not None]
    out = {}
    if lows:
        out["shortest_edge"] = int(max(lows))
    if highs:
        out["longest_edge"] = int(min(highs))
    if len(out) == 2 and out["shortest_edge"] > out["longest_edge"]:
        out["shortest_edge"] = out["longest_edge"]
    return out


def _json(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@dataclass
class MediaServing:
    processor_class: str
    media: dict[str, Any]  # the run's record (templates/record.py: media_record)
    trained_image: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)
    patch: int = 16
    merge: int = 2

    @property
    def processor_image(self) -> dict[str, int]:
        return dict(self.media.get("processor_image_size") or {})

    @property
    def vllm_kwargs(self) -> dict[str, int]:
        """vLLM's `--mm-processor-kwargs`: both keys (the processor ignores one alone), images only."""
        return {"min_pixels": self.trained_image["shortest_edge"], "max_pixels": self.trained_image["longest_edge"]}


def processor_files(processor: Any, media: dict[str, Any]) -> MediaServing:
    """The processor's files as it saves them, with the image `size` training applied: `preprocessor_config.json`
    and `video_preprocessor_config.json` (the hub layout, which transformers 4 reads) and `processor_config.json`
    (transformers 5's layout, which LF's own save writes into output_dir and which takes precedence)."""
    with tempfile.TemporaryDirectory() as tmp:
        type(processor).save_pretrained(processor, tmp)  # the class's method: not a hook set on this instance
        found = {name: json.loads((Path(tmp) / name).read_text(encoding="utf-8"))
                 for name in MEDIA_FILES if (Path(tmp) / name).is_file()}
    cls = type(processor).__name__
    nested = found.get("processor_config.json") or {}
    image = found.get("preprocessor_config.json") or ({**nested["image_processor"], "processor_class": cls}
                                                      if "image_processor" in nested else None)
    video = found.get("video_preprocessor_config.json") or ({**nested["video_processor"], "processor_class": cls}
                                                            if "video_processor" in nested else None)
    trained = trained_image_size(media)
    files = {}
    if image is not None:
        image = copy.deepcopy(image)
        if len(trained) == 2:
            image["size"] = dict(trained)
        files["preprocessor_config.json"] = _json(image)
    if video is not None:
        files["video_preprocessor_config.json"] = _json(video)
    if nested:
        nested = copy.deepcopy(nested)
        if "image_processor" in nested and len(trained) == 2:
            nested["image_processor"]["size"] = dict(trained)
        files["processor_config.json"] = _json(nested)
    image_processor = getattr(processor, "image_processor", None)
    return MediaServing(cls, dict(media), trained, files, int(getattr(image_processor, "patch_size", 16) or 16),
                        int(getattr(image_processor, "merge_size", 2) or 2))


def _px(value: Any) -> str:
    if isinstance(value, int):
        side = math.isqrt(value)
        return f"{value:,}" + (f" ({side} x {side})" if side * side == value else "")
    return str(value)


def media_md(ms: MediaServing) -> str:
    """SERVING.md's Media section."""
    media, trained, proc = ms.media, ms.trained_image, ms.processor_image
    if len(trained) != 2 or len(proc) != 2:
        return ("## Media\n\nThe processor's image limits could not be read (no `size` with shortest_edge / "
                "longest_edge): serve with the processor files of the model as trained.\n")
    kwargs = json.dumps(ms.vllm_kwargs)
    example = {name: image_tokens(PROBE_SIDE, PROBE_SIDE, size, ms.patch, ms.merge) for name, size in
               (("trained", trained), ("processor", proc))}
    big = 2 * math.isqrt(OLLAMA_MAX_PIXELS)  # an image above Ollama's maximum: 2896 x 2896
    ollama = {name: image_tokens(big, big, size, ms.patch, ms.merge) for name, size in
              (("trained", trained), ("ollama", {**trained, "longest_edge": OLLAMA_MAX_PIXELS}))}
    lower = trained["longest_edge"] < proc["longest_edge"]
    how = (f"Images were trained through LF's multimodal plugin for `{ms.processor_class}`: LF resized each image to "
           f"`image_max_pixels` {_px(media.get('image_max_pixels'))} at most (`image_min_pixels` "
           f"{_px(media.get('image_min_pixels'))} at least), then the processor applied its own `size`."
           if media.get("image_max_pixels") is not None else
           f"No run record holds LF's pixel limits for this model (`thinkplugin_run.json` `media`): the processor files "
           f"carry `{ms.processor_class}`'s own limits, which a `template: native` run follows where its YAML sets none.")
    lines = [
        "## Media",
        "",
        how,
        "",
        "| image pixels | trained | the processor's own `size` |",
        "|---|---|---|",
        f"| at least (`shortest_edge`) | {_px(trained['shortest_edge'])} | {_px(proc['shortest_edge'])} |",
        f"| at most (`longest_edge`) | {_px(trained['longest_edge'])} | {_px(proc['longest_edge'])} |",
        "",
        "`preprocessor_config.json` and `processor_config.json` here hold the trained limits as the image processor's "
        "`size`: an engine that loads the processor from this folder shows images as they were trained "
        f"(a {PROBE_SIDE} x {PROBE_SIDE} image: {example['trained']} image tokens"
        + (f"; the processor's own limits would give {example['processor']})." if example["processor"] != example["trained"] else ")."),
    ]
    if lower:
        lines.append(f"The run set `image_max_pixels` {_px(trained['longest_edge'])}, lower than the processor's "
                     f"{_px(proc['longest_edge'])}: these files carry the trained limit, not the base model's.")
    lines += [
        "",
        "### vLLM",
        "",
        "Served from this folder, vLLM reads the limits from these files. Served from a folder with other processor "
        "files (merged weights next to the base model's), pass them:",
        "",
        "```",
        f"vllm serve MODEL_DIR --chat-template MODEL_DIR/chat_template.jinja --mm-processor-kwargs '{kwargs}'",
        "```",
        "",
        "`min_pixels` and `max_pixels` go together: the Qwen-VL image processor replaces its `size` only when a call "
        "gives both (one alone is ignored). They set the image processor only; a `size` key would also set the video "
        "processor, whose `size` is a budget over all frames of a video. A request can override them "
        "(`\"mm_processor_kwargs\"`), which shows the model images at other sizes than it was trained on.",
        "`--limit-mm-per-prompt '{\"image\": N, \"video\": M}'` caps the media of one request (vLLM sizes its memory "
        "profiling by it): set it to what your requests carry.",
        "",
        "### Video",
        "",
        "`video_preprocessor_config.json` is the processor's own. "
        + (f"LF sampled frames at `video_fps` {media.get('video_fps')} (at most `video_maxlen` {media.get('video_maxlen')} "
           f"frames) and resized each frame to at most `video_max_pixels` {_px(media.get('video_max_pixels'))} before the "
           "processor: " if media.get("video_max_pixels") is not None else "LF's per-frame limits apply before the processor: ")
        + "no processor key holds a per-frame pixel limit (Qwen3-VL's video `size` bounds all frames together), so the "
        "serving files cannot carry it; send videos sampled and sized as in training.",
        "",
        "### LMDeploy",
        "",
        "LMDeploy's Qwen3-VL preprocessing (`lmdeploy/vl/model/qwen3.py`) loads the processor from the model folder and "
        "reads `size` (shortest / longest edge): served from this folder, images get the trained limits; from another "
        f"folder, per request: `\"mm_processor_kwargs\": {kwargs}`.",
        "",
        "### Ollama",
        "",
        "Ollama's Qwen3-VL image processor (`model/models/qwen3vl/imageprocessor.go`) takes the minimum from the GGUF "
        f"(`vision.shortest_edge`) and fixes the maximum at {_px(OLLAMA_MAX_PIXELS)} pixels in its code; no Modelfile "
        "or request option sets it, so the trained maximum cannot be carried to Ollama.",
    ]
    if trained["longest_edge"] > OLLAMA_MAX_PIXELS:
        lines.append(f"Images above {_px(OLLAMA_MAX_PIXELS)} pixels get fewer tokens in Ollama than in training "
                     f"(a {big} x {big} image: {ollama['ollama']} in Ollama, {ollama['trained']} as trained).")
    elif trained["longest_edge"] < OLLAMA_MAX_PIXELS:
        lines.append(f"Ollama shows images of up to {_px(OLLAMA_MAX_PIXELS)} pixels where training stopped at "
                     f"{_px(trained['longest_edge'])}: resize larger images to at most {trained['longest_edge']:,} "
                     "pixels before sending them.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# the doctor's media report


@dataclass
class MediaProbe:
    name: str
    ok: bool
    detail: str


@dataclass
class MediaReport:
    processor_class: str
    served: dict[str, int]  # the image `size` the folder's processor serves with
    probes: list[MediaProbe] = field(default_factory=list)
    side: int = PROBE_SIDE
    served_tokens: Optional[int] = None  # the processor's grid for the probe image
    native_tokens: Optional[int] = None  # image tokens in the plugin's native encoding (served limits)
    lf_default_tokens: Optional[int] = None  # LF's plugin at LF's default limits
    lf_defaults: dict[str, int] = field(default_factory=dict)
    trained: dict[str, int] = field(default_factory=dict)  # from the folder's run record, where it has one
    trained_tokens: Optional[int] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        trained = self.trained_tokens is None or self.trained_tokens == self.served_tokens
        return self.error is None and all(p.ok for p in self.probes) and self.served_tokens == self.native_tokens and trained

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _lf_args(limits: dict[str, Any]) -> Any:
    """The model arguments LF's `patch_processor` reads: LF's defaults, `limits` over them."""
    from dataclasses import fields
    from types import SimpleNamespace

    from llamafactory.hparams import ModelArguments

    defaults = {f.name: f.default for f in fields(ModelArguments) if not callable(f.default)}
    return SimpleNamespace(**{**defaults, **limits})


def _count(plugin: Any, processor: Any, image: Any) -> int:
    """Image tokens LF's multimodal plugin writes for one `<image>` with the processor as patched."""
    from llamafactory.extras.constants import IMAGE_PLACEHOLDER

    messages = plugin.process_messages([{"role": "user", "content": IMAGE_PLACEHOLDER}], [image], [], [], processor)
    return messages[0]["content"].count(processor.image_token)


def media_report(folder: str, enable_thinking: Optional[bool] = True) -> Optional[MediaReport]:
    """Media probes for a folder whose processor is a verified class; None for any other folder.

    Each probe (a conversation with a generated image) is encoded by LF's SFT path with `template: native` and the
    folder's processor at the limits it serves with, and compared token for token with the processor's own
    `apply_chat_template` on the same image (prompt ids, the trained span after it). The image tokens of the probe
    image: the processor's grid, the plugin's count, and LF's count at LF's default limits."""
    from ..templates.media import PROCESSOR_PLUGINS, processor_class

    cls = processor_class(folder)
    if cls not in PROCESSOR_PLUGINS:
        return None
    report = MediaReport(cls, {})
    try:
        _probe(report, folder, enable_thinking)
    except Exception as err:  # noqa: BLE001  (the report says what failed; the doctor's exit status follows)
        report.error = f"{type(err).__name__}: {err}"
    return report


def _probe(report: MediaReport, folder: str, enable_thinking: Optional[bool]) -> None:
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import TEMPLATES
    from llamafactory.extras.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER
    from llamafactory.hparams import DataArguments
    from llamafactory.model.patcher import patch_processor
    from PIL import Image
    from transformers import AutoProcessor

    from ..templates import register_templates
    from ..templates.parity import quiet_lf
    from ..templates.record import read_record

    register_templates()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    tokenizer = processor.tokenizer
    image_processor = processor.image_processor
    report.served = size_edges(image_processor.size)
    merge = int(image_processor.merge_size)
    image = Image.new("RGB", (report.side, report.side), (200, 40, 30))
    grid = image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
    report.served_tokens = int(grid.prod()) // (merge * merge)
    pad = tokenizer.convert_tokens_to_ids(processor.image_token)
    served = {"image_min_pixels": report.served["shortest_edge"], "image_max_pixels": report.served["longest_edge"]}
    video = size_edges(getattr(getattr(processor, "video_processor", None), "size", None) or {})
    if len(video) == 2:
        served.update(video_min_pixels=video["shortest_edge"], video_max_pixels=video["longest_edge"])
    patch_processor(processor, tokenizer, _lf_args(served))  # what a native run sets (templates/media.py)

    template = copy.deepcopy(TEMPLATES["native"])
    template.fix_special_tokens(tokenizer)  # native: the folder's processor class picks LF's media plugin
    encoder = template.encoder(tokenizer)
    fmt = encoder.format
    probes = [("image, answer", None, enable_thinking)]
    if fmt.markup:
        probes.append(("image, reasoning", "The red is saturated.", True))
    switch = fmt.switch is not None and fmt.switch.kind == "kwarg"
    if switch:
        probes.append(("image, thinking off", None, False))
    text, answer = "What colour is this?", "Red."
    for name, reasoning, thinking in probes:
        template.enable_thinking = thinking
        content = answer if reasoning is None else f"{fmt.markup[0]}\n{reasoning}\n{fmt.markup[1]}\n\n{answer}"
        data_args = DataArguments(template="native", cutoff_len=1 << 30, enable_thinking=thinking)
        lf = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=processor, data_args=data_args)
        batch = {"_prompt": [[{"role": "user", "content": IMAGE_PLACEHOLDER + text}]],
                 "_response": [[{"role": "assistant", "content": content}]], "_system": [""], "_tools": [""],
                 "_images": [[image]], "_videos": [None], "_audios": [None]}
        with quiet_lf():
            out = lf.preprocess_dataset(batch)
        if not out["input_ids"]:
            report.probes.append(MediaProbe(name, False, "LF dropped the sample"))
            continue
        ids, labels = out["input_ids"][0], out["labels"][0]
        # the oracle: the processor's own chat template and image processing on the same image
        kw = encoder.kwargs(bool(thinking))
        user = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
        turn = fmt.message(answer, reasoning if thinking else None)
        prompt = list(processor.apply_chat_template(user, tokenize=True, return_dict=True, add_generation_prompt=True,
                                                    **kw)["input_ids"][0])
        prompt_text = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True, **kw)
        full_text = processor.apply_chat_template(user + [turn], tokenize=False, **kw)
        if not full_text.startswith(prompt_text):
            report.probes.append(MediaProbe(name, False, "the processor's rendering of the turn does not extend its "
                                            "generation prompt"))
            continue
        full = prompt + tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
        trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        problems = []
        if ids != full:
            at = next((i for i, (a, b) in enumerate(zip(ids, full)) if a != b), min(len(ids), len(full)))
            problems.append(f"ids differ at {at} (plugin {len(ids)} tokens, processor {len(full)})")
        elif not trained or trained[0] != len(prompt) or labels[len(prompt):] != full[len(prompt):]:
            problems.append("the trained span is not the turn after the processor's generation prompt")
        tokens = ids.count(pad)
        if name == "image, answer":
            report.native_tokens = tokens
        mode = {True: "on", False: "off", None: "auto"}[thinking]
        report.probes.append(MediaProbe(name, not problems, "; ".join(problems) or (
            f"token-exact ({len(ids)} tokens, {tokens} image tokens" + (f", thinking {mode})" if switch else ")"))))

    plugin = template.mm_plugin
    defaults = _lf_args({})
    report.lf_defaults = {"image_max_pixels": defaults.image_max_pixels, "image_min_pixels": defaults.image_min_pixels}
    patch_processor(processor, tokenizer, defaults)
    report.lf_default_tokens = _count(plugin, processor, image)
    record = read_record(folder) or {}
    media = record.get("media")
    if media and media.get("image_max_pixels") is not None:
        report.trained = {k: media[k] for k in ("image_min_pixels", "image_max_pixels") if k in media}
        patch_processor(processor, tokenizer, _lf_args(report.trained))
        from transformers.image_utils import SizeDict

        # LF's resize at the trained limits, then the processor the run loaded (its own size, as recorded)
        processor.image_processor.size = SizeDict(**(media.get("processor_image_size") or report.served))
        report.trained_tokens = _count(plugin, processor, image)


def render_media(report: MediaReport) -> list[str]:
    """The doctor's media section (lines)."""
    lines = [f"\n  media ({report.processor_class}: images through LF's multimodal plugin under template `native`):"]
    if report.error:
        return lines + [f"    FAIL: {report.error}"]
    served = report.served
    lines.append(f"    served image limits (the processor's size): shortest_edge {served.get('shortest_edge')}, "
                 f"longest_edge {served.get('longest_edge')} pixels")
    passed = sum(p.ok for p in report.probes)
    lines.append(f"    probes with an image: {passed}/{len(report.probes)}")
    lines += [f"      {p.name:22s} {'ok' if p.ok else 'FAIL'}: {p.detail}" for p in report.probes]
    side = f"{report.side} x {report.side}"
    lines.append(f"    image tokens for a {side} image:")
    lines.append(f"      served (the processor's grid):     {report.served_tokens}")
    match = "ok" if report.native_tokens == report.served_tokens else "FAIL"
    lines.append(f"      template native (the plugin):      {report.native_tokens} {match}")
    d = report.lf_defaults
    note = "" if report.lf_default_tokens == report.served_tokens else (
        "  (differs from served: LF's own templates train at these limits unless the YAML sets them; "
        "template: native follows the processor)")
    lines.append(f"      LF's default limits (image_max_pixels {d.get('image_max_pixels')}, image_min_pixels "
                 f"{d.get('image_min_pixels')}): {report.lf_default_tokens}{note}")
    if report.trained_tokens is not None:
        match = "ok" if report.trained_tokens == report.served_tokens else (
            "FAIL: this folder's processor shows the model another view than it trained on; write the serving bundle "
            "(`lf-think export --out FOLDER --force`) or serve with SERVING.md's flags")
        lines.append(f"      trained (thinkplugin_run.json: image_max_pixels {report.trained.get('image_max_pixels')}): "
                     f"{report.trained_tokens} {match}")
    return lines
