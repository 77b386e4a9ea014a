"""Serving-test helpers shared by tests/test_export.py, tests/test_serving_native.py and tests/test_serving_families.py:
fixture tokenizer folders, `lf-think export` in process, and Ollama's Go renderer (tests/ollama_render, built once per
session by conftest's `go_renderer`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import REPO, require_fixture, require_go


def model_dir(name: str, out: Path) -> Path:
    """A fixture's tokenizer folder copy, read faithfully by transformers (see docs/templates.md)."""
    shutil.copytree(require_fixture(name), out)
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return out


def export(*args: str) -> int:
    from lf_thinkplugin.serving import main

    return main(list(args))


def tokenizer_of(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def build_go_renderer(tmp_path_factory) -> Path:
    go = require_go()
    binary = tmp_path_factory.mktemp("go") / "ollama_render"
    env = dict(os.environ, GOCACHE=str(binary.parent / "cache"), GOPATH=str(binary.parent / "gopath"), GOFLAGS="-mod=mod")
    proc = subprocess.run([go, "build", "-o", str(binary), str(REPO / "tests" / "ollama_render" / "main.go")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=binary.parent, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return binary


def render_ollama(binary: Path, template: str, jobs: list[dict]) -> list[str]:
    proc = subprocess.run([str(binary)], input=json.dumps({"template": template, "jobs": jobs}), capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def modelfile_template(folder: Path) -> str:
    text = (folder / "Modelfile").read_text(encoding="utf-8")
    return text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
