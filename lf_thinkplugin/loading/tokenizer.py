"""Tokenizers that encode exactly as their own tokenizer.json does.

transformers 5.x loads some byte-level BPE tokenizers through the class named in their
tokenizer_config.json (`LlamaTokenizerFast` for DeepSeek-R1-Distill-Qwen and DeepSeek-V3), which
rebuilds the pre-tokenizer SentencePiece-style and drops spaces, newlines and CJK text
(transformers#45488): `"Hello world,"` becomes other ids, and LF trains on corrupted tokens.
`from_pretrained` loads as AutoTokenizer does, compares one probe text with tokenizer.json read by
the `tokenizers` library, and on a mismatch loads `PreTrainedTokenizerFast` instead, which reads
tokenizer.json as it is. Used by the seam for LF's own tokenizer loading (runs with a `thinkplugin:`
block) and by the doctor, which reports the mismatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger("lf_thinkplugin")

PROBE = "Hello world,\n\n  the answer is 42.\tDone! 你好，世界。 x = [1, 2]\n"


@dataclass(frozen=True)
class Mismatch:
    loaded_as: str
    got: list[int]
    expected: list[int]

    def describe(self) -> str:
        return (
            f"AutoTokenizer loads this tokenizer as {self.loaded_as}, which encodes differently from its own "
            f"tokenizer.json (e.g. {PROBE!r}: {len(self.got)} tokens, tokenizer.json {len(self.expected)}): this "
            "transformers version replaces the byte-level pre-tokenizer with a SentencePiece one that drops spaces "
            "and newlines, so LF would train on corrupted ids. Fix: set \"tokenizer_class\": "
            "\"PreTrainedTokenizerFast\" in tokenizer_config.json (the plugin does this in memory for its runs)."
        )


def _tokenizer_json(path: str, kwargs: dict[str, Any]) -> Optional[str]:
    """Local path of `tokenizer.json` for a folder or a cached hub id; None when there is none."""
    from transformers.utils import cached_file

    options = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
    try:
        return cached_file(path, "tokenizer.json", _raise_exceptions_for_missing_entries=False, **options)
    except OSError:
        return None


def mismatch(tokenizer: Any, path: str, **kwargs: Any) -> Optional[Mismatch]:
    """How `tokenizer` differs from its tokenizer.json on the probe text, or None when it does not."""
    file = _tokenizer_json(path, kwargs)
    if file is None:
        return None
    from tokenizers import Tokenizer

    expected = Tokenizer.from_file(file).encode(PROBE, add_special_tokens=False).ids
    got = tokenizer.encode(PROBE, add_special_tokens=False)
    return None if got == expected else Mismatch(type(tokenizer).__name__, got, expected)


def faithful(tokenizer: Any, path: str, **kwargs: Any) -> tuple[Any, Optional[Mismatch]]:
    """(`tokenizer` or a faithful `PreTrainedTokenizerFast` loaded with the same kwargs, the mismatch found)."""
    from transformers import PreTrainedTokenizerFast

    found = mismatch(tokenizer, str(path), **kwargs)
    if found is None:
        return tokenizer, None
    fixed = PreTrainedTokenizerFast.from_pretrained(path, **{k: v for k, v in kwargs.items() if k != "use_fast"})
    if mismatch(fixed, str(path), **kwargs) is not None:  # not the known defect: refuse rather than guess
        raise ValueError(f"tokenizer in {path}: {found.describe()} PreTrainedTokenizerFast does not match either.")
    return fixed, found


def replace_if_corrupt(tokenizer: Any, path: str, **kwargs: Any) -> Any:
    """`faithful`, logging the replacement."""
    fixed, found = faithful(tokenizer, path, **kwargs)
    if found is not None:
        logger.warning("[lf_thinkplugin] %s Loaded as PreTrainedTokenizerFast instead.", found.describe())
    return fixed


def from_pretrained(path: str, **kwargs: Any) -> Any:
    """`AutoTokenizer.from_pretrained`, never returning a class that corrupts ids."""
    from transformers import AutoTokenizer

    return replace_if_corrupt(AutoTokenizer.from_pretrained(path, **kwargs), path, **kwargs)


def fix_lf_tokenizer(tokenizer: Any, model_args: Any) -> Any:
    """The same for a tokenizer LF loaded, re-loaded with LF's own arguments (native tokenizer hook)."""
    kwargs = {"padding_side": "right", "split_special_tokens": model_args.split_special_tokens,
              "cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.hf_hub_token,
              "trust_remote_code": model_args.trust_remote_code}
    return replace_if_corrupt(tokenizer, model_args.model_name_or_path, **kwargs)
