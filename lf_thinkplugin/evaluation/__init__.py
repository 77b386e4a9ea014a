"""`lf-think eval`: does the model think as trained? Well-formed reasoning rates, vLLM parser splits,
reasoning / answer lengths and answer accuracy per mode (think / nothink), baseline side by side.

`metrics` reads generated ids (no torch needed); `generate` renders prompts and generates with HF
transformers; `cli` is the command.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)
