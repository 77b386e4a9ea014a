"""`thinkplugin.expand_turns`: one sample per assistant turn, each ending at its turn.

Official templates of thinking models (Qwen3, DeepSeek-R1, gpt-oss, ...) drop a turn's reasoning once
a later user message follows, so one sequence cannot hold a turn both as generated (with reasoning)
and as history: the template trains it once, the turns before stay context. Expanding the aligned
dataset (LF's `_prompt` / `_response` columns) into prefixes makes every turn the last turn of one
sample, whose context is exactly what the template renders at inference; LF's `mask_history` (set by
the run context) trains only that turn. Runs before tokenization, on the aligned dataset.
"""

from __future__ import annotations

from typing import Any

from ..options import OptionsError

RESPONSE_ROLES = ("assistant", "function")
_MEDIA = ("_images", "_videos", "_audios")


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

    def expand(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in batch}
        for row in range(len(batch["_prompt"])):
            if any(batch[m][row] for m in _MEDIA if m in batch):
                raise OptionsError(f"`thinkplugin.expand_turns` with images / videos / audios is not supported "
                                   f"(sample {row} of `{name}`): each prefix would need its own media placeholders")
            for prompt, response in split_conversation(batch["_prompt"][row], batch["_response"][row]):
                for key in batch:
                    out[key].append(prompt if key == "_prompt" else response if key == "_response" else batch[key][row])
        return out

    return dataset.map(expand, batched=True, desc=f"Expanding turns of {name}")
