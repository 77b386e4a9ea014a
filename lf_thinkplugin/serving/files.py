"""All-or-nothing writes of the bundle: refuse before writing anything, never leave half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ExistingFiles(FileExistsError):
    """Bundle files already in the target folder and no --force."""


def write_all(folder: Path, files: dict[str, str], force: bool) -> list[Path]:
    """Write `files` (name -> text) into folder. Without force, any existing one refuses the whole write.

    Every file is first written in full to a temporary file beside its target, then renamed over it
    (atomic on POSIX), so an interrupted export leaves each file old or new, never partial.
    """
    folder.mkdir(parents=True, exist_ok=True)
    # a file that already holds exactly the text to write loses nothing (the trainer's saved chat_template.jinja)
    existing = [name for name in files if (folder / name).exists() and not _same(folder / name, files[name])]
    if existing and not force:
        raise ExistingFiles(f"{folder} already has {', '.join(existing)}; nothing written. Use --force to replace them")
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            staged.append((name, Path(tmp)))  # before writing: an interruption still removes it
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        written = []
        for name, tmp in staged:
            os.replace(tmp, folder / name)
            written.append(folder / name)
        return written
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)


def _same(path: Path, text: str | None) -> bool:
    if text is None:
        return False
    try:
        return path.is_file() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
