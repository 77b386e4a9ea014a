"""Entry for `lf-think train`: register the plugin explicitly, then run LF's training.

Used in-process for one device, and as the torchrun script for several (the counterpart of LF's
own launcher.py), so it works where the site-packages `.pth` bootstrap cannot be used.
"""

import sys


def run_train(argv: list[str]) -> None:
    import llamafactory  # noqa: F401  (the .pth bootstrap, if present, registers here; register() is idempotent)

    from lf_thinkplugin import register  # absolute: torchrun runs this file as a script

    register()
    from llamafactory.train.tuner import run_exp

    sys.argv = [sys.argv[0], *argv]  # LF's read_args reads CONFIG.yaml and key=value overrides from sys.argv
    run_exp()


if __name__ == "__main__":
    run_train(sys.argv[1:])
