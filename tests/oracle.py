"""Small pieces the token-level oracles of the tests share (written here, independent of the package)."""

from __future__ import annotations

IGNORE = -100


def label_runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of trained (non-IGNORE) labels."""
    runs, start = [], None
    for i, label in enumerate(list(labels) + [IGNORE]):
        if label != IGNORE and start is None:
            start = i
        elif label == IGNORE and start is not None:
            runs.append((start, i))
            start = None
    return runs
