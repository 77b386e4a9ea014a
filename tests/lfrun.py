"""The one way tests run LLaMA-Factory in a subprocess: the tiny training config, `llamafactory-cli train`
(runner: lf_thinkplugin.demo.lf_subprocess, shared with the demo), `lf-think`, and LF carrying the
upstream hooks patch (`patched_lf` in conftest.py builds it once per session)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from lf_thinkplugin.demo.lf_subprocess import BIN, log_history, log_records, losses, train  # noqa: F401  (re-exported for tests)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PATCH = REPO / "patches" / "llamafactory-0.9.5-plugins.patch"
# `llamafactory-cli train CONFIG` in this interpreter, then which seam mode ran and what it patched
SEAM_PROBE = ("import sys; sys.argv = ['llamafactory-cli', 'train', *sys.argv[1:]]; from llamafactory.cli import main; "
              "import lf_thinkplugin.activation.seam as seam; main(); print('SEAM_MODE', seam.mode, sorted(seam._originals))")
# what `train_ok` adds to the environment: no dataset download, no LF dependency check, two threads
QUIET_ENV = {"HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "2"}


def base_config(model: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A 4-step full SFT on the demo reasoning data; CPU-sized."""
    config = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "full",
        "dataset": "think_demo",
        "dataset_dir": str(EXAMPLES / "data"),
        "template": "qwen3",
        "cutoff_len": 128,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "max_steps": 4,
        "learning_rate": 1.0e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
    }
    config.update(overrides)
    return config


def train_ok(config: dict[str, Any] | Path, workdir: Path, env: Optional[dict[str, str]] = None,
             command: Optional[list[str]] = None, timeout: int = 600) -> str:
    """`train` that must succeed (the test fails with the end of the log otherwise); returns stdout + stderr."""
    proc = train(config, workdir, env={**QUIET_ENV, **(env or {})}, command=command, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def lf_think(args: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
             timeout: Optional[int] = None) -> subprocess.CompletedProcess:
    """`lf-think ARGS` of this venv, output captured, no stdin."""
    return subprocess.run([str(BIN / "lf-think"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=timeout)


def patch_lf(folder: Path) -> dict[str, str]:
    """A copy of the installed LF in `folder` with patches/llamafactory-0.9.5-plugins.patch applied (native
    hooks); returns the environment that makes a run import it."""
    import llamafactory

    shutil.copytree(Path(llamafactory.__file__).parent, folder / "llamafactory", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["patch", "-p2", "-d", str(folder), "-i", str(PATCH)], check=True, capture_output=True)
    return {"PYTHONPATH": str(folder)}
