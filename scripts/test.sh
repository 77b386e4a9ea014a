#!/usr/bin/env bash
# Set up and run the whole test suite. Fails when pytest collects no test (exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# One pytest worker per core (PYTEST_WORKERS=0 runs in one process): most tests wait on
# llamafactory-cli subprocesses that use one core while importing and tokenizing. Whole files go to
# one worker (loadfile), so module-scoped set-ups are built once.
WORKERS=${PYTEST_WORKERS:-auto}
PARALLEL=(-n "$WORKERS" --dist loadfile)
[ "$WORKERS" = 0 ] && PARALLEL=()
"${VENV:-.venv}/bin/python" -m pytest -ra --durations=40 "${PARALLEL[@]}" "$@"  # the slowest tests, to keep CI short
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
