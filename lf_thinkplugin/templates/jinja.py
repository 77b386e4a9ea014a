"""The Jinja chat templates shipped beside this module (the official ones, verbatim, where one exists)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def jinja_text(filename: str) -> str:
    return (_HERE / filename).read_text(encoding="utf-8")
