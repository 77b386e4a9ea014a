"""LF's pairwise (DPO, RM) and feedback (KTO) dataset processors, each pair in one thinking mode on one prompt.

Part of the seam: subclasses of LF 0.9.5's processors (`_encode_data_example` and the loop of
`preprocess_dataset` follow LF's own code line for line: media, `efficient_eos`, `infer_seqlen`
truncation), rebound in `llamafactory.data.loader` while a plugin run is bound. What differs is
data/pairs.py: the pair's mode, both sides' prompts checked equal, and `on_malformed` for a pair that
cannot share one. Module-level classes, so `datasets.map(num_proc=N)` pickles them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional

from llamafactory.data.processor.feedback import FeedbackDatasetProcessor
from llamafactory.data.processor.pairwise import PairwiseDatasetProcessor
from llamafactory.data.processor.processor_utils import infer_seqlen
from llamafactory.extras.constants import IGNORE_INDEX

from ..data.pairs import PairProblem, PairReport, encode_sides, pair_mode

PAIR_FIX = ("make both sides of the pair render after the same prompt: set LF's `enable_thinking` (true or false) "
            "so every pair is encoded in one mode, or fix the sample; `thinkplugin.on_malformed: warn` (or `skip`) "
            "drops such pairs instead")


def _encode_pair(proc: Any, prompt: list[dict], sides: list[dict], mode_from: list[dict], names: tuple[str, str],
                 system: Optional[str], tools: Optional[str], images, videos, audios) -> Optional[tuple]:
    """(shared prompt ids, both sides' response ids) in the mode `mode_from` gives; None for a pair dropped under
    `on_malformed: warn / skip`; SampleError (the seam names the sample) under `error`."""
    mm = proc.template.mm_plugin
    messages = [mm.process_messages(prompt + [side], images, videos, audios, proc.processor) for side in sides]
    mode = pair_mode(proc.template, proc.tokenizer, [m["content"] for m in mode_from])
    try:
        return encode_sides(proc.template, proc.tokenizer, messages, system, tools, mode, names)
    except PairProblem as problem:
        if proc.on_malformed == "error":
            from ..data.sample_errors import SampleError

            raise SampleError(str(problem), PAIR_FIX, prompt + [sides[0]], system, tools) from None
        proc.report.drop(problem, prompt)
        return None


@dataclass
class ThinkPairwiseProcessor(PairwiseDatasetProcessor):
    on_malformed: str = "warn"

    def __post_init__(self) -> None:
        self.report = PairReport(self.on_malformed)

    def _encode_data_example(self, prompt, response, system, tools, images, videos, audios):
        encoded = _encode_pair(self, prompt, response[:2], response[:2], ("chosen", "rejected"), system, tools,
                               images, videos, audios)
        if encoded is None:
            return None
        prompt_ids, (chosen_ids, rejected_ids) = encoded
        mm = self.template.mm_plugin
        if self.template.efficient_eos:
            chosen_ids += [self.tokenizer.eos_token_id]
            rejected_ids += [self.tokenizer.eos_token_id]
        prompt_ids, _ = mm.process_token_ids(prompt_ids, None, images, videos, audios, self.tokenizer, self.processor)
        source_len, target_len = infer_seqlen(len(prompt_ids), max(len(chosen_ids), len(rejected_ids)),
                                              self.data_args.cutoff_len)
        prompt_ids, chosen_ids, rejected_ids = prompt_ids[:source_len], chosen_ids[:target_len], rejected_ids[:target_len]
        return (prompt_ids + chosen_ids, [IGNORE_INDEX] * source_len + chosen_ids,
                prompt_ids + rejected_ids, [IGNORE_INDEX] * source_len + rejected_ids)

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        model_inputs = defaultdict(list)
        for i in range(len(examples["_prompt"])):
            if len(examples["_prompt"][i]) % 2 != 1 or len(examples["_response"][i]) < 2:
                _dropped_invalid(examples["_prompt"][i] + examples["_response"][i])
                continue
            encoded = self._encode_data_example(
                prompt=examples["_prompt"][i], response=examples["_response"][i], system=examples["_system"][i],
                tools=examples["_tools"][i], images=examples["_images"][i] or [], videos=examples["_videos"][i] or [],
                audios=examples["_audios"][i] or [])
            if encoded is None:
                continue
            chosen_input_ids, chosen_labels, rejected_input_ids, rejected_labels = encoded
            model_inputs["chosen_input_ids"].append(chosen_input_ids)
            model_inputs["chosen_attention_mask"].append([1] * len(chosen_input_ids))
            model_inputs["chosen_labels"].append(chosen_labels)
            model_inputs["rejected_input_ids"].append(rejected_input_ids)
            model_inputs["rejected_attention_mask"].append([1] * len(rejected_input_ids))
            model_inputs["rejected_labels"].append(rejected_labels)
            for key in ("images", "videos", "audios"):
                model_inputs[key].append(examples[f"_{key}"][i])
        return model_inputs


@dataclass
class ThinkFeedbackProcessor(FeedbackDatasetProcessor):
    """KTO: the sample's response and its KL response (another sample's) in the sample's mode, one prompt."""

    on_malformed: str = "warn"

    def __post_init__(self) -> None:
        self.report = PairReport(self.on_malformed)

    def _encode_data_example(self, prompt, response, kl_response, system, tools, images, videos, audios):
        kto_tag = bool(response[0]["content"])
        target = response[0] if kto_tag else response[1]
        kl_target = kl_response[0] if kl_response[0]["content"] else kl_response[1]
        # the KL response follows the sample's mode
        encoded = _encode_pair(self, prompt, [target, kl_target], [target], ("sample", "KL"), system, tools,
                               images, videos, audios)
        if encoded is None:
            return None
        prompt_ids, (response_ids, kl_response_ids) = encoded
        mm = self.template.mm_plugin
        if self.template.efficient_eos:
            response_ids += [self.tokenizer.eos_token_id]
            kl_response_ids += [self.tokenizer.eos_token_id]
        prompt_ids, _ = mm.process_token_ids(prompt_ids, None, images, videos, audios, self.tokenizer, self.processor)
        source_len, target_len = infer_seqlen(len(prompt_ids), len(response_ids), self.data_args.cutoff_len)
        kl_source_len, kl_target_len = infer_seqlen(len(prompt_ids), len(kl_response_ids), self.data_args.cutoff_len)
        return (prompt_ids[:source_len] + response_ids[:target_len], [IGNORE_INDEX] * source_len + response_ids[:target_len],
                prompt_ids[:kl_source_len] + kl_response_ids[:kl_target_len],
                [IGNORE_INDEX] * kl_source_len + kl_response_ids[:kl_target_len], kto_tag)

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        kl_response = [examples["_response"][-1]] + examples["_response"][:-1]  # LF's mismatched KL pairs
        model_inputs = defaultdict(list)
        for i in range(len(examples["_prompt"])):
            if len(examples["_prompt"][i]) % 2 != 1 or len(examples["_response"][i]) < 2:
                _dropped_invalid(examples["_prompt"][i] + examples["_response"][i])
                continue
            encoded = self._encode_data_example(
                prompt=examples["_prompt"][i], response=examples["_response"][i], kl_response=kl_response[i],
                system=examples["_system"][i], tools=examples["_tools"][i], images=examples["_images"][i] or [],
                videos=examples["_videos"][i] or [], audios=examples["_audios"][i] or [])
            if encoded is None:
                continue
            input_ids, labels, kl_input_ids, kl_labels, kto_tag = encoded
            model_inputs["input_ids"].append(input_ids)
            model_inputs["attention_mask"].append([1] * len(input_ids))
            model_inputs["labels"].append(labels)
            model_inputs["kl_input_ids"].append(kl_input_ids)
            model_inputs["kl_attention_mask"].append([1] * len(kl_input_ids))
            model_inputs["kl_labels"].append(kl_labels)
            model_inputs["kto_tags"].append(kto_tag)
            for key in ("images", "videos", "audios"):
                model_inputs[key].append(examples[f"_{key}"][i])
        tags = model_inputs["kto_tags"]
        if tags and (all(tags) or not any(tags)):
            _one_type()
        return model_inputs


def _dropped_invalid(example: list[dict]) -> None:
    from llamafactory.extras import logging as lf_logging

    lf_logging.get_logger("llamafactory.data.processor").warning_rank0(f"Dropped invalid example: {example}")


def _one_type() -> None:
    from llamafactory.extras import logging as lf_logging

    lf_logging.get_logger("llamafactory.data.processor").warning_rank0("Your dataset only has one preference type.")


def processor_classes(on_malformed: str) -> dict[str, Any]:
    """The loader's processor names -> constructors carrying the run's `on_malformed`."""
    import functools

    return {"PairwiseDatasetProcessor": functools.partial(ThinkPairwiseProcessor, on_malformed=on_malformed),
            "FeedbackDatasetProcessor": functools.partial(ThinkFeedbackProcessor, on_malformed=on_malformed)}
