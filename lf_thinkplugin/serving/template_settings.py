"""SERVING.md's section on template settings (issue 24): the settings the chat template reads, their defaults,
the ones the model was trained under, and how each server passes them. A text builder only: the bundle
decides where it goes (`settings_section(read_record(folder).get("template_settings"))`).
"""

from __future__ import annotations

import json
from typing import Any, Optional


def settings_section(template_settings: Optional[dict[str, Any]]) -> str:
    """Markdown for a run record's `template_settings` (RunContext.settings_record); "" for a run without any."""
    if not template_settings:
        return ""
    template = template_settings.get("template") or {}
    reads, defaults = template.get("reads") or [], template.get("defaults") or {}
    run = template_settings.get("chat_template_kwargs") or {}
    mix = {key: count for key, count in (template_settings.get("mix") or {}).items()}
    trained: dict[str, list] = {}
    for key in mix:
        for name, value in json.loads(key).items():
            trained.setdefault(name, [])
            if value not in trained[name]:
                trained[name].append(value)
    lines = ["## Template settings", "",
             "The chat template reads these keyword arguments besides the thinking switch; the model was trained "
             "under the values below (a value it never saw in training is untested).", "",
             "| setting | template default | trained with |", "|---|---|---|"]
    for name in sorted(set(reads) | set(trained)):
        default = defaults.get(name)
        shown = json.dumps(default) if default is not None else "unset"
        values = ", ".join(json.dumps(v) for v in trained.get(name, [])) or "the default"
        lines.append(f"| `{name}` | {shown} | {values} |")
    if mix:
        lines += ["", "Samples per mix of settings: " + "; ".join(
            f"{', '.join(f'{k}={json.dumps(v)}' for k, v in json.loads(key).items()) or 'defaults'}: {count}"
            for key, count in mix.items()) + "."]
    example = json.dumps(run or {name: values[0] for name, values in trained.items() if values} or
                         {name: defaults.get(name) for name in reads[:1]})
    lines += ["", "How to pass them:", "",
              f"- vLLM, for every request of a server: `vllm serve MODEL --default-chat-template-kwargs '{example}'`;",
              f"  per request (wins over the server's): `\"chat_template_kwargs\": {example}` in the body of "
              "`/v1/chat/completions` (OpenAI client: `extra_body={\"chat_template_kwargs\": ...}`).",
              "- transformers: `tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
              + ", ".join(f"{k}={json.dumps(v)}" for k, v in json.loads(example).items()) + ")`.",
              "- Ollama: a request's `think` carries on / off (and low / medium / high where the model's Ollama "
              "template takes a think level, as Ollama's own gpt-oss template does); other settings have no request field and would "
              "have to be written into the TEMPLATE. LMDeploy's JSON chat-template config (`lmdeploy_chat_template.json`) "
              "has no field for them. Serve through the model's own Jinja (`chat_template.jinja`) where a setting must vary."]
    if run:
        lines += ["", f"The run passed `{json.dumps(run)}` to every sample (`thinkplugin.chat_template_kwargs`): serve "
                  "with the same defaults (vLLM `--default-chat-template-kwargs`) to prompt the model as it was trained."]
    return "\n".join(lines) + "\n"
