"""Every recipe in examples/yaml passes `lf-think check`; recipes 6, 1, 5 and 4 (ZeRO-3, two CPU ranks) also train for real."""

import os
import subprocess

import pytest

from conftest import REPO, require_deepspeed, require_fixture
from lfrun import BIN, log_history, train

from lf_thinkplugin.demo.fixtures import QWEN25, QWEN3, R1_DISTILL

RECIPES = REPO / "examples" / "yaml"
# recipe -> (fixture tokenizer standing in for the model, template the check must report)
EXPECTED = {
    "qwen3_lora_mask_empty": (QWEN3, "qwen3_think (as given)"),
    "r1_distill_full_auto": (R1_DISTILL, "r1_distill_qwen (by thinkplugin.template: auto)"),
    "qwen25_add_think_tokens": (QWEN25, "qwen (as given)"),
    "qwen25_think_lora": (QWEN25, "qwen (as given)"),
    "qwen3_lora_zero3": (QWEN3, "qwen3_think (as given)"),
    "answer_only_mask_reasoning": (QWEN3, "qwen3_think (as given)"),
    "demo_tiny": (QWEN3, "qwen3_think (by thinkplugin.template: auto)"),
}


def test_every_recipe_is_covered_and_documented():
    assert {p.stem for p in RECIPES.glob("*.yaml")} == set(EXPECTED)
    for path in RECIPES.glob("*.yaml"):
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert head[0].startswith("### Recipe ") and any("When to use" in line for line in head), path.name


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_recipe_passes_check(recipe, tmp_path):
    fixture, template = EXPECTED[recipe]
    cmd = [str(BIN / "lf-think"), "check", str(RECIPES / f"{recipe}.yaml"), f"model_name_or_path={require_fixture(fixture)}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = proc.stdout[proc.stdout.index("recipe: "):]
    assert f"template: {template}" in report
    assert "check passed: no model weights were loaded" in report
    assert "data: 8 samples after preprocessing" in report
    assert not (REPO / "saves").exists()  # the recipe's output_dir is never created by a dry run


def test_demo_recipe_trains(tmp_path):
    require_fixture(QWEN3)
    proc = subprocess.run([str(BIN / "lf-think"), "demo", "--out", str(tmp_path / "demo"), "--max-steps", "4"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "steps: 4/4" in proc.stdout and "loss_think:" in proc.stdout and "loss_answer:" in proc.stdout
    assert (tmp_path / "demo" / "output" / "thinkplugin_args.yaml").is_file()
    again = subprocess.run([str(BIN / "lf-think"), "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr  # never silently overwrites


# recipe 4 as its launch line says, on two gloo ranks with DeepSpeed's CPU accelerator
ZERO3_RUN = ((f"deepspeed={REPO / 'examples' / 'deepspeed' / 'ds_z3_config.json'}", "ddp_backend=gloo"),
             {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})


@pytest.mark.parametrize("recipe", ["qwen3_lora_mask_empty", "answer_only_mask_reasoning", "qwen3_lora_zero3"])
def test_recipe_trains_scaled_down(recipe, tiny_qwen3, tmp_path):
    extra, env = ((), None)
    if recipe == "qwen3_lora_zero3":
        require_deepspeed()
        extra, env = ZERO3_RUN
    out = tmp_path / "out"
    overrides = (f"model_name_or_path={tiny_qwen3}", f"dataset_dir={REPO / 'examples' / 'data'}", f"output_dir={out}",
                 "max_steps=3", "num_train_epochs=1", "cutoff_len=256", "bf16=false", "logging_steps=1",
                 "gradient_accumulation_steps=1", "preprocessing_num_workers=null", "plot_loss=false", "save_steps=100",
                 *extra)
    proc = train(RECIPES / f"{recipe}.yaml", tmp_path, cli_overrides=overrides, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if env:
        assert "Detected DeepSpeed ZeRO-3: activating zero.init() for this model" in proc.stdout + proc.stderr
    steps = [r for r in log_history(out) if "loss" in r]
    assert len(steps) == 3 and all("loss_answer" in r for r in steps)
    assert (out / "adapter_model.safetensors").is_file()
