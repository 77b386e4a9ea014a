"""The serving bundle of a vision-language model: a tiny random Qwen3-VL trained with `template: native` through
`llamafactory-cli train` (one LoRA step, export_serving on). output_dir holds the processor files with the pixel
limits the run trained with, the processor's chat template, and SERVING.md's Media section; the vLLM flags written
there, applied to the base model's processor as vLLM passes them (`from_pretrained` and the call), give the image
token count the run trained with (oracle: the processor, and the tokenized training ids); `lf-think export --out`
writes the same files. A run with a lower `image_max_pixels` than the processor's carries that limit."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from lfrun import lf_think, train
from media_support import IMAGE_PAD, INSTRUCT, QWEN35, build_vl_model, make_image

from lf_thinkplugin.serving.media import MEDIA_FILES

PROCESSOR_IMAGE = {"shortest_edge": 65536, "longest_edge": 16777216}  # the fixture's preprocessor_config.json
PROCESSOR_VIDEO = {"shortest_edge": 4096, "longest_edge": 25165824}  # the fixture's video_preprocessor_config.json
BUNDLE = ["chat_template.jinja", "SERVING.md", *MEDIA_FILES]


def run(tmp_path: Path, template: str, lf_overrides: dict) -> tuple[Path, Path, str, list[int]]:
    """(model, output_dir, log, image tokens per training sample) of a one-step LoRA run on two images."""
    from datasets import load_from_disk

    model = build_vl_model(tmp_path / "model", template)
    data = tmp_path / "data"
    data.mkdir()
    files = [make_image(data / "big.png", 1024, (200, 40, 30)), make_image(data / "small.png", 256, (20, 90, 200))]
    answer = "<think>\nThe red is saturated.\n</think>\n\nRed." if template == QWEN35 else "Red."
    rows = [{"messages": [{"role": "user", "content": "<image>What colour is this?"},
                          {"role": "assistant", "content": answer}], "images": [str(path)]} for path in files]
    (data / "vl.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    out = tmp_path / "out"
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "vl", "dataset_dir": str(data), "cutoff_len": 4096,
        "enable_thinking": template == QWEN35, "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(out),
        "report_to": "none", "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 2,
        "logging_steps": 1, "save_strategy": "no", "thinkplugin": {"template": "native", "export_serving": True},
        **lf_overrides,
    }
    proc = train(config, tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    trained = [row["input_ids"].count(IMAGE_PAD) for row in load_from_disk(str(tmp_path / "tokenized" / "train"))]
    return model, out, log, trained


def flags_of(serving_md: str) -> dict:
    """The JSON of `--mm-processor-kwargs` in SERVING.md's vLLM command."""
    found = re.findall(r"--mm-processor-kwargs '(\{[^']*\})'", serving_md)
    assert len(found) == 1, found
    return json.loads(found[0])


def processor_tokens(processor, side: int, **call_kwargs) -> int:
    """Image tokens the processor writes for a side x side image (its input_ids, and its grid)."""
    from PIL import Image

    image = Image.new("RGB", (side, side), (200, 40, 30))
    out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[image], return_tensors="pt", **call_kwargs)
    tokens = int((out["input_ids"] == IMAGE_PAD).sum())
    assert tokens == int(out["image_grid_thw"].prod()) // processor.image_processor.merge_size ** 2
    return tokens


def size_of(folder: Path, name: str, nested: str | None = None) -> dict:
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    return data[nested]["size"] if nested else data["size"]


def check_export_agrees(out: Path, tmp_path: Path) -> None:
    """`lf-think export --out` on a copy of output_dir without the bundle writes the same files, byte for byte."""
    copy = tmp_path / "export_copy"
    shutil.copytree(out, copy)
    for name in ("SERVING.md", "preprocessor_config.json", "video_preprocessor_config.json"):
        (copy / name).unlink()
    proc = lf_think(["export", "--out", str(copy)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "media: preprocessor_config.json, video_preprocessor_config.json, processor_config.json" in proc.stdout
    for name in BUNDLE:
        assert (copy / name).read_text(encoding="utf-8") == (out / name).read_text(encoding="utf-8"), name


def test_vlm_bundle_carries_the_processor_limits_it_trained_with(tmp_path):
    from transformers import AutoProcessor

    model, out, _, trained = run(tmp_path, QWEN35, {})
    assert trained == [1024, 64]  # 1024 x 1024 and 256 x 256 at the processor's limits (32-pixel merged patches)
    record = json.loads((out / "thinkplugin_run.json").read_text(encoding="utf-8"))
    # the processor's limits, followed (videos: frames unresized before the processor, its fps and frame cap)
    assert record["media"] == {"image_min_pixels": 65536, "image_max_pixels": 16777216, "video_min_pixels": 1,
                               "video_max_pixels": 25165824, "video_fps": 2.0, "video_maxlen": 768,
                               "processor_image_size": PROCESSOR_IMAGE, "processor_video_size": PROCESSOR_VIDEO,
                               "processor_class": "Qwen3VLProcessor"}
    assert all((out / name).is_file() for name in BUNDLE)
    assert size_of(out, "preprocessor_config.json") == PROCESSOR_IMAGE
    assert size_of(out, "processor_config.json", "image_processor") == PROCESSOR_IMAGE
    assert size_of(out, "video_preprocessor_config.json") == PROCESSOR_VIDEO
    assert size_of(out, "processor_config.json", "video_processor") == PROCESSOR_VIDEO
    # the processor's chat template: the model's own, which training rendered
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == (model / "chat_template.jinja").read_text(encoding="utf-8")
    served = AutoProcessor.from_pretrained(str(out))
    assert served.chat_template == (model / "chat_template.jinja").read_text(encoding="utf-8")
    assert processor_tokens(served, 1024) == trained[0] and processor_tokens(served, 256) == trained[1]
    md = (out / "SERVING.md").read_text(encoding="utf-8")
    assert "## Media" in md
    assert flags_of(md) == {"min_pixels": 65536, "max_pixels": 16777216}
    assert "| at most (`longest_edge`) | 16,777,216 (4096 x 4096) | 16,777,216 (4096 x 4096) |" in md
    assert "a 1024 x 1024 image: 1024 image tokens)." in md
    assert "lower than the processor's" not in md
    assert "fixes the maximum at 2,097,152 pixels in its code" in md
    assert "(a 2896 x 2896 image: 2025 in Ollama, 8100 as trained)." in md  # smart_resize at 2,097,152 vs 16,777,216
    assert "parity with LF's training encoder on 12/12 probes (enable_thinking: true)" in md  # text probes too
    check_export_agrees(out, tmp_path)


def test_a_lower_image_max_pixels_is_carried_into_the_bundle(tmp_path):
    from transformers import AutoProcessor

    model, out, log, trained = run(tmp_path, INSTRUCT, {"image_max_pixels": 262144, "save_strategy": "steps",
                                                        "save_steps": 1})
    assert "[lf_thinkplugin] media: image_max_pixels: 262144 as set (the processor serves with 16777216" in log
    assert trained == [256, 64]  # 1024 x 1024 resized to 512 x 512 by LF; 256 x 256 untouched
    record = json.loads((out / "thinkplugin_run.json").read_text(encoding="utf-8"))
    assert record["media"]["image_max_pixels"] == 262144
    assert record["media"]["processor_image_size"] == PROCESSOR_IMAGE
    limits = {"shortest_edge": 65536, "longest_edge": 262144}
    assert size_of(out, "preprocessor_config.json") == limits
    assert size_of(out, "processor_config.json", "image_processor") == limits
    assert size_of(out, "video_preprocessor_config.json") == PROCESSOR_VIDEO  # no per-frame key to carry
    checkpoint = out / "checkpoint-1"  # LF saves the processor there too, after the plugin's callbacks
    assert size_of(checkpoint, "processor_config.json", "image_processor") == limits
    assert size_of(checkpoint, "preprocessor_config.json") == limits
    assert processor_tokens(AutoProcessor.from_pretrained(str(out)), 1024) == trained[0]
    md = (out / "SERVING.md").read_text(encoding="utf-8")
    kwargs = flags_of(md)
    assert kwargs == {"min_pixels": 65536, "max_pixels": 262144}
    assert ("The run set `image_max_pixels` 262,144 (512 x 512), lower than the processor's 16,777,216 (4096 x 4096): "
            "these files carry the trained limit, not the base model's.") in md
    assert "a 1024 x 1024 image: 256 image tokens; the processor's own limits would give 1024)." in md
    assert "resize larger images to at most 262,144 pixels" in md  # Ollama's fixed 2,097,152 maximum
    # the flags as vLLM passes them (to `from_pretrained` and to the call) on the base model's processor files
    base = AutoProcessor.from_pretrained(str(model), **kwargs)
    assert processor_tokens(base, 1024, **kwargs) == trained[0] == 256
    assert processor_tokens(base, 256, **kwargs) == trained[1]
    assert processor_tokens(AutoProcessor.from_pretrained(str(model)), 1024) == 1024  # without them: another view
    assert base.video_processor.size.longest_edge == PROCESSOR_VIDEO["longest_edge"]  # the video budget untouched
    check_export_agrees(out, tmp_path)
