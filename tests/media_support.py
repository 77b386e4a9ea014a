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
