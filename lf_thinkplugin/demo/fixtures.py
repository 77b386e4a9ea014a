"""Where the real tokenizer fixtures live (tests, demo, benchmarks, doctor docs).

`LF_THINKPLUGIN_FIXTURES` names the folder; the default is `../shared/fixtures/tokenizers`
relative to the checkout (the layout of this project's workspace and CI); the test suite sets
the variable from its own location so subprocesses of an installed package find it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

ENV = "LF_THINKPLUGIN_FIXTURES"
QWEN3 = "Qwen3-0.6B"
R1_DISTILL = "DeepSeek-R1-Distill-Qwen-1.5B"
QWEN25 = "Qwen2.5-0.5B-Instruct"
DEEPSEEK_V3 = "DeepSeek-V3"


def fixtures_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    # From a checkout (editable install): beside the checkout. Installed as a wheel: beside the
    # working directory, which is the checkout when run from it.
    base = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return (base.parent / "shared" / "fixtures" / "tokenizers").resolve()


def tokenizer_dir(name: str) -> Optional[Path]:
    """The fixture folder of one model, or None when the fixtures are absent."""
    folder = fixtures_dir() / name
    return folder if (folder / "tokenizer.json").is_file() else None
