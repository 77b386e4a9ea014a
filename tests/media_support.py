"""A tiny random Qwen3-VL model folder built from the fixtures, and generated images: shared by the media tests
(tests/test_media*.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import require_fixture, require_multimodal

from lf_thinkplugin.demo.fixtures import QWEN3

IMAGE_PAD = 151655
VIDEO_PAD = 151656
INSTRUCT = "multimodal/Qwen-Qwen3-VL-2B-Instruct.jinja"
QWEN35 = "chat_templates/Qwen-Qwen3.5-4B.jinja"


def build_vl_model(folder: Path, template: str) -> Path:
    """Tokenizer + processor files + chat template + tiny config, and random weights for them."""
    import torch
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    fixtures = require_fixture(QWEN3).parent
    require_multimodal()
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(fixtures / QWEN3 / name, folder / name)
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(fixtures / "multimodal" / "qwen3_vl_processor" / name, folder / name)
    shutil.copy(fixtures / template, folder / "chat_template.jinja")
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(str(fixtures / "multimodal" / "tiny-qwen3-vl"))
    Qwen3VLForConditionalGeneration(config).save_pretrained(str(folder))
    return folder


def make_image(path: Path, side: int, colour: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (side, side), colour).save(path)
    return path


def make_video(path: Path, frames: int, fps: int, side: int) -> Path:
    """An MPEG-4 clip of `frames` frames at `fps` (PyAV, which LF and transformers decode with)."""
    import av
    import numpy as np

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width = stream.height = side
    stream.pix_fmt = "yuv420p"
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), (i * 20) % 255, dtype=np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def processor_ids(model: Path, text: str, images: list[Path], videos: list[Path]) -> list[int]:
    """The processor's own ids for a rendered chat text with these media: images opened with PIL, videos decoded
    whole by transformers' PyAV reader and sampled by the video processor itself, as served (torchcodec, the
    processor's default reader, is not installed beside LF's torch pin)."""
    from PIL import Image
    from transformers import AutoProcessor
    from transformers.video_utils import load_video

    processor = AutoProcessor.from_pretrained(str(model))
    decoded = [load_video(str(v), backend="pyav") for v in videos]
    kwargs = {"images": [Image.open(i) for i in images]} if images else {}
    if videos:
        kwargs.update(videos=[d[0] for d in decoded], video_metadata=[d[1] for d in decoded])
    return [int(i) for i in processor(text=[text], return_tensors="pt", **kwargs)["input_ids"][0]]
