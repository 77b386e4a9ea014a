"""`thinkplugin.expand_turns`: one sample per assistant turn, each ending at its turn.

Official templates of thinking models (Qwen3, DeepSeek-R1, gpt-oss, ...) drop a turn's reasoning once
a later user message follows, so one sequence cannot hold a turn both as generated (with reasoning)
and as history: the template trains it once, the turns before stay context. Expanding the aligned
dataset (LF's `_prompt` / `_response` columns) into prefixes makes every turn the last turn of one
sample, whose context is exactly what the template renders at inference; LF's `mask_history` (set by
the run context) trains only that turn. Runs before tokenization, on the aligned dataset.

Media: each sample keeps the images / videos / audios whose placeholders its messages hold (LF's media lists
follow the placeholders in order), so a later turn's sample still sees the image of an earlier message.
"""

from __future__ import annotations

from typing import Any

from ..options import OptionsError

RESPONSE_ROLES = ("assistant", "function")


def split_conversation(prompt: list[dict], response: list[dict]) -> list[tuple[list[dict], list[dict]]]:
    """(prompt, [response]) per assistant / tool-call turn, in order; the conversation's own last pair last."""
    messages = list(prompt) + list(response)
    out = []
    for i, message in enumerate(messages):
        if message["role"] in RESPONSE_ROLES and i > 0:
            out.append((messages[:i], [message]))
    return out


def expand_turns(dataset: Any, name: str) -> Any:
    if not hasattr(dataset, "__len__"):
        raise OptionsError(f"`thinkplugin.expand_turns` needs a map-style dataset; `{name}` is streamed "
                           "(drop `streaming: true` or `expand_turns`)")
    if len(dataset) and any(len(r) != 1 for r in dataset[: min(len(dataset), 64)]["_response"]):
        raise OptionsError(f"`thinkplugin.expand_turns` expands SFT conversations (one response each); `{name}` has "
                           "samples with several responses (preference data)")

    from llamafactory.extras.constants import (
        AUDIO_PLACEHOLDER,
        IMAGE_PLACEHOLDER,
        VIDEO_PLACEHOLDER,
    )

    media = {"_images": IMAGE_PLACEHOLDER, "_videos": VIDEO_PLACEHOLDER, "_audios": AUDIO_PLACEHOLDER}

    def expand(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in batch}
        for row in range(len(batch["_prompt"])):
            for prompt, response in split_conversation(batch["_prompt"][row], batch["_response"][row]):
                for key in batch:
                    value = prompt if key == "_prompt" else response if key == "_response" else batch[key][row]
                    if key in media and value:  # the files of the placeholders this prefix holds
                        value = value[:sum(str(m["content"]).count(media[key]) for m in prompt + response)]
                    out[key].append(value)
        return out

    return dataset.map(expand, batched=True, desc=f"Expanding turns of {name}")
