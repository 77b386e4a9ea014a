"""lf-thinkplugin: a LLaMA-Factory plugin for fine-tuning reasoning ("thinking") LLMs.

Importing this package is cheap (no torch / transformers / llamafactory): the site-packages
`.pth` bootstrap imports it at every interpreter start. `register()` is the one entry point
(group `llamafactory.plugins`); it runs once llamafactory is imported.
"""

__version__ = "0.1.0"


def register() -> list[str]:
    """Register templates and dataset converters and install the run hooks. Idempotent.

    Returns what the plugin added, for `lf-think` and the logs.
    """
    from .activation.register import register as _register

    return _register()
