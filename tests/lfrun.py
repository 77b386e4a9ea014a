"""The tiny training config shared by the end-to-end tests (runner: lf_thinkplugin.demo.lf_subprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lf_thinkplugin.demo.lf_subprocess import BIN, log_history, log_records, losses, train  # noqa: F401  (re-exported for tests)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
