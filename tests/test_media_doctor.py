"""`lf-think doctor` on a vision-language model folder (a tiny random Qwen3-VL built from the fixtures): its media
section (probe conversations with an image, `template: native` through LF vs the processor's own
`apply_chat_template`, thinking on and off) and the image token counts of a 1024 x 1024 image: the processor's
grid at the limits it serves with vs LF's default limits (oracle: the processor, called here with those limits).
A folder whose run record says it trained at a lower limit than its processor serves fails (exit status 1) until
its processor files carry the trained limit."""

from __future__ import annotations

import json

from lfrun import lf_think
from media_support import INSTRUCT, QWEN35, build_vl_model

LF_DEFAULT = {"min_pixels": 32 * 32, "max_pixels": 768 * 768}  # LF's image_min_pixels / image_max_pixels defaults


def grid_tokens(folder, side: int, **limits) -> int:
    """The processor's image tokens for a side x side image (its own limits, or `limits` in the call)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    grid = processor.image_processor(images=[Image.new("RGB", (side, side), (200, 40, 30))], **limits)["image_grid_thw"]
    return int(grid.prod()) // processor.image_processor.merge_size ** 2


def doctor(folder, *extra: str):
    proc = lf_think(["doctor", "--model", str(folder), *extra], timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_doctor_reports_media_parity_and_vision_tokens(tmp_path):
    model = build_vl_model(tmp_path / "model", QWEN35)
    served, lf_default = grid_tokens(model, 1024), grid_tokens(model, 1024, **LF_DEFAULT)
    assert (served, lf_default) == (1024, 576)  # the numbers, from the processor itself
    code, out = doctor(model)
    assert code == 0, out
    assert "  media (Qwen3VLProcessor: images through LF's multimodal plugin under template `native`):" in out
    assert "    served image limits (the processor's size): shortest_edge 65536, longest_edge 16777216 pixels" in out
    assert "    probes with an image: 3/3" in out
    for name, mode in (("image, answer", "on"), ("image, reasoning", "on"), ("image, thinking off", "off")):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert "ok: token-exact (" in line and f"{served} image tokens, thinking {mode})" in line, line
    assert f"      served (the processor's grid):     {served}\n" in out
    assert f"      template native (the plugin):      {served} ok\n" in out
    assert f"      LF's default limits (image_max_pixels 589824, image_min_pixels 1024): {lf_default}  (differs" in out
    assert "templates with parity on every probe: native" in out  # the text probes run on a VL folder too
    code, out = doctor(model, "--json")
    assert code == 0, out
    media = json.loads(out[out.index("{"):])["media"]
    assert media["ok"] is True and [p["ok"] for p in media["probes"]] == [True, True, True]
    assert (media["served_tokens"], media["native_tokens"], media["lf_default_tokens"]) == (served, served, lf_default)


def test_doctor_fails_a_folder_that_serves_another_view_than_it_trained_on(tmp_path):
    model = build_vl_model(tmp_path / "model", INSTRUCT)  # no thinking switch: no thinking-off probe
    processor_size = json.loads((model / "preprocessor_config.json").read_text())["size"]
    record = {"version": 1, "template": "native", "enable_thinking": True, "format": None,
              "media": {"image_min_pixels": 65536, "image_max_pixels": 262144, "processor_image_size": processor_size}}
    (model / "thinkplugin_run.json").write_text(json.dumps(record))
    code, out = doctor(model, "--template", "native")
    assert code == 1, out
    assert "    probes with an image: 2/2" in out
    assert "      image, reasoning       ok: token-exact (1052 tokens, 1024 image tokens)\n" in out
    assert f"      served (the processor's grid):     {grid_tokens(model, 1024)}\n" in out  # 1024
    assert "      trained (thinkplugin_run.json: image_max_pixels 262144): 256 FAIL: this folder's processor" in out
    assert "verdict: FAIL" in out
    # the processor files carry the trained limit (what the serving bundle writes): served as trained
    config = json.loads((model / "preprocessor_config.json").read_text())
    config["size"]["longest_edge"] = 262144
    (model / "preprocessor_config.json").write_text(json.dumps(config))
    assert grid_tokens(model, 1024) == 256
    code, out = doctor(model, "--template", "native")
    assert code == 0, out
    assert "      served (the processor's grid):     256\n" in out
    assert "      trained (thinkplugin_run.json: image_max_pixels 262144): 256 ok" in out
