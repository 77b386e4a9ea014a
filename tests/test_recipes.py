"""Every recipe in examples/yaml as shipped: its hub ids served from an offline HF cache built from the
fixtures (tests/hf_cache.py), run from a user's folder holding examples/. `lf-think check` passes on each,
and each trains through `llamafactory-cli` (recipe 4: ZeRO-3 on two CPU ranks; recipe 6: `lf-think demo`)
with command-line overrides of steps and precision only."""

import json

import pytest
from conftest import REPO, require_deepspeed, require_fixture, require_multimodal
from lfrun import lf_think, log_history, train

from lf_thinkplugin.demo.fixtures import QWEN3

RECIPES = REPO / "examples" / "yaml"
# recipe -> template the check must report
EXPECTED = {
    "qwen3_lora_mask_empty": "qwen3_think (as given)",
    "r1_distill_full_auto": "native (by thinkplugin.template: auto)",
    "qwen25_add_think_tokens": "qwen (as given)",
    "qwen25_think_lora": "qwen (as given)",
    "qwen3_lora_zero3": "qwen3_think (as given)",
    "answer_only_mask_reasoning": "qwen3_think (as given)",
    "demo_tiny": "native (by thinkplugin.template: auto)",
    "qwen3_dpo_mask_reasoning": "native (by thinkplugin.template: auto)",
    "gpt_oss_effort_sft": "native (by the plugin)",
    "qwen3_vl_think_lora": "native (by thinkplugin.template: auto)",
}
# the scale-down: steps and precision (a CPU has no bf16 training), nothing about the model or data
SCALED_DOWN = ("max_steps=2", "logging_steps=1", "save_steps=100", "bf16=false")


def shipped(recipe: str, key: str) -> str:
    """A top-level value of the recipe as shipped."""
    return next(line.split(":", 1)[1].strip() for line in (RECIPES / f"{recipe}.yaml").read_text().splitlines()
                if line.startswith(f"{key}:"))


def check_recipe(recipe, workspace, env):
    proc = lf_think(["check", f"examples/yaml/{recipe}.yaml"], workspace, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = proc.stdout[proc.stdout.index("recipe: "):]
    assert f"template: {EXPECTED[recipe]}" in report
    assert "check passed: no model weights were loaded" in report
    assert not (workspace / "saves").exists() or recipe in ("demo_tiny", "qwen25_think_lora")  # never made by a dry run
    return report


def test_every_recipe_is_covered_and_documented():
    assert {p.stem for p in RECIPES.glob("*.yaml")} == set(EXPECTED)
    for path in RECIPES.glob("*.yaml"):
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert head[0].startswith("### Recipe ") and any("When to use" in line for line in head), path.name


@pytest.mark.parametrize("recipe", sorted(set(EXPECTED) - {"qwen25_think_lora"}))  # 3b: after 3a, below
def test_recipe_passes_check(recipe, workspace, hub_env):
    if recipe == "qwen3_vl_think_lora":
        require_multimodal()
    if recipe == "demo_tiny":  # its model is the tiny one `lf-think demo` builds
        from lf_thinkplugin.demo.tiny_model import build_tiny_model

        build_tiny_model(workspace / "saves" / "tiny-qwen3", require_fixture(QWEN3))
    report = check_recipe(recipe, workspace, hub_env)
    if recipe == "qwen3_dpo_mask_reasoning":  # 8 pairs: 6 reason on some side, 3 mix a reasoned side and a direct answer
        assert ("preference data: 8 pairs; 6 in thinking mode, 2 in non-thinking mode (enable_thinking: None); "
                "2 pair(s) mix a reasoned side and a direct answer") in report
    else:
        assert "data: 8 samples after preprocessing" in report
    if recipe == "qwen3_vl_think_lora":  # 256 x 256 pictures: 64 image tokens each, as served
        assert ("media: 8 images: 512 image tokens as trained, 512 as the processor serves them (65536 to 16777216 "
                "pixels per image); the same in every sample") in report
    model = {"demo_tiny": "saves/tiny-qwen3"}.get(recipe)
    assert f"model: {model or shipped(recipe, 'model_name_or_path')} (tokenizer only;" in report


def test_hub_id_missing_from_the_offline_cache_is_refused(workspace, hub_env, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((RECIPES / "r1_distill_full_auto.yaml").read_text().replace(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))
    proc = lf_think(["check", str(recipe)], workspace, hub_env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("`model_name_or_path: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B` (revision main) is not in "
            f"{hub_env['HF_HUB_CACHE']} and HF_HUB_OFFLINE is set") in proc.stderr
    assert "hf download deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in proc.stderr


def test_doctor_reads_a_hub_id_from_the_cache(workspace, hub_env):
    proc = lf_think(["doctor", "--model", "Qwen/Qwen3-0.6B"], workspace, hub_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "native" in proc.stdout and "qwen3_think" in proc.stdout  # recommended; and the scan's rows
    snapshot = hub_env["HF_HUB_CACHE"] + "/models--Qwen--Qwen3-0.6B/snapshots/"
    assert snapshot in proc.stdout  # the cache's snapshot folder, as transformers resolves the id


def test_demo_recipe_trains(tmp_path):
    """The main job as shipped: the tiny training, then `lf-think eval` before / after (the format is learned)."""
    require_fixture(QWEN3)
    proc = lf_think(["demo", "--out", str(tmp_path / "demo")])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "steps: 150/150" in proc.stdout and "loss_think:" in proc.stdout and "loss_answer:" in proc.stdout
    assert (tmp_path / "demo" / "output" / "thinkplugin_args.yaml").is_file()
    assert "modes from the data: think for 5 prompts, nothink for 3 prompts" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("well-formed"))
    think_model, think_base, nothink_model, nothink_base = map(float, row.split()[1:])
    assert think_model >= 0.9 and nothink_model >= 0.9, row  # trained: the format was learned
    assert think_base <= 0.1 and nothink_base <= 0.1, row  # the untrained baseline
    assert (tmp_path / "demo" / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "parity with LF's training encoder on 12/12 probes" in proc.stdout  # tool-call probes included
    again = lf_think(["demo", "--out", str(tmp_path / "demo")])
    assert again.returncode == 2 and "--force" in again.stderr  # never silently overwrites


# recipe 4 as its launch line says, on two gloo ranks with DeepSpeed's CPU accelerator (gloo: no NCCL on a CPU)
ZERO3_RUN = (("ddp_backend=gloo",), {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})


def train_shipped(recipe, workspace, hub_env, extra=(), env=None):
    proc = train(workspace / "examples" / "yaml" / f"{recipe}.yaml", workspace, cli_overrides=(*SCALED_DOWN, *extra),
                 env={**hub_env, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = workspace / shipped(recipe, "output_dir")
    steps = [r for r in log_history(out) if "loss" in r]
    assert len(steps) == 2
    assert (out / "thinkplugin_args.yaml").is_file()
    return proc, out, steps


@pytest.mark.parametrize("recipe", ["qwen3_lora_mask_empty", "answer_only_mask_reasoning", "qwen3_lora_zero3",
                                    "r1_distill_full_auto"])
def test_recipe_trains_as_shipped(recipe, workspace, hub_env):
    extra, env = (), None
    if recipe == "qwen3_lora_zero3":
        require_deepspeed()
        extra, env = ZERO3_RUN
    proc, out, steps = train_shipped(recipe, workspace, hub_env, extra, env)
    log = proc.stdout + proc.stderr
    if env:
        assert "Detected DeepSpeed ZeRO-3: activating zero.init() for this model" in log
    if recipe == "r1_distill_full_auto":
        assert (out / "model.safetensors").is_file() and "template: auto -> native" in log
    else:  # LoRA on the hub id, which the adapter records as its base (what serving loads)
        assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "Qwen/Qwen3-0.6B"
    assert all("loss_answer" in r and "loss_think" in r for r in steps)  # log_span_loss (on by default)


def test_dpo_recipe_trains_as_shipped(workspace, hub_env):
    """Recipe 8: the pairs' reward parts are logged, and under mask_reasoning the reasoning part is zero."""
    _, out, steps = train_shipped("qwen3_dpo_mask_reasoning", workspace, hub_env)
    for row in steps:
        assert row["rewards/chosen_reasoning"] == 0 and row["rewards/rejected_reasoning"] == 0, row
        assert row["think/chosen_reasoning_tokens"] > 0, row
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "Qwen/Qwen3-0.6B"


def test_think_token_recipes_chain(workspace, hub_env):
    """Recipe 3a adds `<think>` / `</think>` to Qwen2.5 and trains only their rows; 3b continues from its output."""
    from transformers import AutoTokenizer

    _, warmup, _ = train_shipped("qwen25_add_think_tokens", workspace, hub_env)
    tokenizer = AutoTokenizer.from_pretrained(str(warmup))
    assert tokenizer.convert_tokens_to_ids(["<think>", "</think>"]) == [151665, 151666]
    assert tokenizer("<think>x</think>", add_special_tokens=False)["input_ids"][:1] == [151665]
    check_recipe("qwen25_think_lora", workspace, hub_env)
    _, out, _ = train_shipped("qwen25_think_lora", workspace, hub_env)
    assert (out / "adapter_model.safetensors").is_file()


def test_vl_recipe_trains_as_shipped(workspace, hub_env):
    """Recipe 9: the tiny Qwen3-VL under the recipe's hub id, its images as the processor serves them, spans logged."""
    require_multimodal()
    proc, out, steps = train_shipped("qwen3_vl_think_lora", workspace, hub_env)
    log = proc.stdout + proc.stderr
    assert "template: auto -> native" in log
    assert "[lf_thinkplugin] media: image_max_pixels: 16777216 (the processor's, as served" in log
    assert "[lf_thinkplugin] media: 8 images: 512 image tokens as trained, 512 as the processor serves them" in log
    assert all("loss_answer" in r and "loss_think" in r for r in steps)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "Qwen/Qwen3-VL-2B-Instruct"
