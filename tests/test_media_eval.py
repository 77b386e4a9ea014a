"""`lf-think eval` on prompts with images, run as a user runs it (the `lf-think` command of this venv), on a tiny
random Qwen3-VL model built from the fixtures with the Qwen3.5 template (thinking on / off): the prompts that the
eval fed the model equal the processor's own `apply_chat_template(..., tokenize=True, add_generation_prompt=True)`
on the same images, and the image tokens it reports equal the processor's image grid for those image sizes (the
oracle: the processor, never the plugin). A random model writes garbage: the assertions are on structure and
counts. A model without an image processor refuses prompts with images: exit 2, the sample named, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_fixture
from lfrun import lf_think
from media_support import IMAGE_PAD, QWEN35, build_vl_model, make_image

from lf_thinkplugin.demo.fixtures import QWEN3

# image file -> (side, colour); sides give different grids: 16-pixel patches merged 2 x 2 in Qwen3-VL
IMAGES = {"red.png": (256, (200, 40, 30)), "green.png": (512, (30, 160, 60)), "blue.png": (384, (20, 40, 220))}
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
# LF sharegpt rows as users write them: `<image>` where each image goes, paths relative to dataset_dir
ROWS = [
    {"messages": [{"role": "user", "content": "<image>What colour is this?"},
                  {"role": "assistant", "content": "<think>\nIt is red.\n</think>\n\nRed."}],
     "images": ["img/red.png"]},
    {"messages": [{"role": "user", "content": "Compare <image> with <image>: which is brighter?"},
                  {"role": "assistant", "content": "The green one."}],
     "images": ["img/green.png", "img/blue.png"]},
    {"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello."}]},
]
MAX_NEW = 3


@pytest.fixture(scope="module")
def vl_model(tmp_path_factory) -> Path:
    return build_vl_model(tmp_path_factory.mktemp("vl") / "model", QWEN35)


@pytest.fixture
def dataset(tmp_path) -> Path:
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    for name, (side, colour) in IMAGES.items():
        make_image(data / "img" / name, side, colour)
    (data / "vl.json").write_text(json.dumps(ROWS))
    (data / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": TAGS}}))
    return data


def processor_of(model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(model))


def grid_tokens(processor, image) -> int:
    """Image tokens the processor gives `image`: its image processor's grid (t * h * w patches) over merge_size^2."""
    ip = processor.image_processor
    t, h, w = ip(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    return t * h * w // ip.merge_size ** 2


def oracle_ids(processor, content: list[dict], thinking: bool) -> list[int]:
    """The processor's own prompt: typed chunks with the PIL images in them, tokenized by apply_chat_template."""
    messages = [{"role": "user", "content": content}]
    out = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                        enable_thinking=thinking)
    return [int(i) for i in out["input_ids"][0]]


def test_eval_on_image_prompts_reports_the_processors_image_tokens(vl_model, dataset, tmp_path):
    from PIL import Image

    processor = processor_of(vl_model)
    img = {name: Image.open(dataset / "img" / name).convert("RGB") for name in IMAGES}
    tokens = {name: grid_tokens(processor, image) for name, image in img.items()}
    assert tokens == {"red.png": 64, "green.png": 256, "blue.png": 144}  # (side / 32)^2: the oracle agrees with itself

    outputs = tmp_path / "outputs.jsonl"
    proc = lf_think(["eval", "--model", str(vl_model), "--data", "vl", "--dataset-dir", str(dataset),
                     "--modes", "think,nothink", "--max-new-tokens", str(MAX_NEW), "--json", "--outputs", str(outputs)],
                    timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    served = json.loads((vl_model / "preprocessor_config.json").read_text())["size"]
    assert report["images"] == {
        "prompts_with_images": 2, "images": 3,
        "image_tokens_mean": (tokens["red.png"] + tokens["green.png"] + tokens["blue.png"]) / 2,
        "processor": "Qwen3VLProcessor", "pixel_limits_from": "processor",
        "pixel_limits": {"image_min_pixels": served["shortest_edge"], "image_max_pixels": served["longest_edge"]},
        "served_pixel_limits": {"image_min_pixels": served["shortest_edge"], "image_max_pixels": served["longest_edge"]},
    }
    assert report["modes"] == ["think", "nothink"] and report["prompts"] == 3
    for mode in ("think", "nothink"):  # the usual think metrics, over every prompt, image or not
        metrics = report["model"]["metrics"][mode]
        assert metrics["n"] == 3 and metrics["truncated"] + metrics["end_of_turn"] == 1.0, metrics
    assert any("the processor's, as served" in note for note in report["notes"])

    records = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert len(records) == 2 * 3
    contents = [
        [{"type": "image", "image": img["red.png"]}, {"type": "text", "text": "What colour is this?"}],
        [{"type": "text", "text": "Compare "}, {"type": "image", "image": img["green.png"]},
         {"type": "text", "text": " with "}, {"type": "image", "image": img["blue.png"]},
         {"type": "text", "text": ": which is brighter?"}],
    ]
    expected_tokens = [tokens["red.png"], tokens["green.png"] + tokens["blue.png"]]
    for mode in ("think", "nothink"):
        group = [r for r in records if r["mode"] == mode]
        assert [r["prompt"] for r in group] == [row["messages"][0]["content"] for row in ROWS]
        for record, content, count, row in zip(group, contents, expected_tokens, ROWS):
            want = oracle_ids(processor, content, mode == "think")
            assert record["prompt_ids"] == want, mode
            assert record["image_tokens"] == count == want.count(IMAGE_PAD)
            assert record["images"] == [str(dataset / p) for p in row["images"]]
            assert 1 <= record["tokens"] <= MAX_NEW
        assert "prompt_ids" not in group[2] and "images" not in group[2]  # a text prompt's record is as before
    think, nothink = (next(r for r in records if r["mode"] == m) for m in ("think", "nothink"))
    assert think["prompt_ids"] != nothink["prompt_ids"]  # the Qwen3.5 switch reached the processor's template

    # one prompt at a time: the same outputs (left padding of the ids and the per-token tensors, pixels in order)
    alone = tmp_path / "alone.jsonl"
    proc = lf_think(["eval", "--model", str(vl_model), "--data", "vl", "--dataset-dir", str(dataset), "--modes", "think",
                     "--max-new-tokens", str(MAX_NEW), "--batch-size", "1", "--outputs", str(alone)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(line)["text"] for line in alone.read_text().splitlines()] == [
        r["text"] for r in records if r["mode"] == "think"]


def test_eval_json_prompts_at_the_trained_runs_pixel_limits(vl_model, dataset, tmp_path):
    """The eval JSON format with `images` (no placeholder: the image goes before the text; paths relative to the
    file), on a model folder whose run record trained at a lower image_max_pixels than the processor serves with:
    the images are seen as in training (LF's resize to 256 x 256 first), and the table says so."""
    from PIL import Image

    folder = tmp_path / "trained"
    folder.mkdir()
    for file in vl_model.iterdir():
        (folder / file.name).symlink_to(file)
    (folder / "thinkplugin_run.json").write_text(json.dumps({
        "version": 1, "template": None, "enable_thinking": True, "format": None,
        "media": {"image_min_pixels": 65536, "image_max_pixels": 256 * 256}}))
    prompts = dataset / "prompts.jsonl"
    prompts.write_text(json.dumps({"question": "How many colours?", "answer": "One.", "images": ["img/green.png"]}) + "\n")
    outputs = tmp_path / "outputs.jsonl"
    proc = lf_think(["eval", "--model", str(folder), "--data", str(prompts), "--modes", "think",
                     "--max-new-tokens", str(MAX_NEW), "--outputs", str(outputs)], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    processor = processor_of(vl_model)
    # LF's resize at image_max_pixels 65536: 512 x 512 scaled by sqrt(65536 / 512^2) = 0.5, then the processor
    shown = Image.open(dataset / "img" / "green.png").convert("RGB").resize((256, 256))
    count = grid_tokens(processor, shown)
    assert count == 64 != grid_tokens(processor, Image.open(dataset / "img" / "green.png").convert("RGB"))
    assert (f"images: 1 of 1 prompts with images (1 images); image tokens per prompt with images (mean) {count:.1f}; "
            "pixel limits from the trained run") in proc.stdout
    served = json.loads((vl_model / "preprocessor_config.json").read_text())["size"]["longest_edge"]
    assert (f"note: image pixel limits: the trained run's ({folder / 'thinkplugin_run.json'}: image_max_pixels 65536), "
            f"not the processor's (image_max_pixels {served}): images seen as in training") in proc.stdout
    assert "think (n=1)" in proc.stdout and "well-formed" in proc.stdout
    (record,) = [json.loads(line) for line in outputs.read_text().splitlines()]
    content = [{"type": "image", "image": shown}, {"type": "text", "text": "How many colours?"}]
    assert record["prompt_ids"] == oracle_ids(processor, content, True)
    assert record["image_tokens"] == count and record["reference"] == "One."


def test_images_for_a_text_only_model_exit_2_naming_the_sample(dataset, tmp_path):
    text_model = require_fixture(QWEN3)  # a tokenizer folder: no image processor
    proc = lf_think(["eval", "--model", str(text_model), "--data", "vl", "--dataset-dir", str(dataset),
                     "--max-new-tokens", "2"], timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (f'[lf_thinkplugin] eval: error: sample 0 of {dataset / "vl.json"} ("<image>What colour is this?") has '
            f"images, but the model folder {text_model} has no image processor") in proc.stderr
    assert "drop their `images`" in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""
    # an image the dataset names but does not hold: exit 2, the sample and the file named
    rows = [{**ROWS[0], "images": ["img/missing.png"]}]
    (dataset / "vl.json").write_text(json.dumps(rows))
    proc = lf_think(["eval", "--model", str(text_model), "--data", "vl", "--dataset-dir", str(dataset)], timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"sample 0 of {dataset / 'vl.json'} (\"<image>What colour is this?\"): image 'img/missing.png' not found" in proc.stderr


@pytest.mark.slow
def test_a_lora_run_at_lower_pixel_limits_is_evaluated_as_it_trained(vl_model, dataset, tmp_path):
    """`llamafactory-cli train` (template native, LoRA, one step) with `image_max_pixels: 65536` below what the
    processor serves: the run record keeps the limits, and `lf-think eval --adapter` shows the images as trained."""
    from lfrun import train
    from PIL import Image

    out = tmp_path / "out"
    config = {
        "model_name_or_path": str(vl_model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "vl", "dataset_dir": str(dataset), "cutoff_len": 4096,
        "image_max_pixels": 256 * 256, "enable_thinking": True, "output_dir": str(out), "report_to": "none",
        "max_steps": 1, "per_device_train_batch_size": 1, "save_strategy": "no",
        "thinkplugin": {"template": "native", "export_serving": False},
    }
    proc = train(config, tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    served = json.loads((vl_model / "preprocessor_config.json").read_text())["size"]
    record = json.loads((out / "thinkplugin_run.json").read_text())
    assert record["template"] == "native"
    assert {k: record["media"][k] for k in ("image_min_pixels", "image_max_pixels")} == {
        "image_min_pixels": served["shortest_edge"], "image_max_pixels": 65536}  # unset: the processor's (media.py)

    outputs = tmp_path / "outputs.jsonl"
    proc = lf_think(["eval", "--model", str(vl_model), "--adapter", str(out), "--data", "vl", "--dataset-dir",
                     str(dataset), "--modes", "think", "--max-new-tokens", str(MAX_NEW), "--json", "--outputs",
                     str(outputs)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["template"] == "native"
    assert report["images"]["pixel_limits_from"] == "run" and report["images"]["record"] == str(out / "thinkplugin_run.json")
    processor = processor_of(vl_model)
    # LF's resize at 65536 pixels: 512 -> 256 (factor 0.5), 384 -> 256 (2/3; 255 where the float rounds down, the
    # same 32-pixel grid), 256 unchanged
    shown = {name: Image.open(dataset / "img" / name).convert("RGB").resize((256, 256)) for name in IMAGES}
    records = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert [r["image_tokens"] for r in records[:2]] == [grid_tokens(processor, shown["red.png"]),
                                                        2 * grid_tokens(processor, shown["green.png"])] == [64, 128]
    content = [{"type": "image", "image": shown["red.png"]}, {"type": "text", "text": "What colour is this?"}]
    assert records[0]["prompt_ids"] == oracle_ids(processor, content, True)
