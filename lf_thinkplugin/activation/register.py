"""What `lf_thinkplugin.register()` does: the plugin's one registration contract."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_added: list[str] | None = None


def register() -> list[str]:
    global _added
    from .bootstrap import disabled

    if disabled():  # LF_THINKPLUGIN_DISABLE=1 also silences native discovery in a patched LF
        return []
    # Import llamafactory before taking the lock: a first import runs the .pth hook, which calls
    # register() itself; under the lock that nested call would deadlock.
    import llamafactory  # noqa: F401

    with _lock:
        if _added is not None:  # idempotent: a second call (entry point + explicit) changes nothing
            return _added
        from . import seam

        seam.check_version()
        from ..data.reasoning import register_converters
        from ..templates import register_templates

        added = [f"template:{name}" for name in register_templates()]
        added += [f"dataset_converter:{name}" for name in register_converters()]
        added += seam.install()
        _added = added
        return added
