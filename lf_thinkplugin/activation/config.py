"""Reading a training config the way LF's `read_args` does (YAML or JSON plus key=value overrides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_config(argv: list[str]) -> dict[str, Any]:
    """The merged config; OptionsError naming the file (and line) for a missing file or bad YAML / JSON."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ..options import OptionsError

    path = Path(argv[0]).absolute()
    if not path.is_file():
        raise OptionsError(f"config file {path} does not exist")
    try:
        base = OmegaConf.create(json.loads(path.read_text())) if path.suffix == ".json" else OmegaConf.load(path)
        overrides = OmegaConf.from_cli(argv[1:])
        config = OmegaConf.to_container(OmegaConf.merge(base, overrides))
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise OptionsError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from None
    except OmegaConfBaseException as err:
        raise OptionsError(f"{path} or its key=value overrides cannot be merged: {err}") from None
    if not isinstance(config, dict):
        raise OptionsError(f"{path} must hold a mapping of training arguments, got {type(config).__name__}")
    return config
