"""LMDeploy: `ChatTemplateConfig` fields for `--chat-template lmdeploy_chat_template.json`.

LMDeploy's `BaseChatTemplate` renders `system + content + eosys`, `user + content + eoh`, and
`assistant + content + eoa + separator`, then `assistant` as the generation prompt. That cannot say
everything a thinking template says, and the export reports what is lost:
- no `enable_thinking` switch (the file is the thinking-mode format);
- message content is rendered as sent, so a template that drops earlier turns' reasoning needs
  clients to send earlier answers without it;
- the generation prompt and earlier assistant turns share one prefix, so R1's `<think>\\n` opener
  cannot go into the generation prompt only;
- without a default system prompt it writes `system + "" + eosys` whenever a conversation has no
  system message: an empty system block the model never saw. Where that block would not be empty
  (Qwen3), the file leaves the system markup out, so conversations without a system message render
  exactly and a system message renders as bare text.
LMDeploy's default (no `--chat-template`) renders the model folder's own chat template, which after
training is the exported `chat_template.jinja`: that path has none of these limits.
"""

from __future__ import annotations

from typing import Any

from .formats import ChatFormat


def _drops_system_markup(fmt: ChatFormat) -> bool:
    return not fmt.default_system and bool(fmt.system or fmt.eosys)


def config(fmt: ChatFormat) -> dict[str, Any]:
    drop = _drops_system_markup(fmt)
    return {
        "model_name": f"lf-thinkplugin-{fmt.template}",  # a name no LMDeploy template is registered under
        "system": "" if drop else fmt.system,
        "meta_instruction": fmt.default_system,
        "eosys": "" if drop else fmt.eosys,
        "user": fmt.user,
        "eoh": fmt.eoh,
        "assistant": fmt.think_opener,
        "eoa": fmt.eoa,
        "separator": fmt.separator,
        "capability": "chat",
        "stop_words": list(fmt.stop),
    }


def limitations(fmt: ChatFormat, adds_bos: bool) -> list[str]:
    """What the JSON loses; adds_bos: the tokenizer adds BOS when LMDeploy encodes the prompt."""
    out = []
    if fmt.bos and not adds_bos:
        out.append("the BOS token: the JSON has no field for it and this tokenizer adds none when encoding")
    if fmt.nothink:
        out.append("no `enable_thinking` switch: the file renders thinking mode only")
    if _drops_system_markup(fmt):
        out.append(
            "system messages render as bare text (the JSON cannot both omit the system block when there is no "
            "system message and wrap one when there is)"
        )
    if fmt.think_opener:
        out.append(
            f"multi-turn conversations: the generation prompt's {fmt.think_opener!r} also opens every earlier "
            "assistant turn"
        )
    if fmt.history in ("answer", "after_think"):
        out.append("earlier assistant turns render as sent: send them without their reasoning, as the template drops it")
    return out


def unexpressible(
    fmt: ChatFormat, messages: list[dict[str, str]], system: str | None, enable_thinking: bool | None, adds_bos: bool
) -> str | None:
    """Why this conversation (ending in a user turn) cannot render exactly from the JSON, or None."""
    if fmt.bos and not adds_bos:
        return "BOS"
    if enable_thinking is not True and fmt.nothink:
        return "no thinking switch"
    if system and _drops_system_markup(fmt):
        return "system message"
    for message in messages:
        if message["role"] != "assistant":
            continue
        if fmt.think_opener:
            return f"earlier assistant turn (the {fmt.think_opener!r} opener would precede it)"
        if fmt.render_history(message["content"]) != message["content"]:
            return "reasoning in an earlier assistant turn (rendered as sent)"
    return None
