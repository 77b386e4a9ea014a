"""Run `llamafactory-cli train` as a subprocess and read what it logged (demo, tests, benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

BIN = Path(sys.executable).parent  # the venv's scripts: llamafactory-cli, torchrun


def train(
    config: dict[str, Any] | Path,
    workdir: Path,
    cli_overrides: tuple[str, ...] = (),
    env: Optional[dict[str, str]] = None,
    command: Optional[list[str]] = None,
    timeout: Optional[int] = None,
) -> subprocess.CompletedProcess:
    """Train with `config` (a dict, written to workdir/config.yaml in its key order, which token_init ids follow,
    or a YAML path), offline; output captured."""
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, dict):
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    else:
        path = Path(config)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    cmd = (command or [str(BIN / "llamafactory-cli"), "train"]) + [str(path), *cli_overrides]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def log_records(output_dir: Path) -> list[dict[str, Any]]:
    """LF's trainer_log.jsonl, one dict per logging step."""
    return [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines() if line.strip()]


def log_history(output_dir: Path) -> list[dict[str, Any]]:
    """The trainer's own log history (trainer_state.json): every logged key, `loss_think` / `loss_answer`
    included (LF's trainer_log.jsonl keeps a fixed set of keys)."""
    return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]


def losses(output_dir: Path) -> list[float]:
    return [r["loss"] for r in log_records(output_dir) if "loss" in r]
