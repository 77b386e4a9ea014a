"""Where a model's tokenizer and config files are: a local folder, or a hub id resolved as LF resolves it.

LF passes `model_name_or_path` to transformers, which reads hub ids from the Hugging Face cache
(`cache_dir`, `model_revision`, `hf_hub_token`; offline under `HF_HUB_OFFLINE=1`), and first
downloads from ModelScope / Modelers when `USE_MODELSCOPE_HUB` / `USE_OPENMIND_HUB` is set. The
plugin reads the tokenizer before LF does (`template: auto`, token_init, `lf-think check`,
`doctor`, `export`), so it resolves the same way, to the local snapshot folder, fetching only the
small files it reads (never the weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..options import OptionsError

# what the plugin reads: tokenizer, chat template, config (model_type, tie_word_embeddings), generation EOS,
# a multimodal model's processor files (its class and pixel limits: templates/media.py)
FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
         "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
         "config.json", "generation_config.json", "*.tiktoken", "preprocessor_config.json",
         "video_preprocessor_config.json", "processor_config.json")


class ModelNotFound(OptionsError):
    """A model id that is neither a folder nor available from the hub or cache. The message names the fix."""


@dataclass(frozen=True)
class ModelRef:
    """`model_name_or_path` with LF's arguments that say where to look for it."""

    name_or_path: str
    revision: str = "main"
    cache_dir: Optional[str] = None
    token: Optional[str] = None
    ms_token: Optional[str] = None
    key: str = "model_name_or_path"  # the YAML key it came from, for messages

    @classmethod
    def from_lf_args(cls, lf_args: dict[str, Any], key: str = "model_name_or_path") -> "ModelRef":
        value = lf_args.get(key)
        if not value:
            raise ModelNotFound(f"`{key}` is not set; name a hub id (e.g. Qwen/Qwen3-0.6B) or a local folder")
        return cls(str(value), str(lf_args.get("model_revision") or "main"), lf_args.get("cache_dir"),
                   lf_args.get("hf_hub_token"), lf_args.get("ms_hub_token"), key)


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def download_from_other_hub(ref: ModelRef) -> str:
    """LF's own ModelScope / Modelers download of `ref` (the whole snapshot, as LF's run fetches it)."""
    from types import SimpleNamespace

    from llamafactory.extras.misc import try_download_model_from_other_hub

    return try_download_model_from_other_hub(SimpleNamespace(
        model_name_or_path=ref.name_or_path, model_revision=ref.revision, cache_dir=ref.cache_dir, ms_hub_token=ref.ms_token))


def local_dir(ref: ModelRef | str) -> Path:
    """The local folder holding `ref`'s tokenizer and config files (a hub snapshot for hub ids)."""
    if isinstance(ref, str):
        ref = ModelRef(ref)
    path = Path(ref.name_or_path).expanduser()
    if path.is_dir():
        return path
    env = {"USE_MODELSCOPE_HUB": "ModelScope", "USE_OPENMIND_HUB": "Modelers"}
    other = next((name for var, name in env.items() if os.environ.get(var, "").lower() in ("1", "true", "yes", "y")), None)
    if other is not None:  # LF's own download path for those hubs (it fetches the whole snapshot, as LF's run would)
        try:
            return Path(download_from_other_hub(ref))
        except Exception as err:  # noqa: BLE001  (the user gets the id, the hub and the reason)
            raise ModelNotFound(f"`{ref.key}: {ref.name_or_path}`: cannot get it from {other} ({err})") from None
    if path.is_absolute() or ref.name_or_path.startswith((".", "~")) or ref.name_or_path.count("/") > 1:
        raise ModelNotFound(f"`{ref.key}: {ref.name_or_path}`: no such folder (and not a hub id like Qwen/Qwen3-0.6B)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref.name_or_path, revision=ref.revision, cache_dir=ref.cache_dir,
                                      token=ref.token, allow_patterns=list(FILES), local_files_only=_offline()))
    except LocalEntryNotFoundError:
        where = ref.cache_dir or os.environ.get("HF_HUB_CACHE") or "the Hugging Face cache"
        raise ModelNotFound(
            f"`{ref.key}: {ref.name_or_path}` (revision {ref.revision}) is not in {where} and HF_HUB_OFFLINE is set; "
            f"download it first (`hf download {ref.name_or_path}`), unset HF_HUB_OFFLINE, or point {ref.key} at a folder"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise ModelNotFound(f"`{ref.key}: {ref.name_or_path}` (revision {ref.revision}): {err}") from None
