"""`lf-think`: the plugin's command line.

    lf-think train CONFIG.yaml [key=value ...]   LF training through the plugin's own entry (torchrun too)
    lf-think demo [--out DIR] [--max-steps N]    the tiny offline demo training
    lf-think doctor --model PATH [...]           template parity, think tags, end of turn
    lf-think export --template NAME [...]        serving bundle for vLLM, Ollama, LMDeploy
    lf-think check RECIPE.yaml [key=value ...]   dry run of a recipe, no model weights loaded
    lf-think eval --model DIR --data FILE [...]  does the model think as trained? (well-formed rates, parsers)
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

USAGE = __doc__


def _preflight(argv: list[str]) -> None:
    """Validate the config and its `thinkplugin:` block in this process, before torchrun starts any worker."""
    from ..activation.config import read_config
    from ..options import BLOCK, OptionsError, check_against_lf, parse_options

    try:
        config = read_config(argv)
        if BLOCK in config:
            check_against_lf(parse_options(config.pop(BLOCK)), config)
    except OptionsError as err:
        print(f"[lf_thinkplugin] error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _use_torchrun() -> bool:
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_ray

    return is_env_enabled("FORCE_TORCHRUN") or (get_device_count() > 1 and not use_ray())


def train(argv: list[str]) -> int:
    if not argv:
        print("usage: lf-think train CONFIG.yaml [key=value ...]", file=sys.stderr)
        return 2
    _preflight(argv)
    if not _use_torchrun():
        from ..activation.launch import run_train

        run_train(argv)
        return 0
    # Same environment contract as LF's launcher (NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR/PORT).
    from llamafactory.extras.misc import find_available_port, get_device_count

    from ..activation import launch

    cmd = [
        sys.executable, "-m", "torch.distributed.run",  # torchrun of this interpreter, whatever PATH says
        "--nnodes", os.getenv("NNODES", "1"),
        "--node_rank", os.getenv("NODE_RANK", "0"),
        "--nproc_per_node", os.getenv("NPROC_PER_NODE", str(max(get_device_count(), 1))),
        "--master_addr", os.getenv("MASTER_ADDR", "127.0.0.1"),
        "--master_port", os.getenv("MASTER_PORT", str(find_available_port())),
        launch.__file__, *argv,
    ]  # fmt: skip
    return subprocess.run(cmd, check=False).returncode


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "help"
    if command == "train":
        return train(argv)
    if command == "demo":
        from ..demo import main as demo_main

        return demo_main(argv)
    if command == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(argv)
    if command == "export":
        from ..serving import main as export_main

        return export_main(argv)
    if command == "check":
        from .check import main as check_main

        return check_main(argv)
    if command == "eval":
        from ..evaluation import main as eval_main

        return eval_main(argv)
    if command in ("help", "-h", "--help"):
        print(USAGE)
        return 0
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
