#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install lf-thinkplugin with its pinned torch trio.
# Non-interactive; idempotent. VENV (default .venv) and PYTHON (default python3) can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
# Dependencies first (cached after the first run: ~2 min and ~6 GB on a fresh machine), then the
# package itself as a real wheel, so the .pth bootstrap and packaged recipes are what gets tested.
pip_install -c constraints.txt torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 "llamafactory>=0.9.5,<0.10" pytest pytest-xdist openai-harmony
pip_install -c constraints.txt --force-reinstall --no-deps .
pip_install -c constraints.txt .  # any dependency the package adds beyond llamafactory's
