"""`lf-think export --table FIXTURES_DIR [--write docs/serving.md]`: the family x engine table of docs/serving.md.

FIXTURES_DIR is laid out like `../shared/fixtures/tokenizers` (templates/families.py reads it the same way):
tokenizer folders, and `chat_templates/*.jinja` checked on a stand-in tokenizer where no real one is present.
For each chat template trained with `template: native`, per engine: what the bundle serves it with, and the
parity figure on the doctor's probes (tool calls included), thinking on and (where the template has a switch)
off, each trained turn's prompt compared token for token with the training ids:
- vLLM / SGLang: the chat template through LF's `native` SFT path against the template's own rendering
  (what both engines render), and the parsers the bundle names;
- LMDeploy: its own `HFChatTemplate` (`--chat-template hf`) on a folder holding the tokenizer and template,
  and its `BaseChatTemplate` from the bundle's lmdeploy_chat_template.json (probes it serves as trained, of
  all), where LMDeploy is installed (scripts/setup_integration.sh);
- Ollama: the learnt TEMPLATE (its Python mirror, equal to Go's text/template output on every fixture family:
  tests/test_serving_families.py). Ollama's own RENDERER and PARSERs are Go code the export does not run; the
  tests run them on the probes for every template here that names one (tests/test_serving_ollama_builtin.py,
  Ollama's code vendored in tests/ollama_builtin), and the cell says what they found: the differences native.py's
  OLLAMA_BUILTIN_LIMITS declares in SERVING.md.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- serving-table:begin -->", "<!-- serving-table:end -->"


def fixture_templates(folder: Path) -> list[tuple[str, str, Any, str]]:
    """[(label, tokenizer kind, tokenizer, chat template)] for every distinct chat template in a fixtures folder."""
    from ..loading.tokenizer import from_pretrained
    from ..templates.families import STANDIN, standin

    real = {p.name: from_pretrained(str(p)) for p in sorted(folder.iterdir()) if (p / "tokenizer.json").is_file()}
    by_template: dict[str, tuple[str, str, Any]] = {}
    for name, tok in real.items():
        if isinstance(tok.chat_template, str):
            by_template[tok.chat_template.strip()] = (name, "real", tok)
    base = real.get(STANDIN)
    for file in sorted((folder / "chat_templates").glob("*.jinja")):
        text = file.read_text(encoding="utf-8")
        if text.strip() in by_template or base is None:
            continue
        by_template[text.strip()] = (file.stem, f"stand-in ({STANDIN} + tags)", standin(base, text))
    return sorted(((label, kind, tok, tok.chat_template) for label, kind, tok in by_template.values()),
                  key=lambda row: row[0].lower())


def _lmdeploy_json(tok: Any, native: Any, encoder: Any, turns_by_mode: dict) -> str:
    """The bundle's lmdeploy_chat_template.json through LMDeploy's BaseChatTemplate: probes served as trained."""
    import json as _json

    from lmdeploy.model import ChatTemplateConfig

    from .bundle import adds_bos
    from .checks import check, lmdeploy_json_messages, lmdeploy_json_why_not

    text = native.files.get("lmdeploy_chat_template.json")
    if text is None:
        return "no JSON"
    template = ChatTemplateConfig(**_json.loads(text)).chat_template()
    figures = []
    for mode, turns in turns_by_mode.items():
        result = check(turns, lambda turn: template.messages2prompt(lmdeploy_json_messages(turn, encoder.format)),
                       lambda prompt: tok.encode(prompt, add_special_tokens=True), [],
                       lmdeploy_json_why_not(native.slots, adds_bos(tok)[0], native.json_limits))
        figures.append(f"{mode} {len(result.probes_ok - result.probes_failed)}/{len({t.probe.name for t in turns})}")
    return "JSON " + " · ".join(figures)


def _lmdeploy(tok: Any, encoder: Any, turns_by_mode: dict) -> str:
    try:
        from lmdeploy.model import ChatTemplateConfig
    except Exception as err:  # noqa: BLE001  (not installed: the column says so)
        return f"not run (lmdeploy: {type(err).__name__})"
    from ..templates.native import _tools, to_messages

    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        config = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss"} if "<|channel|>" in tok.chat_template \
            else {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}  # LMDeploy reads the architecture
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        try:
            template = ChatTemplateConfig(model_name="hf", model_path=tmp).chat_template()
        except Exception as err:  # noqa: BLE001
            return f"HFChatTemplate fails: {err}"[:80]
        figures = []
        for mode, turns in turns_by_mode.items():
            ok = bad = 0
            failed: set[str] = set()
            for turn in turns:
                messages = to_messages(turn.before, turn.probe.system, encoder.format, turn.thinking)
                kwargs = dict(encoder.kwargs(turn.thinking))
                if turn.probe.tools:
                    kwargs["tools"] = _tools(turn.probe.tools)
                try:
                    ids = tok.encode(template.messages2prompt(messages, **kwargs), add_special_tokens=True)
                except Exception:  # noqa: BLE001
                    ids = None
                if ids == turn.prompt_ids:
                    ok += 1
                else:
                    bad += 1
                    failed.add(turn.probe.name)
            probes = {t.probe.name for t in turns}
            figures.append(f"{mode} {len(probes - failed)}/{len(probes)}")
        return " · ".join(figures)


def family_rows(folder: Path) -> list[dict[str, str]]:
    from ..templates.native import NativeEncoder, NativeTemplateError
    from ..templates.parity import Scanner
    from ..templates.probes import SCAN_PROBES
    from .bundle import adds_bos
    from .checks import check, ollama_render, ollama_why_not, trained_turns
    from .engines import OllamaBuiltin
    from .native import build_native

    rows = []
    for label, kind, tok, template in fixture_templates(Path(folder)):
        row = {"template": label, "tokenizer": kind}
        try:
            encoder = NativeEncoder(tok)
        except NativeTemplateError as err:
            rows.append({**row, "error": str(err)})
            continue
        modes = {"on": True, "off": False} if encoder.format.switch is not None else {"on": True}
        facts = (tok.get_vocab(), set(tok.get_added_vocab()), len(tok))
        jinja = []
        for name, mode in modes.items():
            result = Scanner(tok, mode, probes=SCAN_PROBES, facts=facts).check("native")
            jinja.append(f"{name} {result.passed}/{result.total}")
        native = build_native(tok, template, True, " · ".join(jinja), gguf_bos=adds_bos(tok)[1])
        p = native.parsers
        row["vllm"] = (f"`{p.vllm_reasoning or '-'}` / `{p.vllm_tools or '-'}`", " · ".join(jinja))
        row["sglang"] = (f"`{p.sglang_reasoning or '-'}` / `{p.sglang_tools or '-'}`", " · ".join(jinja))
        turns_by_mode = {name: trained_turns(encoder, mode) for name, mode in modes.items()}
        hf = _lmdeploy(tok, encoder, turns_by_mode)
        if not hf.startswith("not run"):
            hf = "hf " + hf + "; " + _lmdeploy_json(tok, native, encoder, turns_by_mode)
        row["lmdeploy"] = (f"`--chat-template hf`; `{p.lmdeploy_reasoning or '-'}` / `{p.lmdeploy_tools or '-'}`", hf)
        builtin = native.builtin
        if native.slots is not None:
            figures = []
            for name, turns in turns_by_mode.items():
                bos = [tok.bos_token_id] if native.slots.bos and not native.keep_bos else []
                result = check(turns, ollama_render(native.slots, encoder.format, native.keep_bos),
                               lambda text, bos=bos: bos + tok.encode(text, add_special_tokens=False), [],
                               ollama_why_not(native.slots))
                figures.append(f"{name} {result.figure(len(SCAN_PROBES)).split(' (')[0].replace(' probes', '')}")
            how = "TEMPLATE" + (f" + PARSER `{builtin.parser}`" if builtin and builtin.parser else "")
            if builtin and builtin.renderer and "Modelfile.renderer" in native.files:
                how = "TEMPLATE + " + _builtin_cell(OllamaBuiltin(None, builtin.parser, builtin.source), encoder.format) \
                    + "; Modelfile.renderer: " + _builtin_cell(OllamaBuiltin(builtin.renderer, None, builtin.source),
                                                               encoder.format)
            elif builtin and builtin.renderer:
                how = _builtin_cell(builtin, encoder.format) + "; Modelfile.template: " + how
            elif builtin and builtin.parser:
                how = "TEMPLATE + " + _builtin_cell(builtin, encoder.format)
            note = "; no tools: " + native.slots.tools_error if native.slots.tools_error else ""
            row["ollama"] = (how + note, " · ".join(figures))
        else:
            row["ollama"] = (_builtin_cell(builtin, encoder.format) if builtin and builtin.renderer else
                             f"not written: {native.slots_error}", "-")
        rows.append(row)
    return rows


def _builtin_cell(builtin: Any, fmt: Any) -> str:
    """The Ollama cell's words for the RENDERER / PARSER the Modelfile names: Ollama's own Go code, run by
    tests/test_serving_ollama_builtin.py on the probes, with what it found (native.py OLLAMA_BUILTIN_LIMITS)."""
    from .native import OLLAMA_BUILTIN_LIMITS, parser_limits

    parts = []
    if builtin.renderer:
        n = len(OLLAMA_BUILTIN_LIMITS.get(("renderer", builtin.renderer), []))
        parts.append(f"RENDERER `{builtin.renderer}` (Ollama's Go renderer, run on the probes: token-exact"
                     + (f" but for {n} differences, in SERVING.md" if n else "") + ")")
    if builtin.parser:
        limits = parser_limits(builtin.parser, fmt)
        newline = builtin.parser == "qwen3-thinking" and limits
        parts.append(f"PARSER `{builtin.parser}` (Ollama's Go parser, run on the probes: the trained split"
                     + ("; streamed, the thinking keeps the newline after `<think>`" if newline else
                        f" but for {len(limits)} difference, in SERVING.md" if limits else "") + ")")
    return " + ".join(parts)


def render_table(rows: list[dict[str, str]]) -> str:
    head = ("| chat template | tokenizer | vLLM: reasoning / tool parser | SGLang: reasoning / tool parser | "
            "parity (vLLM, SGLang) | LMDeploy: setting; reasoning / tool parser | LMDeploy parity | Ollama | Ollama parity |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['template']}` | {r['tokenizer']} | error: {r['error']} |||||||")
            continue
        lines.append(f"| `{r['template']}` | {r['tokenizer']} | {r['vllm'][0]} | {r['sglang'][0]} | {r['vllm'][1]} | "
                     f"{r['lmdeploy'][0]} | {r['lmdeploy'][1]} | {r['ollama'][0]} | {r['ollama'][1]} |")
    return "\n".join(lines)


def write_table(doc: Path, table: str) -> None:
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{doc} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
