#!/usr/bin/env bash
# Set up and run the whole test suite. Fails when pytest collects no test (exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"${VENV:-.venv}/bin/python" -m pytest -ra --durations=25 "$@"  # the slowest tests, to keep CI short
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
