"""Tokenizers that encode exactly as their own tokenizer.json does.

transformers 5.x loads some byte-level BPE tokenizers through the class named in their
tokenizer_config.json (`LlamaTokenizerFast` for DeepSeek-R1-Distill-Qwen and DeepSeek-V3), which
rebuilds the pre-tokenizer SentencePiece-style and drops spaces, newlines and CJK text
(transformers#45488): `"Hello world,"` becomes other ids, and LF trains on corrupted tokens.

`from_pretrained` loads as AutoTokenizer does and checks the result against tokenizer.json read by
the `tokenizers` library (the ground truth; read once per file and process):

- several probe texts (spaces, newlines, tabs, CJK, code, digits, accents and emoji) encode to the
  same ids, without special tokens;
- every added token of tokenizer.json (`<|im_start|>`, `<｜Assistant｜>`, `<think>`, ...) encodes to
  its single id, alone and written inside text (unless `split_special_tokens` is on);
- with `add_special_tokens=True` the tokenizer adds what tokenizer.json's post_processor adds, or
  what tokenizer_config.json's `add_bos_token` / `add_eos_token` ask for (transformers 4.x honoured
  them in classes such as LlamaTokenizerFast; transformers 5 ignores them when tokenizer.json
  exists). Where the two disagree (the DeepSeek checkpoints: `add_bos_token: true`, no BOS in
  tokenizer.json) the mismatch report says so.

On a mismatch it loads `PreTrainedTokenizerFast` instead, which reads tokenizer.json as it is, and
gives it the BOS / EOS behaviour of the class it replaces (so `tok(text)` adds what it added
before, and `save_pretrained` writes that into the saved tokenizer.json). Used by the seam for
LF's own tokenizer loading (runs with a `thinkplugin:` block) and by the doctor, which reports the
mismatch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("lf_thinkplugin")

PROBE = "Hello world,\n\n  the answer is 42.\tDone! 你好，世界。 x = [1, 2]\n"
PROBES: tuple[str, ...] = (
    PROBE,
    " leading and trailing spaces \n\n\n  \t\tmixed\t \n\r\n   ",
    "中文：深度学习模型的推理。日本語のテキスト、한국어 문장입니다。",
    'def add(a, b):\n    return a + b  # sum\n\nif __name__ == "__main__":\n\tprint(add(1, 2))\n',
    "0 7 42 123 1234 12345 3.14159 -2.5e-3 2024-01-31 0xFF 1,000,000",
    "café naïve Ünïcödé — “quotes” ‘single’ … 🤔🚀 ",
)
# Chat-template markers of the supported families, written inside ordinary text; each fixture
# tokenizer.json decides which of them are single added tokens.
CHAT_PROBE = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    "<think>\nadd them\n</think>\n\n4<|im_end|>\n<｜begin▁of▁sentence｜>sys<｜User｜>hi<｜Assistant｜><think>\nr\n"
    "</think>\n\nok<｜end▁of▁sentence｜>"
)


@dataclass(frozen=True)
class Mismatch:
    """How a loaded tokenizer differs from its tokenizer.json: the first differing probe.

    kind: "text" (a probe text without special tokens), "special tokens" (an added token alone or
    written inside text), "bos/eos" (what add_special_tokens=True adds around the text).
    note: where tokenizer_config.json's add_bos_token / add_eos_token disagree with tokenizer.json.
    """

    loaded_as: str
    got: list[int]
    expected: list[int]
    text: str = PROBE
    kind: str = "text"
    note: str = ""

    def describe(self) -> str:
        head = f"AutoTokenizer loads this tokenizer as {self.loaded_as}, which encodes differently from its own tokenizer.json"
        note = f" Note: {self.note}" if self.note else ""
        if self.kind == "bos/eos":
            return (f"{head}: with add_special_tokens=True it encodes {PROBE!r} as {self.got[:3]}...{self.got[-3:]}, "
                    f"where tokenizer.json (or tokenizer_config.json's add_bos_token / add_eos_token) gives "
                    f"{self.expected[:3]}...{self.expected[-3:]}, so `tok(text)` and LF's pretraining would get other "
                    "BOS / EOS ids than the checkpoint defines." + note)
        if self.kind == "special tokens":
            return (f"{head}: it encodes the added tokens in {self.text[:60]!r} as {self.got[:8]}, tokenizer.json as "
                    f"{self.expected[:8]}, so LF would train on other ids for chat-template tokens written in text "
                    "(compare tokenizer_config.json's added_tokens_decoder with tokenizer.json's added_tokens)." + note)
        return (
            f"{head} (e.g. {self.text!r}: {len(self.got)} tokens, tokenizer.json {len(self.expected)}): this transformers "
            "version replaces the byte-level pre-tokenizer with a SentencePiece one that drops spaces and newlines, so "
            "LF would train on corrupted ids. Fix: set \"tokenizer_class\": \"PreTrainedTokenizerFast\" in "
            "tokenizer_config.json (the plugin does this in memory for its runs)." + note
        )


# ---- the reference: tokenizer.json through the `tokenizers` library ----------------------------------------------

Adds = tuple[tuple[int, ...], tuple[int, ...]]  # (ids before the text, ids after it) with add_special_tokens=True


@dataclass(frozen=True)
class _Reference:
    texts: tuple[str, ...]  # PROBES, CHAT_PROBE, then every added token written inside text (32 a text)
    ids: tuple[tuple[int, ...], ...]  # tokenizer.json's ids of `texts`, no special tokens
    singles: tuple[tuple[str, int], ...]  # (added token, its id), each encoding to that id alone
    post: Adds  # what tokenizer.json's post_processor adds around PROBE
    intent: Adds | None  # what tokenizer_config.json's add_bos_token / add_eos_token ask for, when they are set
    note: str


_REFERENCES: dict[tuple, _Reference] = {}


def _cached(path: str, name: str, kwargs: dict[str, Any]) -> str | None:
    """Local path of `name` for a folder or a cached hub id; None when there is none."""
    from transformers.utils import cached_file

    options = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
    try:
        return cached_file(path, name, _raise_exceptions_for_missing_entries=False, **options)
    except OSError:
        return None


def _tokenizer_json(path: str, kwargs: dict[str, Any]) -> str | None:
    return _cached(path, "tokenizer.json", kwargs)


def _split(full: list[int], plain: list[int]) -> Adds | None:
    """(prefix, suffix) of `full` around `plain`, or None when `plain` is not inside it."""
    n = len(plain)
    for start in range(len(full) - n + 1):
        if full[start:start + n] == plain:
            return tuple(full[:start]), tuple(full[start + n:])
    return None


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else getattr(value, "content", None)


def _intent(config: dict[str, Any], kwargs: dict[str, Any], raw: Any, post: Adds) -> tuple[Adds | None, str]:
    """What add_bos_token / add_eos_token (the caller's kwargs, else tokenizer_config.json) ask for."""
    flags = {k: kwargs.get(k, config.get(k)) for k in ("add_bos_token", "add_eos_token")}
    if not any(isinstance(v, bool) for v in flags.values()):
        return None, ""
    bos = raw.token_to_id(_token_content(kwargs.get("bos_token", config.get("bos_token"))) or "")
    eos = raw.token_to_id(_token_content(kwargs.get("eos_token", config.get("eos_token"))) or "")
    prefix, suffix = list(post[0]), list(post[1])
    if isinstance(flags["add_bos_token"], bool) and bos is not None:
        prefix = ([bos] if flags["add_bos_token"] else []) + [t for t in prefix if t != bos]
    if isinstance(flags["add_eos_token"], bool) and eos is not None:
        suffix = [t for t in suffix if t != eos] + ([eos] if flags["add_eos_token"] else [])
    intent = (tuple(prefix), tuple(suffix))
    if intent == post:
        return intent, ""
    asked = ", ".join(f"{k}: {str(v).lower()}" for k, v in flags.items() if isinstance(v, bool))
    return intent, (f"tokenizer_config.json sets {asked} (ids {list(intent[0])} before the text, {list(intent[1])} "
                    f"after), but tokenizer.json's post_processor adds {list(post[0])} / {list(post[1])}; transformers 5 "
                    "follows tokenizer.json, transformers 4.x followed tokenizer_config.json in classes such as "
                    "LlamaTokenizerFast. LF's templates write BOS themselves, so chat training is unaffected.")


def _reference(file: str, path: str, split_special: bool, kwargs: dict[str, Any]) -> _Reference:
    config_file = _cached(path, "tokenizer_config.json", kwargs)
    flags = tuple((k, repr(kwargs.get(k))) for k in ("add_bos_token", "add_eos_token", "bos_token", "eos_token"))
    key = (os.path.realpath(file), os.stat(file).st_mtime_ns, os.path.getsize(file), config_file,
           os.stat(config_file).st_mtime_ns if config_file else None, split_special, flags)
    if key in _REFERENCES:
        return _REFERENCES[key]
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(file)  # the one load of tokenizer.json for this check
    raw.encode_special_tokens = split_special
    added = sorted((i, t) for i, t in raw.get_added_tokens_decoder().items())
    inside = tuple("".join(f" x{t.content}y\n" for _, t in added[i:i + 32]) for i in range(0, len(added), 32))
    texts = PROBES + (CHAT_PROBE,) + inside  # short texts: no sequence-length warning on small model_max_length
    ids = tuple(tuple(e.ids) for e in raw.encode_batch(list(texts), add_special_tokens=False))
    candidates = [(t.content, i) for i, t in added if not (split_special and t.special)]
    alone = raw.encode_batch([c for c, _ in candidates], add_special_tokens=False) if candidates else []
    singles = tuple((c, i) for (c, i), e in zip(candidates, alone) if e.ids == [i])
    post = _split(raw.encode(PROBE, add_special_tokens=True).ids, list(ids[0])) or ((), ())
    config: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            config = {}
    intent, note = _intent(config, kwargs, raw, post)
    ref = _Reference(texts, ids, singles, post, intent, note)
    _REFERENCES[key] = ref
    return ref


# ---- the check ----------------------------------------------------------------------------------------------------


def _adds(tokenizer: Any) -> Adds | None:
    """What `tokenizer` adds around PROBE with add_special_tokens=True."""
    return _split(list(tokenizer.encode(PROBE, add_special_tokens=True)),
                  list(tokenizer.encode(PROBE, add_special_tokens=False)))


def _check(tokenizer: Any, ref: _Reference, allowed: tuple[Adds, ...]) -> Mismatch | None:
    name = type(tokenizer).__name__
    got = tokenizer(list(ref.texts), add_special_tokens=False)["input_ids"]
    for index, (text, ids, expected) in enumerate(zip(ref.texts, got, ref.ids)):
        if list(ids) != list(expected):
            kind = "text" if index < len(PROBES) else "special tokens"
            return Mismatch(name, list(ids), list(expected), text, kind, ref.note)
    if ref.singles:
        alone = tokenizer([c for c, _ in ref.singles], add_special_tokens=False)["input_ids"]
        for (content, token_id), ids in zip(ref.singles, alone):
            if list(ids) != [token_id]:
                return Mismatch(name, list(ids), [token_id], content, "special tokens", ref.note)
    adds = _adds(tokenizer)
    if adds not in allowed:
        full = list(tokenizer.encode(PROBE, add_special_tokens=True))
        expected = list(allowed[0][0]) + list(ref.ids[0]) + list(allowed[0][1])
        return Mismatch(name, full, expected, PROBE, "bos/eos", ref.note)
    return None


def _split_special(tokenizer: Any, kwargs: dict[str, Any]) -> bool:
    return bool(getattr(tokenizer, "split_special_tokens", kwargs.get("split_special_tokens", False)))


def _allowed(ref: _Reference) -> tuple[Adds, ...]:
    return (ref.post,) + ((ref.intent,) if ref.intent is not None and ref.intent != ref.post else ())


def mismatch(tokenizer: Any, path: str, **kwargs: Any) -> Mismatch | None:
    """How `tokenizer` differs from its tokenizer.json (probe texts, added tokens, BOS / EOS), or None when it
    does not (also when there is no tokenizer.json)."""
    file = _tokenizer_json(str(path), kwargs)
    if file is None:
        return None
    ref = _reference(file, str(path), _split_special(tokenizer, kwargs), kwargs)
    return _check(tokenizer, ref, _allowed(ref))


def _set_adds(tokenizer: Any, wanted: Adds) -> None:
    """Make `tokenizer` add BOS / EOS as `wanted` says (transformers 5's add_bos_token / add_eos_token setters
    rebuild the post_processor, which save_pretrained then writes into tokenizer.json)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    tokenizer.add_bos_token = bos is not None and bos in wanted[0]
    tokenizer.add_eos_token = eos is not None and eos in wanted[1]


def faithful(tokenizer: Any, path: str, **kwargs: Any) -> tuple[Any, Mismatch | None]:
    """(`tokenizer` or a faithful `PreTrainedTokenizerFast` loaded with the same kwargs, the mismatch found).

    The replacement adds BOS / EOS as `tokenizer` did where that agrees with the checkpoint (tokenizer.json or
    tokenizer_config.json), as tokenizer.json says otherwise. Raises ValueError when `tokenizer` garbles text and
    the replacement does not fix it; keeps `tokenizer` (and returns the mismatch) when only its added tokens or
    BOS / EOS differ and the replacement does no better.
    """
    from transformers import PreTrainedTokenizerFast

    path = str(path)
    file = _tokenizer_json(path, kwargs)
    if file is None:
        return tokenizer, None
    ref = _reference(file, path, _split_special(tokenizer, kwargs), kwargs)
    allowed = _allowed(ref)
    found = _check(tokenizer, ref, allowed)
    if found is None:
        return tokenizer, None
    declared = _adds(tokenizer)
    wanted = declared if declared in allowed else ref.post  # keep the BOS / EOS of the class being replaced
    fixed = PreTrainedTokenizerFast.from_pretrained(path, **{k: v for k, v in kwargs.items() if k != "use_fast"})
    if _adds(fixed) != wanted:
        _set_adds(fixed, wanted)
    again = _check(fixed, ref, (wanted,))
    if again is None:
        return fixed, found
    if found.kind == "text":  # not the known defect: refuse rather than guess
        raise ValueError(f"tokenizer in {path}: {found.describe()} PreTrainedTokenizerFast does not match either "
                         f"({again.kind}: {again.got[:12]} vs {again.expected[:12]}).")
    return tokenizer, found


def replace_if_corrupt(tokenizer: Any, path: str, **kwargs: Any) -> Any:
    """`faithful`, logging the replacement."""
    fixed, found = faithful(tokenizer, path, **kwargs)
    if found is not None and fixed is tokenizer:
        logger.warning("[lf_thinkplugin] %s PreTrainedTokenizerFast differs as well: kept %s.", found.describe(),
                       type(tokenizer).__name__)
    elif found is not None:
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
