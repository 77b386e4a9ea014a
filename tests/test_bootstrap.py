"""Activation: the .pth bootstrap is inert until llamafactory is imported; LF_THINKPLUGIN_DISABLE."""

import json
import os
import subprocess
import sys

PROBE = (
    "import sys, json; before = sorted(m for m in ('torch', 'transformers', 'llamafactory') if m in sys.modules); "
    "hooked = any(type(f).__name__ == '_LlamaFactoryImportHook' for f in sys.meta_path); "
    "import llamafactory, lf_thinkplugin.activation.seam as seam; "
    "print(json.dumps({'before': before, 'hooked': hooked, 'mode': seam.mode}))"
)


def _probe(**env):
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bootstrap_imports_nothing_heavy_and_activates_on_llamafactory_import():
    result = _probe()
    assert result == {"before": [], "hooked": True, "mode": "patched"}


def test_disable_env_turns_everything_off():
    result = _probe(LF_THINKPLUGIN_DISABLE="1")
    assert result == {"before": [], "hooked": False, "mode": None}


def test_explicit_register_before_any_llamafactory_import_does_not_deadlock():
    """register() first imports llamafactory, whose .pth hook calls register() again (nested, same thread)."""
    code = "import lf_thinkplugin, json; added = lf_thinkplugin.register(); print(json.dumps(added == lf_thinkplugin.register()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "true"
