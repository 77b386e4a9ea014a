"""Images and videos with `template: native` on a tiny random Qwen3-VL model built from the fixtures (the Qwen3
tokenizer, the Qwen3-VL processor files and config; the Qwen3-VL-Instruct template, and the Qwen3.5 template with
thinking on and off), through `llamafactory-cli train` with `tokenized_path`: every sample's ids equal the
processor's own rendering and media processing of the same files (the oracle: the processor, not the plugin), image
and video token counts included; the trained span is the assistant turn after the processor's generation prompt.
Multi-turn samples, a video outside the first message (an IndexError in LF's own Qwen3-VL plugin) and
`expand_turns` (each per-turn sample keeps the media its messages hold) are among them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import require_fixture, require_multimodal
from lfrun import train
from media_support import (
    IMAGE_PAD,
    INSTRUCT,
    QWEN35,
    VIDEO_PAD,
    build_vl_model,
    make_image,
    make_video,
    processor_ids,
)

from lf_thinkplugin.demo.fixtures import QWEN3

# name -> (messages as (role, content with LF's placeholders, reasoning or None), image sides, videos (frames, fps, side))
CONVERSATIONS = {
    "one image": ([("user", "<image>What colour is this?", None), ("assistant", "Red.", None)], [1024], []),
    "reasoned": ([("user", "<image>Is it bright?", None), ("assistant", "Yes.", "The red is saturated.")], [256], []),
    "two turns": ([("user", "<image>Describe it.", None), ("assistant", "A square.", "It has four sides."),
                   ("user", "And the colour?", None), ("assistant", "Red.", "The pixels are red.")], [256], []),
    # 3 s at 10 fps: the processor samples 6 frames (LF's own rule picks others: other timestamps in the text)
    "video later": ([("user", "Watch this.", None), ("assistant", "Ready.", None),
                     ("user", "<video>What happens?", None), ("assistant", "It flickers.", "The frames change.")],
                    [], [(30, 10, 128)]),
}
PLACEHOLDER = re.compile(r"(<image>|<video>)")


def write_data(folder: Path, thinking_data: bool) -> list[tuple[list[tuple], list[Path], list[Path]]]:
    """The LF dataset `vl` (sharegpt, reasoning in `<think>` markup) and the conversations with their files."""
    folder.mkdir()
    rows, out = [], []
    for n, (messages, sides, clips) in enumerate(CONVERSATIONS.values()):
        messages = [(role, text, reasoning if thinking_data else None) for role, text, reasoning in messages]
        images = [make_image(folder / f"image{n}_{i}.png", side, (200, 40 * i, 30)) for i, side in enumerate(sides)]
        videos = [make_video(folder / f"video{n}_{i}.mp4", *clip) for i, clip in enumerate(clips)]
        rows.append({"messages": [{"role": role, "content": text if r is None else f"<think>\n{r}\n</think>\n\n{text}"}
                                  for role, text, r in messages],
                     "images": [str(p) for p in images], "videos": [str(p) for p in videos]})
        out.append((messages, images, videos))
    (folder / "vl.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    return out


def hf_messages(messages: list[tuple], images: list[Path], videos: list[Path]) -> list[dict]:
    """The conversation as the processor's chat template takes it: typed chunks where LF has placeholders."""
    files = {"<image>": iter(images), "<video>": iter(videos)}
    out = []
    for role, text, reasoning in messages:
        chunks = [{"type": part[1:-1], part[1:-1]: str(next(files[part]))} if part in files else
                  {"type": "text", "text": part} for part in PLACEHOLDER.split(text) if part]
        out.append({"role": role, "content": chunks, **({"reasoning_content": reasoning} if reasoning else {})})
    return out


def oracle(model: Path, messages: list[tuple], images: list[Path], videos: list[Path],
           thinking: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, full ids) for a conversation trained on its last turn: the prompt is the processor's rendering
    up to its generation prompt with the media of those messages; the turn is the text the template renders after
    it, tokenized on its own as the model generates it (where the prompt opens the think block, `\\n</think>` after
    `<think>\\n` tokenizes apart from `<think>\\n\\n</think>`)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model))
    kw = {"enable_thinking": thinking} if "enable_thinking" in processor.chat_template else {}
    conversation = hf_messages(messages, images, videos)
    prompt_text = processor.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True, **kw)
    full_text = processor.apply_chat_template(conversation, tokenize=False, **kw)
    assert full_text.startswith(prompt_text)
    prompt = processor_ids(model, prompt_text, images, videos)
    rest = processor.tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return prompt, prompt + list(rest)


def prefixes(messages: list[tuple], images: list[Path], videos: list[Path], expand: bool):
    """The samples a conversation becomes: itself, or one per assistant turn (`expand_turns`) with the media its
    messages hold."""
    ends = [i + 1 for i, (role, *_) in enumerate(messages) if role == "assistant"] if expand else [len(messages)]
    for end in ends:
        text = "".join(t for _, t, _ in messages[:end])
        yield messages[:end], images[:text.count("<image>")], videos[:text.count("<video>")]


RUNS = {  # name -> (chat template, enable_thinking, reasoning in the data, expand_turns, thinkplugin.template)
    "instruct-auto": (INSTRUCT, False, True, False, "auto"),
    "qwen3.5-thinking-expanded": (QWEN35, True, True, True, "native"),
    "qwen3.5-off-expanded": (QWEN35, False, False, True, "native"),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_media_train_as_the_processor_renders_them(run, tmp_path):
    from datasets import load_from_disk

    template, thinking, thinking_data, expand, choice = RUNS[run]
    model = build_vl_model(tmp_path / "model", template)
    conversations = write_data(tmp_path / "data", thinking_data)
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "vl", "dataset_dir": str(tmp_path / "data"), "cutoff_len": 4096,
        "enable_thinking": thinking, "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(tmp_path / "out"),
        "report_to": "none", "overwrite_cache": True, "max_steps": 1, "per_device_train_batch_size": 2,
        "logging_steps": 1, "save_strategy": "no",
        "thinkplugin": {"template": choice, "export_serving": False, "expand_turns": expand},
    }
    proc = train(config, tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    if choice == "auto":  # the probes are text: a processor folder whose media native verifies gets native
        assert "[lf_thinkplugin] template: auto -> native" in log
    for line in ("image_max_pixels: 16777216", "image_min_pixels: 65536", "video_maxlen: 768", "video_fps: 2.0"):
        assert f"[lf_thinkplugin] media: {line} (the processor's, as served" in log
    tokenized = load_from_disk(str(tmp_path / "tokenized" / "train"))
    samples = [s for conversation in conversations for s in prefixes(*conversation, expand)]
    tokens = sum((image_side(p) // 32) ** 2 for _, images, _ in samples for p in images)
    count = sum(len(images) for _, images, _ in samples)
    assert (f"[lf_thinkplugin] media: {count} images: {tokens:,} image tokens as trained, {tokens:,} as the processor "
            "serves them (65536 to 16777216 pixels per image); the same in every sample") in log
    assert len(tokenized) == len(samples) == (6 if expand else 4)
    for (messages, images, videos), row in zip(samples, tokenized, strict=True):
        prompt, full = oracle(model, messages, images, videos, thinking)
        where = (run, messages[-2][1])
        assert row["input_ids"] == full, where
        assert full.count(IMAGE_PAD) == sum((image_side(p) // 32) ** 2 for p in images), where  # 16-px patches merged 2 x 2
        assert (full.count(VIDEO_PAD) > 0) == bool(videos), where
        trained = [i for i, label in enumerate(row["labels"]) if label != -100]
        assert row["labels"][len(prompt):] == full[len(prompt):], where  # the last turn, all of it
        if expand:  # LF's mask_history: the sample's last turn only
            assert trained and trained[0] == len(prompt), where
    assert "'loss_answer'" in log  # a LoRA step on the tiny VL model, with span logging


def image_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.width


def test_dpo_pairs_with_an_image_share_the_processors_prompt(tmp_path):
    """A DPO pair on an image (Qwen3.5 template, thinking on): both sides after the one prompt the processor renders
    for the image, the reasoned side as the template renders it, the direct side in thinking mode's empty form."""
    from datasets import load_from_disk

    model = build_vl_model(tmp_path / "model", QWEN35)
    data = tmp_path / "data"
    data.mkdir()
    image = make_image(data / "pair.png", 512, (10, 200, 30))
    question, chosen, rejected = "<image>What colour is it?", ("Green.", "The pixels are green."), ("Red.", None)
    side = {"from": "gpt", "value": f"<think>\n{chosen[1]}\n</think>\n\n{chosen[0]}"}
    (data / "pairs.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": question}],
                                                  "chosen": side, "rejected": {"from": "gpt", "value": rejected[0]},
                                                  "images": [str(image)]}]))
    (data / "dataset_info.json").write_text(json.dumps({"pairs": {
        "file_name": "pairs.json", "ranking": True, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}}}))
    config = {"model_name_or_path": str(model), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
              "dataset": "pairs", "dataset_dir": str(data), "cutoff_len": 4096, "enable_thinking": True,
              "tokenized_path": str(tmp_path / "tokenized"), "output_dir": str(tmp_path / "out"), "report_to": "none",
              "max_steps": 1, "per_device_train_batch_size": 1, "thinkplugin": {"template": "native",
                                                                               "export_serving": False}}
    proc = train(config, tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "[lf_thinkplugin] media: 1 images: 256 image tokens as trained, 256 as the processor serves them" in proc.stdout
    row = load_from_disk(str(tmp_path / "tokenized" / "train"))[0]
    for name, (answer, reasoning) in (("chosen", chosen), ("rejected", rejected)):
        prompt, full = oracle(model, [("user", question, None), ("assistant", answer, reasoning)], [image], [], True)
        assert row[f"{name}_input_ids"] == full, name
        assert full.count(IMAGE_PAD) == (512 // 32) ** 2
        assert [i for i, label in enumerate(row[f"{name}_labels"]) if label != -100][0] == len(prompt), name


def test_check_reports_a_lower_pixel_limit_against_the_served_view(tmp_path):
    """`lf-think check` with the user's own `image_max_pixels` (LF's default, 768 x 768): kept, and the image tokens
    that would train are set against the processor's (1024 x 1024: 576 = 24^2 vs 1024 = 32^2 tokens)."""
    from lfrun import lf_think

    model = build_vl_model(tmp_path / "model", INSTRUCT)
    write_data(tmp_path / "data", False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": "vl", "dataset_dir": str(tmp_path / "data"), "cutoff_len": 4096, "image_max_pixels": 768 * 768,
        "output_dir": str(tmp_path / "out"), "thinkplugin": {"template": "native"}}))
    proc = lf_think(["check", str(recipe)], tmp_path, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "image_max_pixels: 589824 as set (the processor serves with 16777216" in out
    trained, served = 576 + 64 + 64, 1024 + 64 + 64  # the three image samples: 1024, 256 and 256 pixels a side
    assert (f"media: 3 images: {trained:,} image tokens as trained, {served:,} as the processor serves them (65536 to "
            "16777216 pixels per image); 1 sample(s) differ (tokenized samples 0)") in out


def test_a_placeholder_without_its_file_names_the_sample(tmp_path):
    model = build_vl_model(tmp_path / "model", QWEN35)
    data = tmp_path / "data"
    data.mkdir()
    image = make_image(data / "a.png", 64, (1, 2, 3))
    rows = [{"messages": [{"role": "user", "content": "<image>Fine."}, {"role": "assistant", "content": "Yes."}],
             "images": [str(image)]},
            {"messages": [{"role": "user", "content": "<image>Two <image> here."}, {"role": "assistant", "content": "No."}],
             "images": [str(image)]}]
    (data / "vl.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    config = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
              "dataset": "vl", "dataset_dir": str(data), "output_dir": str(tmp_path / "out"), "report_to": "none",
              "max_steps": 1, "thinkplugin": {"template": "native"}}
    proc = train(config, tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    assert "Traceback" not in log
    assert 'dataset `vl`, sample 1 ("<image>Two <image> here."): 2 <image> placeholder(s) for 1 image file(s)' in log


def test_the_image_token_report_opens_a_bounded_number_of_samples(tmp_path, monkeypatch):
    """In process, on a tokenized set built here: served counts are the processor's own `get_number_of_image_patches`
    (the oracle), a row whose ids hold fewer image tokens is named, and past REPORT_IMAGE_SAMPLES samples with
    images the files are not opened and the line says how many were checked."""
    from datasets import Dataset
    from transformers import AutoImageProcessor, AutoTokenizer

    from lf_thinkplugin.templates import media

    fixtures = require_fixture(QWEN3).parent
    require_multimodal()
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(fixtures / QWEN3 / name, folder / name)
    shutil.copy(fixtures / "multimodal" / "qwen3_vl_processor" / "preprocessor_config.json", folder)
    processor = AutoImageProcessor.from_pretrained(str(folder))
    served = {side: processor.get_number_of_image_patches(side, side, {}) // processor.merge_size ** 2
              for side in (64, 1024)}
    small, big = make_image(tmp_path / "s.png", 64, (1, 2, 3)), make_image(tmp_path / "b.png", 1024, (4, 5, 6))
    rows = {"input_ids": [[1] + [IMAGE_PAD] * served[64], [2], [IMAGE_PAD] * (served[1024] - 4), [IMAGE_PAD] * 5],
            "images": [[str(small)], [], [str(big)], [str(tmp_path / "never opened.png")]]}
    dataset = Dataset.from_dict(rows)
    tok = AutoTokenizer.from_pretrained(str(folder))
    monkeypatch.setattr(media, "REPORT_IMAGE_SAMPLES", 2)
    line = media.image_token_report(dataset, folder, tok)
    assert line == (f"2 images (the first 2 of 3 samples with images): {served[64] + served[1024] - 4:,} image tokens as "
                    f"trained, {served[64] + served[1024]:,} as the processor serves them (65536 to 16777216 pixels per "
                    "image); 1 sample(s) differ (tokenized samples 2): the model trains on another view of those images "
                    "than it will be shown (LF's image_max_pixels / image_min_pixels, or cutoff_len)")
