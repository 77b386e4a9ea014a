"""End to end: real `llamafactory-cli train` subprocesses on a tiny Qwen3-architecture model.

Covers the foundation's promises: a `thinkplugin:` block works with the user's unchanged command,
typos fail before the model loads, a run without a block is bit-identical to stock LF, the plugin
is active in torchrun children, `lf-think train` works without the .pth, and LF carrying the
upstream patch uses native hooks.
"""

import hashlib
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from lfrun import PATCH, SEAM_PROBE, base_config, log_records, losses, train

import llamafactory

pytestmark = pytest.mark.slow
LF_DIR = Path(llamafactory.__file__).parent
BLOCK = {"log_span_loss": False}  # needs no other capability: exercises the activation path alone


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_block_trains_and_saves_resolved_options(tiny_qwen3, tmp_path):
    out = tmp_path / "out"
    proc = train(base_config(tiny_qwen3, out, thinkplugin=BLOCK), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = yaml.safe_load((out / "thinkplugin_args.yaml").read_text())["thinkplugin"]
    assert saved["log_span_loss"] is False and saved["think_loss"] == "full" and saved["on_malformed"] == "warn"
    assert (out / "training_args.bin").is_file()  # beside LF's own saved arguments
    assert len(losses(out)) == 4
    assert "[lf_thinkplugin] thinkplugin: {" in proc.stdout + proc.stderr  # logged at start-up


@pytest.mark.parametrize("where", ["yaml", "cli"])
def test_plugin_key_typo_fails_before_model_loads(tiny_qwen3, tmp_path, where):
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, thinkplugin={"think_los": "mask_empty"} if where == "yaml" else {})
    overrides = ("thinkplugin.think_los=mask_empty",) if where == "cli" else ()
    proc = train(config, tmp_path, cli_overrides=overrides)
    assert proc.returncode == 2
    assert "unknown key `thinkplugin.think_los`. Did you mean `thinkplugin.think_loss`?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "loading weights" not in (proc.stdout + proc.stderr).lower()
    assert not out.exists()


def test_lf_key_typo_fails_exactly_as_in_lf(tiny_qwen3, tmp_path):
    config = base_config(tiny_qwen3, tmp_path / "out", learnin_rate=1.0)
    on = train(config, tmp_path / "on")
    off = train(config, tmp_path / "off", env={"LF_THINKPLUGIN_DISABLE": "1"})
    message = "ValueError: Some keys are not used by the HfArgumentParser: ['learnin_rate']"
    assert on.returncode != 0 and off.returncode != 0
    assert on.stderr.strip().splitlines()[-1] == off.stderr.strip().splitlines()[-1] == message


def test_no_block_is_bit_identical_to_plugin_disabled(tiny_qwen3, tmp_path):
    runs = {}
    for name, env in (("on", {}), ("off", {"LF_THINKPLUGIN_DISABLE": "1"})):
        out = tmp_path / name / "out"
        proc = train(base_config(tiny_qwen3, out), tmp_path / name, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not (out / "thinkplugin_args.yaml").exists()
        keys = ("loss", "lr", "grad_norm")
        runs[name] = ([{k: r.get(k) for k in keys} for r in log_records(out)], _sha(out / "model.safetensors"))
    assert runs["on"] == runs["off"]
    assert len(runs["on"][0]) >= 4


def test_plugin_active_in_torchrun_children(tiny_qwen3, tmp_path):
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, max_steps=2, ddp_backend="gloo", thinkplugin=BLOCK)
    proc = train(config, tmp_path, env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "world size: 2" in text and "torchrun" not in proc.stderr.splitlines()[-1]
    # The launcher process only spawns torchrun; only a worker can have written this file.
    assert (out / "thinkplugin_args.yaml").is_file()


@pytest.mark.parametrize("torchrun", [False, True], ids=["single", "torchrun"])
def test_lf_think_train_works_without_the_pth(tiny_qwen3, tmp_path, torchrun):
    """An interpreter that sees the packages but never processes our .pth (no site-packages of its own)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    paths = [sysconfig.get_paths()["purelib"], str(Path(__file__).resolve().parent.parent)]
    (site / "deps.pth").write_text("\n".join(paths) + "\n")  # plain path lines: .pth files there are not run
    python = venv / "bin" / "python"
    probe = subprocess.run([python, "-c", "import sys; print(any('LlamaFactory' in type(f).__name__ for f in sys.meta_path))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, thinkplugin=BLOCK, max_steps=2, **({"ddp_backend": "gloo"} if torchrun else {}))
    env = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"} if torchrun else {}
    proc = train(config, tmp_path, env=env, command=[str(python), "-m", "lf_thinkplugin.cli", "train"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "thinkplugin_args.yaml").is_file()  # written by the (only) worker that saves
    assert ("world size: 2" in proc.stdout + proc.stderr) == torchrun


def test_upstream_patch_applies_to_installed_llamafactory():
    proc = subprocess.run(["patch", "--dry-run", "-p2", "-d", str(LF_DIR.parent), "-i", str(PATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout and "offset" not in proc.stdout.lower() and "fuzz" not in proc.stdout.lower()


def test_patched_llamafactory_uses_native_hooks(tiny_qwen3, tmp_path, patched_lf):
    out = tmp_path / "out"
    proc = train(base_config(tiny_qwen3, out, thinkplugin=BLOCK), tmp_path, env=patched_lf,
                 command=[sys.executable, "-c", SEAM_PROBE])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SEAM_MODE native []" in proc.stdout  # nothing of LF's was patched
    assert "Loading plugin thinkplugin (lf_thinkplugin:register)" in proc.stdout + proc.stderr
    assert (out / "thinkplugin_args.yaml").is_file()


@pytest.mark.parametrize("native", [False, True], ids=["patched", "native"])
def test_malformed_report_runs_inside_lf_data_loading(tiny_qwen3, tmp_path, native, request):
    """on_malformed: error stops the run at data loading (before the model loads), naming dataset and sample."""
    import json

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nok\n</think>\n\nfine"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "no open tag</think>\n\nbad"}]}]
    (data / "bad.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"bad": {"file_name": "bad.json", "formatting": "sharegpt",
        "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content",
        "user_tag": "user", "assistant_tag": "assistant"}}}))
    config = base_config(tiny_qwen3, tmp_path / "out", dataset="bad", dataset_dir=str(data),
                         thinkplugin={"on_malformed": "error", "log_span_loss": False})
    proc = train(config, tmp_path, env=request.getfixturevalue("patched_lf") if native else {})
    assert proc.returncode != 0
    assert "1 of 2 samples have malformed think tags" in proc.stderr
    assert "close_without_open" in proc.stderr and "sample indices 1" in proc.stderr
    assert "loading weights" not in (proc.stdout + proc.stderr).lower()
