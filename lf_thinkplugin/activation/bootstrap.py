"""Activation in every process that imports llamafactory, with no change to the user's command.

`lf_thinkplugin.pth` in site-packages runs `import lf_thinkplugin.activation.bootstrap` at interpreter
start. That only appends a finder to `sys.meta_path` (no torch, transformers or llamafactory
import; cost measured by benchmarks/bench_bootstrap.py). When `llamafactory` itself is imported
(the CLI, torchrun children running LF's launcher.py, export/chat/api/webui), the finder lets the
normal import run, then loads every `llamafactory.plugins` entry point, before LF can parse any
argument. LF_THINKPLUGIN_DISABLE=1 turns all of it off.
"""

import os
import sys

DISABLE_ENV = "LF_THINKPLUGIN_DISABLE"
GROUP = "llamafactory.plugins"


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").lower() in ("1", "true", "yes")


def load_entry_points() -> list:
    """Call every `llamafactory.plugins` entry point; a failing plugin is reported, never fatal to LF."""
    from importlib.metadata import entry_points

    results = []
    for ep in entry_points(group=GROUP):
        try:
            results.append((ep.name, ep.load()()))
        except Exception as err:  # a broken plugin must not break `import llamafactory`
            print(f"[lf_thinkplugin] plugin {ep.name!r} ({ep.value}) failed to load: {err}", file=sys.stderr)
    return results


class _LlamaFactoryImportHook:
    """A meta-path finder that fires once, right after `llamafactory/__init__.py` has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "llamafactory":
            return None
        sys.meta_path.remove(self)  # fire once; also keeps find_spec below from recursing
        from importlib.util import find_spec

        spec = find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_load_plugins(module):
            exec_module(module)
            load_entry_points()

        spec.loader.exec_module = exec_then_load_plugins
        return spec


def install() -> None:
    if disabled() or "llamafactory" in sys.modules:
        return
    if not any(isinstance(f, _LlamaFactoryImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _LlamaFactoryImportHook())


install()
