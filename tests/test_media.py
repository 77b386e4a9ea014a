"""Images with `template: native` on a tiny random Qwen3-VL model built from the fixtures (the Qwen3 tokenizer, the
Qwen3-VL processor files and config; the Qwen3-VL-Instruct template, and the Qwen3.5 template for thinking),
through `llamafactory-cli train` with `tokenized_path`: every sample's ids equal the processor's own
`apply_chat_template` on the same images (the oracle: the processor, not the plugin), image token counts
included; the trained span is the assistant turn after the processor's generation prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lfrun import train
from media_support import IMAGE_PAD, INSTRUCT, QWEN35, build_vl_model, make_image

# (image side, user text, reasoning or None, answer)
SAMPLES = [(1024, "What colour is this?", None, "Red."), (256, "Is it bright?", "The red is saturated.", "Yes.")]


def images(folder: Path) -> list[Path]:
    return [make_image(folder / f"image{i}.png", side, (200, 40 * i, 30)) for i, (side, *_) in enumerate(SAMPLES)]


def oracle(model: Path, image: Path, text: str, reasoning, answer, thinking: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, full ids): the prompt from the processor's own chat template and image processing; the turn is
    the text the template renders after that prompt, tokenized on its own, as the model generates it (where the
    prompt opens the think block, `\n</think>` after `<think>\n` tokenizes apart from `<think>\n\n</think>`)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model))
    user = [{"role": "user", "content": [{"type": "image", "image": Image.open(image)}, {"type": "text", "text": text}]}]
    turn = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    if reasoning is not None:
        turn["reasoning_content"] = reasoning
    kw = {"enable_thinking": thinking} if "enable_thinking" in processor.chat_template else {}
    prompt = list(processor.apply_chat_template(user, tokenize=True, return_dict=True, add_generation_prompt=True,
                                                **kw)["input_ids"][0])
    prompt_text = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True, **kw)
    full_text = processor.apply_chat_template(user + [turn], tokenize=False, **kw)
    assert full_text.startswith(prompt_text)
    rest = processor.tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return prompt, prompt + list(rest)


@pytest.mark.parametrize("template", [INSTRUCT, QWEN35], ids=["qwen3-vl-instruct", "qwen3.5-thinking"])
def test_images_train_as_the_processor_renders_them(template, tmp_path):
    from datasets import load_from_disk

    model = build_vl_model(tmp_path / "model", template)
    files = images(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"role": "user", "content": "<image>" + text},
                          {"role": "assistant", "content": answer if r is None else f"<think>\n{r}\n</think>\n\n{answer}"}],
             "images": [str(path)]} for (_, text, r, answer), path in zip(SAMPLES, files, strict=True)]
    (data / "vl.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    thinking = template == QWEN35
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "vl", "dataset_dir": str(data), "cutoff_len": 4096,
        "enable_thinking": thinking, "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(tmp_path / "out"),
        "report_to": "none", "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 2,
        "logging_steps": 1, "save_strategy": "no", "thinkplugin": {"template": "native", "export_serving": False},
    }
    proc = train(config, tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "[lf_thinkplugin] media: image_max_pixels: 16777216 (the processor's, as served" in log
    tokenized = load_from_disk(str(tmp_path / "tokenized" / "train"))
    for (side, text, reasoning, answer), path, row in zip(SAMPLES, files, tokenized, strict=True):
        prompt, full = oracle(model, path, text, reasoning, answer, thinking)
        assert row["input_ids"] == full, (side, template)
        assert full.count(IMAGE_PAD) == (side // 32) ** 2  # 16-pixel patches merged 2 x 2: 1024 tokens at 1024 x 1024
        trained = [i for i, label in enumerate(row["labels"]) if label != -100]
        assert trained and trained[0] == len(prompt), (side, template)  # the turn after the processor's prompt
        assert row["labels"][len(prompt):] == full[len(prompt):]
    assert "'loss_answer'" in log  # a LoRA step on the tiny VL model, with span logging
