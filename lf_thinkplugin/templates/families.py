"""`lf-think doctor --families DIR`: the family table of docs/templates.md, for `template: native`.

DIR is a fixtures folder laid out like `../shared/fixtures/tokenizers`: tokenizer folders (a family
with its real tokenizer) and `chat_templates/*.jinja` (official templates). A template whose family
has no tokenizer in DIR is checked on a stand-in: the Qwen3 tokenizer with the special tags the
template writes (`<|user|>`, `<seed:bos>`, `[gMASK]`, ...) added as special tokens. Per family and
thinking mode: the style `native` reads from the template (reasoning field, switch, last-turn rule),
whether history reasoning survives a later user message, and parity on the doctor's probes (tool
calls included) through LF's SFT path.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

# tags a template writes as single tokens: `<|user|>`, `<｜Assistant｜>`, `<seed:bos>`, `<minimax:tool_call>`,
# GLM's `[gMASK]` / `<sop>`, MiniMax's `]~!b[` `]~b]` `[e~[`
_TAGS = re.compile(r"<\|[^|<>\s]+\|>|<｜[^｜<>]+｜>|</?(?:seed|minimax):[a-z_]+>|\[gMASK\]|<sop>|\]~!?b\[|\]~b\]|\[e~\[")
STANDIN = "Qwen3-0.6B"


def standin(base: Any, template: str) -> Any:
    from tokenizers import AddedToken

    tok = copy.deepcopy(base)
    tags = sorted({t for t in _TAGS.findall(template) if t not in tok.get_vocab()})
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in tags], special_tokens=True)
    tok.chat_template = template
    return tok


def family_rows(folder: Path) -> list[dict[str, Any]]:
    from ..loading.tokenizer import from_pretrained
    from .native import NativeEncoder, NativeTemplateError
    from .parity import Scanner
    from .probes import SCAN_PROBES

    folder = Path(folder)
    real = {p.name: from_pretrained(str(p)) for p in sorted(folder.iterdir()) if (p / "tokenizer.json").is_file()}
    by_template: dict[str, tuple[Any, str, str]] = {}  # template text -> (tokenizer, kind, label)
    for name, tok in real.items():
        if isinstance(tok.chat_template, str):
            by_template[tok.chat_template.strip()] = (tok, "real", name)
    base = real.get(STANDIN)
    for file in sorted((folder / "chat_templates").glob("*.jinja")):
        text = file.read_text(encoding="utf-8")
        found = by_template.get(text.strip())
        if found is not None:  # the same template under another name: one row, both names
            label = file.stem if found[2] in real and found[1] == "real" and found[2] in file.stem else f"{found[2]}, {file.stem}"
            by_template[text.strip()] = (found[0], found[1], label)
        elif base is not None:
            by_template[text.strip()] = (standin(base, text), f"stand-in ({STANDIN} + tags)", file.stem)
    rows = []
    for key, (tok, kind, label) in sorted(by_template.items(), key=lambda kv: kv[1][2].lower()):
        row: dict[str, Any] = {"template": label, "tokenizer": kind}
        try:
            encoder = NativeEncoder(tok)
        except NativeTemplateError as err:
            rows.append({**row, "error": str(err)})
            continue
        style = encoder.format.describe()
        row.update(switch=style["switch"], reasoning=style["reasoning"], last_turn=style["last-turn reasoning"],
                   markup=" … ".join(style["markup"]) if style["markup"] else "none", history=style["history"],
                   opens="yes" if style["prompt opens think"] else "no", settings=", ".join(style["settings"]) or "none",
                   parser=style["reasoning parser"] or "none")
        facts = (tok.get_vocab(), set(tok.get_added_vocab()), len(tok))
        for mode in (True, False):
            if mode is False and encoder.format.switch is None:
                row["off"] = "no switch"
                continue
            result = Scanner(tok, mode, probes=SCAN_PROBES, facts=facts).check("native")
            row["on" if mode else "off"] = f"{result.passed}/{result.total}" + ("" if result.ok else " ✗ " + ", ".join(
                p.probe for p in result.probes if not p.ok))
        rows.append(row)
    return rows


def render_families(rows: list[dict[str, Any]]) -> str:
    head = ("| chat template | tokenizer | switch | settings read | reasoning read from | markup (spans) | prompt opens | "
            "last-turn reasoning | history reasoning | vLLM parser | parity, thinking on | parity, off |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['template']}` | {r['tokenizer']} | error: {r['error']} ||||||||||")
            continue
        lines.append(f"| `{r['template']}` | {r['tokenizer']} | {r['switch']} | {r['settings']} | {r['reasoning']} | "
                     f"`{r['markup']}` | {r['opens']} | {r['last_turn']} | {r['history']} | {r['parser']} | {r['on']} | "
                     f"{r['off']} |")
    return "\n".join(lines)
