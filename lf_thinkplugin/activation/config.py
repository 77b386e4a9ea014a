"""Reading a training config the way LF's `read_args` does (YAML or JSON plus key=value overrides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_config(argv: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    path = Path(argv[0]).absolute()
    if not path.is_file():
        raise SystemExit(f"[lf_thinkplugin] error: config file {path} does not exist")
    base = OmegaConf.create(json.loads(path.read_text())) if path.suffix == ".json" else OmegaConf.load(path)
    return OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_cli(argv[1:])))
