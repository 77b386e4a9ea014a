"""Template settings beyond the thinking switch (`reasoning_effort`, `thinking_budget`, `preserve_thinking`,
`clear_thinking`, ...): the keyword arguments a chat template reads, checked before they are used.

A run passes them as `thinkplugin.chat_template_kwargs` (every sample) and per sample through a dataset
column declared in dataset_info.json (`"columns": {"chat_template_kwargs": "<column>"}`). What the template
reads is found by probing, as the reasoning format is (format.py): a name is known when some value of it
changes a rendering of a probe conversation (a generation prompt, a history turn with reasoning, a last
turn). `check` refuses, naming the key:
- a name the template does not read (did-you-mean over the names it reads);
- a value it ignores: the rendering equals the one without the setting, and the value is not the
  template's own default (a constant it assigns or compares the name with, or the other boolean of a flag);
- the thinking switch, or a setting that switches thinking, against LF's `enable_thinking` (LF's key stays
  the switch);
- a value the template raises on.

Carrying settings through LF: LF's aligned dataset keeps only its own columns (`_prompt`, `_response`,
`_system`, `_tools`, media), so a sample's settings ride at the front of its `_system` string between two
U+E000 (private use) characters, as sorted JSON (`embed` / `extract`). They survive LF's column handling,
`expand_turns` (which copies `_system` to every prefix) and preference pairs, and only `template: native`
reads `_system` (other templates are refused with settings), stripping them before it renders.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .format import MARK_A, MARK_Q, MARK_R, ReasoningFormat, _closed_block_at_end, _names, render, template_text

CARRIER = "\ue000"  # private-use character: never part of real text
COLUMN = "chat_template_kwargs"  # the dataset_info.json `columns` key that names a per-sample settings column
_MISSING = object()


class SettingsError(ValueError):
    """A setting the template cannot take as given; the message names the key and the fix."""


# ---------------------------------------------------------------------------------------------------
# carrying settings in `_system`

def embed(system: Optional[str], settings: dict[str, Any]) -> str:
    """`system` with `settings` in front (nothing added for no settings)."""
    _, system = extract(system)
    if not settings:
        return system or ""
    return f"{CARRIER}{json.dumps(settings, sort_keys=True, ensure_ascii=False)}{CARRIER}{system or ''}"


def extract(system: Optional[str]) -> tuple[dict[str, Any], Optional[str]]:
    """(settings, the system text without them)."""
    if not system or not system.startswith(CARRIER):
        return {}, system
    end = system.index(CARRIER, 1)
    return json.loads(system[1:end]), system[end + 1:]


def parse_cell(value: Any, where: str) -> dict[str, Any]:
    """One dataset cell of a settings column: a mapping, a JSON object string, or empty."""
    if value is None or value == "" or value == {}:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise SettingsError(f"{where}: {value[:80]!r} is not a JSON object ({err})") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: expected a mapping such as {{\"reasoning_effort\": \"low\"}}, got {value!r}")
    return {k: v for k, v in value.items() if v is not None}  # arrow fills keys other rows have with null


def label(settings: dict[str, Any]) -> str:
    """`reasoning_effort=low, ...` (or `defaults`): how a mix of settings is shown."""
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(settings.items())) \
        or "defaults"


# ---------------------------------------------------------------------------------------------------
# what the template reads

_VALUES: tuple[Any, ...] = (True, False, "low", "medium", "high", "none", 0, 1, 512, 1024, -1)


@dataclass
class TemplateSettings:
    """The settings one chat template reads (probed once), and the check of a mapping of them."""

    tokenizer: Any
    fmt: ReasoningFormat
    chat_template: Optional[str] = None
    names: list[str] = field(default_factory=list)  # settings the template reads (the switch excluded)
    defaults: dict[str, Any] = field(default_factory=dict)  # the template's own default, where it writes one
    _compared: dict[str, list] = field(default_factory=dict, repr=False)  # constants a name is assigned / compared to
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.chat_template = template_text(self.tokenizer, self.chat_template)
        names = _names(self.chat_template)
        self._compared = _constants(self.chat_template)
        self._literals = [s for s in names.literals if re.fullmatch(r"[a-z][a-z_]{1,15}", s)][:8]
        switch = self.switch_name
        for name in names.variables:
            if name == switch:
                continue
            if any(self._changes({name: v}) for v in self._candidates(name)):
                self.names.append(name)
        for name in self.names:
            assigned = self._compared.get(name, [])
            if assigned:
                self.defaults[name] = assigned[0]

    @property
    def switch_name(self) -> Optional[str]:
        switch = self.fmt.switch
        return switch.name if switch is not None and switch.kind == "kwarg" else None

    def _candidates(self, name: str) -> list[Any]:
        return list(_VALUES) + self._literals + [c for c in self._compared.get(name, []) if c not in _VALUES]

    def _mode(self, thinking: bool) -> dict[str, Any]:
        return self.fmt.switch.kwargs(thinking) if self.fmt.switch else {}

    def _probes(self) -> list[tuple[list[dict], bool]]:
        user = {"role": "user", "content": MARK_Q}
        turn = self.fmt.message(MARK_A, MARK_R)
        return [([user], True), ([user, turn, {"role": "user", "content": "Q2"}], True), ([user, turn], False)]

    def renders(self, settings: dict[str, Any], thinking: bool = True) -> tuple:
        """The probe conversations rendered with `settings` (None for a render the template refuses)."""
        key = (json.dumps(settings, sort_keys=True, default=str), thinking)
        if key not in self._cache:
            out = []
            for messages, generation in self._probes():
                try:
                    out.append(render(self.tokenizer, messages, generation, chat_template=self.chat_template,
                                      **{**settings, **self._mode(thinking)}))
                except Exception as err:  # noqa: BLE001  (the template's own error: reported by `check`)
                    out.append(f"<error {type(err).__name__}: {err}>")
            self._cache[key] = tuple(out)
        return self._cache[key]

    def _changes(self, settings: dict[str, Any], thinking: bool = True) -> bool:
        with_, without = self.renders(settings, thinking), self.renders({}, thinking)
        return any(w != b and not w.startswith("<error") for w, b in zip(with_, without))

    def effective_values(self, name: str) -> list[Any]:
        """Values of `name` among the probed candidates that change some rendering (for messages)."""
        return [v for v in self._candidates(name) if self._changes({name: v})]

    # -----------------------------------------------------------------------------------------------
    def check(self, settings: Any, enable_thinking: Optional[bool], where: str) -> dict[str, Any]:
        """The settings to render with (a switch setting equal to LF's `enable_thinking` dropped); SettingsError
        naming the first bad key otherwise. `where`: how the settings were given (for the message)."""
        if not isinstance(settings, dict):
            raise SettingsError(f"{where}: expected a mapping such as {{reasoning_effort: low}}, got {settings!r}")
        out: dict[str, Any] = {}
        thinking = enable_thinking is not False
        for name, value in settings.items():
            key = f"{where}.{name}"
            if name == self.switch_name:
                self._check_switch(key, name, value, enable_thinking)
                continue
            if name not in self.names:
                close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.5)
                hint = f" Did you mean `{where}.{close[0]}`?" if close else ""
                reads = ", ".join(self.names) or "none beyond the thinking switch"
                raise SettingsError(f"unknown template setting `{key}`: the model's chat template does not read "
                                    f"`{name}`.{hint} Settings it reads: {reads}.")
            rendered = self.renders({name: value}, thinking)
            error = next((r for r in rendered if r.startswith("<error")), None)
            if error is not None:
                raise SettingsError(f"`{key}` = {value!r}: the chat template fails with it ({error[7:-1]}); values that "
                                    f"change its output: {_show(self.effective_values(name))}")
            if rendered == self.renders({}, thinking) and not self._is_default(name, value):
                raise SettingsError(
                    f"`{key}` = {value!r} is ignored by the model's chat template (it renders exactly as without the "
                    f"setting, and {value!r} is not its default); values that change its output: "
                    f"{_show(self.effective_values(name))}")
            self._check_contradiction(key, name, value, enable_thinking)
            out[name] = value
        return out

    def _is_default(self, name: str, value: Any) -> bool:
        if any(value == c and type(value) is type(c) for c in self._compared.get(name, [])):
            return True  # the template assigns or compares the name with this very value (`set x = "medium"`)
        if isinstance(value, bool):  # a flag: its other value changes the output, so this one is its default
            return self._changes({name: not value})
        return False

    def _check_switch(self, key: str, name: str, value: Any, enable_thinking: Optional[bool]) -> None:
        switch = self.fmt.switch
        if enable_thinking is None:
            raise SettingsError(f"`{key}` is the template's thinking switch, which LF's `enable_thinking` sets "
                                "(null: per sample, from the data); drop the setting and set `enable_thinking`")
        wanted = switch.on if enable_thinking else switch.off
        if value != wanted and not (wanted is None and value != switch.off):
            raise SettingsError(
                f"`{key}` = {value!r} contradicts LF's `enable_thinking: {str(enable_thinking).lower()}`: `{name}` is "
                f"the template's thinking switch, which LF's `enable_thinking` sets"
                + (f" (to {wanted!r} here)" if wanted is not None else "")
                + "; drop the setting, or change `enable_thinking`")

    def _check_contradiction(self, key: str, name: str, value: Any, enable_thinking: Optional[bool]) -> None:
        """A setting that switches thinking itself against LF's `enable_thinking`: the generation prompt becomes the
        other mode's, or (with or without a switch) ends in a closed reasoning block that it did not end in
        (Seed-OSS `thinking_budget: 0`)."""
        fmt = self.fmt
        prompt = self.renders({name: value}, enable_thinking is not False)[0]
        plain = self.renders({}, enable_thinking is not False)[0]
        if enable_thinking is not False and _closed_block_at_end(prompt, fmt.opener, fmt.closer) \
                and not _closed_block_at_end(plain, fmt.opener, fmt.closer):
            raise SettingsError(f"`{key}` = {value!r} turns thinking off (the generation prompt ends in a closed "
                                f"reasoning block: {prompt[-60:]!r}), which contradicts LF's `enable_thinking: "
                                f"{'null' if enable_thinking is None else 'true'}`; drop the setting, or set "
                                "`enable_thinking: false`")
        if fmt.switch is None:
            return
        on, off = self.renders({}, True)[0], self.renders({}, False)[0]
        if on == off:
            return
        if enable_thinking is not False and self.renders({name: value}, True)[0] == off:
            raise SettingsError(f"`{key}` = {value!r} turns thinking off (the generation prompt becomes the one of "
                                "`enable_thinking: false`), which contradicts LF's `enable_thinking: "
                                f"{'null' if enable_thinking is None else 'true'}`; drop the setting, or set "
                                "`enable_thinking: false`")
        if enable_thinking is False and self.renders({name: value}, False)[0] == on:
            raise SettingsError(f"`{key}` = {value!r} turns thinking on (the generation prompt becomes the one of "
                                "`enable_thinking: true`), which contradicts LF's `enable_thinking: false`; drop the "
                                "setting, or set `enable_thinking: true`")

    def describe(self) -> dict[str, Any]:
        """The settings the template reads and their defaults (the run record, SERVING.md)."""
        return {"reads": list(self.names), "defaults": {n: self.defaults.get(n) for n in self.names},
                "switch": self.switch_name}


def _show(values: list[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values) or "none of the probed values"


def _constants(template: str) -> dict[str, list]:
    """name -> constants the template assigns it (`set x = "medium"`) or compares it with (`x == -1`), in order."""
    out: dict[str, list] = {}
    try:
        from jinja2 import nodes
        from transformers.utils.chat_template_utils import _compile_jinja_template

        ast = _compile_jinja_template(template).environment.parse(template)
    except Exception:  # noqa: BLE001  (unparsable alone: the text's `set x = "v"`)
        for name, value in re.findall(r"""set\s+(\w+)\s*=\s*["']([^"']*)["']""", template):
            out.setdefault(name, []).append(value)
        return out
    def const(node: Any) -> Any:  # `-1` parses as Neg(Const(1))
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const) and isinstance(node.node.value, (int, float)):
            return -node.node.value
        return _MISSING

    for node in ast.find_all(nodes.Assign):  # assignments first: the default is the value assigned
        if isinstance(node.target, nodes.Name) and const(node.node) is not _MISSING:
            out.setdefault(node.target.name, []).append(const(node.node))
    for node in ast.find_all(nodes.Compare):
        if isinstance(node.expr, nodes.Name):
            for op in node.ops:
                if op.op in ("eq", "ne") and const(op.expr) is not _MISSING:
                    out.setdefault(node.expr.name, []).append(const(op.expr))
    return out
