"""Clean errors for samples a template cannot encode, and for a tokenized dataset that trains nothing.

A template's `encode_multiturn` sees one conversation, not where it came from: it raises
`SampleError` with the conversation (picklable, so it crosses LF's `preprocessing_num_workers`
processes intact). The run context keeps every aligned dataset (data as in the user's file, in
order) and, once LF's `.map` has failed, `locate()` finds the sample there, so the message names
the dataset, the sample's index and its first words. `no_trained_token()` is the check behind the
refusal of a `cutoff_len` that leaves nothing to learn. No LLaMA-Factory import here: the seam hands
over what LF holds.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..options import OptionsError

PREVIEW = 40  # characters of the first user message shown

DATA_FIX = ("correct the sample in the data file (a `function_call` value is a JSON object "
            "{\"name\": ..., \"arguments\": {...}} or a JSON list of them; a `tools` value is a JSON list of function "
            "schemas), or remove it")
TEMPLATE_FIX = ("the model's own chat template refuses this sample: rewrite it into a form the template accepts (for "
                "example, fold a system message into the first user message when the template has no system role), "
                "remove it, or train with a named LF template instead of `native`")


class SampleError(OptionsError):
    """One conversation that the template cannot encode; the seam adds its dataset and index.

    `args` are exactly the constructor's arguments, so the error pickles across LF's worker processes.
    """

    def __init__(self, reason: str, fix: str, messages: Sequence[dict], system: Optional[str] = None,
                 tools: Optional[str] = None) -> None:
        super().__init__(reason, fix, list(messages), system, tools)

    reason = property(lambda self: self.args[0])
    fix = property(lambda self: self.args[1])
    messages = property(lambda self: self.args[2])
    system = property(lambda self: self.args[3])
    tools = property(lambda self: self.args[4])

    def __str__(self) -> str:  # where nothing located it (a programmatic caller): still the reason and the fix
        return f"a sample ({preview(self.messages)}): {self.reason}. Fix: {self.fix}."


def find_sample_error(err: BaseException) -> Optional[SampleError]:
    """The SampleError behind `err`: itself, or in its chain (`datasets` and LF's worker pool re-raise)."""
    seen: set[int] = set()
    todo: list[Optional[BaseException]] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SampleError):
            return e
        todo += [e.__cause__, e.__context__]
    return None


def _role(message: dict) -> str:
    role = message.get("role")
    return str(getattr(role, "value", role))


def _key(message: dict) -> tuple[str, Any]:
    return _role(message), message.get("content")


def preview(messages: Sequence[dict]) -> str:
    """`"first words of the first user message…"` (quoted, whitespace collapsed)."""
    text = next((str(m.get("content") or "") for m in messages if _role(m) == "user"), "")
    text = " ".join(text.split())
    return '"' + (text if len(text) <= PREVIEW else text[:PREVIEW].rstrip() + "…") + '"'


def locate(datasets: Sequence[tuple[str, Any]], err: SampleError) -> Optional[tuple[str, int]]:
    """(dataset name, index) of the aligned sample that `err`'s conversation came from, or None.

    The conversation a template sees is the sample's messages (pairwise data: the prompt and one
    response; `expand_turns`: a prefix), so the sample is the first one, with the same system and
    tools, that shares the longest run of leading messages with it (all of them when it can).
    """
    wanted = [_key(m) for m in err.messages]
    best: Optional[tuple[str, int]] = None
    best_len = 0
    for name, dataset in datasets:
        if not hasattr(dataset, "__len__") or not {"_prompt", "_response"} <= set(dataset.column_names):
            continue  # streamed: cannot be searched
        columns = [c for c in ("_prompt", "_response", "_system", "_tools") if c in dataset.column_names]
        start = 0
        for rows in dataset.select_columns(columns).iter(batch_size=1024):
            n = len(rows["_prompt"])
            systems, tools = rows.get("_system") or [None] * n, rows.get("_tools") or [None] * n
            for row in range(n):
                if (systems[row] or None) != (err.system or None) or (tools[row] or None) != (err.tools or None):
                    continue
                conversation = list(rows["_prompt"][row] or []) + list(rows["_response"][row] or [])
                common = 0
                for have, want in zip(conversation, wanted):
                    if _key(have) != want:
                        break
                    common += 1
                if common == len(wanted):
                    return name, start + row
                if common > best_len:
                    best, best_len = (name, start + row), common
            start += n
    return best


def sample_message(err: SampleError, datasets: Sequence[tuple[str, Any]], names: Sequence[str]) -> str:
    """The user's message for `err`: dataset, sample index and first words, the template's text, the fix."""
    found = locate(datasets, err)
    if found is not None:
        where = f"dataset `{found[0]}`, sample {found[1]} ({preview(err.messages)})"
    else:
        where = ", ".join(f"`{n}`" for n in names) or "the training data"
        where = f"dataset {where}, a sample ({preview(err.messages)}; not found again in the aligned data)"
    return f"{where}: {err.reason}. Fix: {err.fix}."


def no_trained_token(dataset: Any, columns: Sequence[str], ignore_index: int) -> Optional[int]:
    """None when some sample of a tokenized dataset has a trained label; else the longest `input_ids` (0: empty).

    Streamed datasets are not checked (None). Fast path: the first rows usually train something.
    """
    if not hasattr(dataset, "__len__"):
        return None
    columns = [c for c in columns if c in dataset.column_names]
    if not columns or len(dataset) == 0:
        return None
    head = dataset.select(range(min(len(dataset), 64)))
    if any(label != ignore_index for c in columns for labels in head[c] for label in labels):
        return None
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")
    for c in columns:
        flat = pc.list_flatten(table[c])
        if len(flat) and pc.any(pc.not_equal(flat, ignore_index)).as_py():
            return None
    inputs = [c.replace("labels", "input_ids") for c in columns]
    lengths = [pc.max(pc.list_value_length(table[c])).as_py() or 0 for c in inputs if c in dataset.column_names]
    return max(lengths, default=0)


def no_trained_token_message(names: Sequence[str], total: int, longest: int, cutoff_len: int) -> str:
    named = ", ".join(f"`{n}`" for n in names) or "the training data"
    if longest >= cutoff_len:  # LF cut samples to cutoff_len
        return (f"`cutoff_len: {cutoff_len}` leaves no sample of dataset {named} with a trained token: all {total} "
                f"tokenized samples are cut to at most {longest} tokens, inside their prompts, so training would learn "
                f"nothing. Fix: raise `cutoff_len` above the length of the prompts (LF's default is 2048), or shorten "
                "the prompts")
    return (f"no sample of dataset {named} has a trained token (all {total} tokenized samples have every label masked, "
            f"well within `cutoff_len: {cutoff_len}`), so training would learn nothing. Fix: check the samples against "
            "the template (`lf-think check`; the warnings above name turns the template leaves untrained), "
            "`mask_history` and `train_on_prompt`, or pick another template")


def trained_summary(dataset: Any, column: str, ignore_index: int) -> Optional[tuple[int, int, int]]:
    """(samples with a trained token, samples, trained spans: one per trained turn) of a tokenized dataset;
    None for a streamed one or one without the column."""
    if not hasattr(dataset, "__len__") or column not in getattr(dataset, "column_names", ()):
        return None
    import numpy as np
    import pyarrow.compute as pc

    labels = dataset.with_format("arrow")[column]
    labels = labels.combine_chunks() if hasattr(labels, "combine_chunks") else labels
    flat = np.asarray(pc.list_flatten(labels).to_numpy(zero_copy_only=False))
    offsets = np.asarray(labels.offsets.to_numpy(zero_copy_only=False)) - labels.offsets[0].as_py()
    rows = len(offsets) - 1
    trained = flat != ignore_index
    run_start = trained.copy()
    run_start[1:] &= ~trained[:-1]
    heads = offsets[:-1][offsets[:-1] < len(flat)]
    run_start[heads] = trained[heads]  # a row's first token starts a run of its own
    per_row = np.bincount(np.repeat(np.arange(rows), np.diff(offsets))[trained], minlength=rows)
    return int((per_row > 0).sum()), rows, int(run_start.sum())
