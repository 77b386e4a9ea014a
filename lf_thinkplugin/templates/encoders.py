"""LF template classes that encode a conversation exactly as the model's own chat template renders it.

LF's `ReasoningTemplate` trains every assistant turn in one sequence and keeps each turn's reasoning
in place. The official Qwen3 and DeepSeek-R1 templates do not render a conversation that way: an
assistant turn before the last user message is shown as history, reasoning dropped, so the tokens
the model sees as history at inference differ from the tokens it was trained to generate for that
turn. One sequence cannot hold both, so these classes render such turns as history (prompt, no
loss) and train the turns the official template renders as generations. Every training token then
equals the official rendering (see `lf_thinkplugin.templates.parity`).

Only imported from `register_templates()`, so `import lf_thinkplugin` never imports llamafactory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from llamafactory.data.data_utils import Role
from llamafactory.data.template import ReasoningTemplate
from typing_extensions import override

from .reasoning import has_markup, split_reasoning, strip_reasoning

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

    from .native import NativeEncoder


class _OneTurnFromPairs:
    """encode_oneturn (DPO / KTO, LF's chat) as everything before the last trained target, and that target."""

    def encode_oneturn(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None = None,
        tools: str | None = None,
    ) -> tuple[list[int], list[int]]:
        pairs = self.encode_multiturn(tokenizer, messages, system, tools)  # type: ignore[attr-defined]
        prompt = [t for source, target in pairs[:-1] for t in source + target] + pairs[-1][0]
        return prompt, pairs[-1][1]


@dataclass
class OfficialThinkTemplate(_OneTurnFromPairs, ReasoningTemplate):
    """Base: which turns train, how a trained turn and a history turn render. Subclasses fill in the text."""

    # Train every assistant turn with its reasoning (history reasoning kept) instead of the official rule.
    keep_history: ClassVar[bool] = False
    # True where the official generation prompt already opens the think block (R1: `<｜Assistant｜><think>\n`),
    # so a response starts inside the reasoning. Span-aware code (think_loss) needs to know this.
    opens_think_in_prompt: ClassVar[bool] = False
    jinja_file: ClassVar[str] = ""

    def _thinking(self, content: str) -> bool:
        """LF's `enable_thinking`: True thinks, False never, None (hybrid) when the sample has think tags."""
        if self.enable_thinking is None:
            return has_markup(content)
        return bool(self.enable_thinking)

    def _trained(self, index: int, last_query: int) -> bool:
        return self.keep_history or self.preserve_thinking or index > last_query

    def render_generation(self, content: str) -> tuple[str, str]:
        """(text appended to the generation prompt, response body before the end-of-turn slot)."""
        raise NotImplementedError

    def render_history(self, content: str) -> str:
        """An assistant turn as the official template shows it in a later turn's prompt."""
        raise NotImplementedError

    def _ids(self, tokenizer: PreTrainedTokenizer, elements: list) -> list[int]:
        return self._convert_elements_to_ids(tokenizer, elements)

    @override
    def encode_multiturn(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None = None,
        tools: str | None = None,
        discarding_history_cot: bool = False,  # history reasoning is dropped by the official rule already
    ) -> list[tuple[list[int], list[int]]]:
        system = system or self.default_system
        users = [i for i, m in enumerate(messages) if m["role"] == Role.USER]
        last_query = users[-1] if users else -1
        pairs: list[tuple[list[int], list[int]]] = []
        source: list[int] = []
        for i, message in enumerate(messages):
            elements: list = []
            if i == 0:
                elements += self.format_prefix.apply()
                if system or tools:
                    tool_text = self.format_tools.apply(content=tools)[0] if tools else ""
                    elements += self.format_system.apply(content=(system + tool_text))
            role, content = message["role"], message["content"]
            if role == Role.ASSISTANT and self.enable_thinking is False:  # LF: thinking off drops all reasoning
                content = strip_reasoning(content)
            if role == Role.USER:
                source += self._ids(tokenizer, elements + self.format_user.apply(content=content, idx=str(i // 2)))
            elif role == Role.OBSERVATION:
                source += self._ids(tokenizer, elements + self.format_observation.apply(content=content))
            elif role == Role.FUNCTION:  # tool calls: LF's own formatting, trained as LF trains them
                source += self._ids(tokenizer, elements)
                target = self._ids(
                    tokenizer,
                    self.format_function.apply(
                        content=content, thought_words=self.thought_words, tool_call_words=self.tool_call_words
                    ),
                )
                pairs.append((source, target))
                source = []
            elif role == Role.ASSISTANT:
                source += self._ids(tokenizer, elements)
                if self._trained(i, last_query):
                    opener, body = self.render_generation(content)
                    source += self._ids(tokenizer, [opener])
                    pairs.append((source, self._ids(tokenizer, self.format_assistant.apply(content=body))))
                    source = []
                else:  # history: part of the next prompt, no loss
                    source += self._ids(tokenizer, self.format_assistant.apply(content=self.render_history(content)))
            else:
                raise NotImplementedError(f"Unexpected role: {role}")
        if source:  # a conversation that ends in a prompt (inference)
            pairs.append((source, []))
        return pairs

    @override
    def _get_jinja_template(self, tokenizer: PreTrainedTokenizer) -> str:
        from .jinja import jinja_text

        return jinja_text(self.jinja_file)


@dataclass
class Qwen3ThinkTemplate(OfficialThinkTemplate):
    """Qwen3 hybrid thinking, as Qwen3's own template renders it.

    Trained turn (after the last user message): `<think>\\n{reasoning}\\n</think>\\n\\n{answer}<|im_end|>\\n`,
    an empty think block when the answer has no reasoning; with thinking off the empty block moves into
    the prompt (Qwen3's `enable_thinking=False` generation prompt). History turn: the answer only.
    """

    jinja_file: ClassVar[str] = "qwen3_official.jinja"

    @override
    def render_generation(self, content: str) -> tuple[str, str]:
        reasoning, answer = split_reasoning(content)
        if not self._thinking(content):
            return "<think>\n\n</think>\n\n", answer.lstrip("\n")
        return "", "<think>\n" + (reasoning or "").strip("\n") + "\n</think>\n\n" + answer.lstrip("\n")

    @override
    def render_history(self, content: str) -> str:
        return split_reasoning(content)[1]


@dataclass
class Qwen3KeepHistoryTemplate(Qwen3ThinkTemplate):
    """Qwen3 format that keeps every turn's reasoning and trains every turn (not Qwen3's official rule)."""

    keep_history: ClassVar[bool] = True
    jinja_file: ClassVar[str] = "qwen3_keep_history.jinja"


@dataclass
class DeepSeekR1Template(OfficialThinkTemplate):
    """DeepSeek-R1 and its distills: the generation prompt ends `<｜Assistant｜><think>\\n`.

    Trained turn: `{reasoning}\\n</think>\\n\\n{answer}<｜end▁of▁sentence｜>` (the official template cannot
    render reasoning at all, so this is the model's output format after that prompt; with no reasoning,
    or thinking off, the response closes the open block: `\\n</think>\\n\\n{answer}`). History turn: the
    text after `</think>`, verbatim, as the official template keeps it.
    """

    opens_think_in_prompt: ClassVar[bool] = True
    jinja_file: ClassVar[str] = "deepseek_r1.jinja"

    @override
    def render_generation(self, content: str) -> tuple[str, str]:
        reasoning, answer = split_reasoning(content)
        reasoning = (reasoning or "").strip("\n") if self._thinking(content) else ""
        return "<think>\n", reasoning + "\n</think>\n\n" + answer.lstrip("\n")

    @override
    def render_history(self, content: str) -> str:
        return content.split("</think>")[-1] if "</think>" in content else content


@dataclass
class NativeTemplate(_OneTurnFromPairs, ReasoningTemplate):
    """`template: native`: every turn rendered by the tokenizer's own chat template (templates/native.py).

    LF's formatter slots are unused; `thought_words` become the markup the chat template puts around
    reasoning once LF fixes the template to its tokenizer, so think_loss and span logging find spans
    for any family (`<seed:think>`, gpt-oss's analysis channel, ...). A turn the template cannot
    reproduce as generated stays context (no loss) and is logged, never trained with a wrong label.
    """

    _encoders: ClassVar[dict] = {}  # (id(tokenizer), chat_template) -> NativeEncoder: analysis once per process
    _reported: ClassVar[dict] = {}  # why -> count of untrained turns logged

    def encoder(self, tokenizer: PreTrainedTokenizer) -> "NativeEncoder":
        from .native import NativeEncoder, generation_stop_ids

        key = (id(tokenizer), tokenizer.chat_template)
        found = self._encoders.get(key)
        if found is None or found.tokenizer is not tokenizer:
            found = self._encoders[key] = NativeEncoder(tokenizer, stop_ids=generation_stop_ids(tokenizer))
        return found

    @override
    def fix_special_tokens(self, tokenizer: PreTrainedTokenizer) -> None:
        super().fix_special_tokens(tokenizer)  # only a pad token where there is none: no stop words, EOS kept
        markup = self.encoder(tokenizer).format.markup
        if markup:
            self.thought_words = markup
        from .media import media_plugin

        plugin = media_plugin(str(getattr(tokenizer, "name_or_path", "")))
        if plugin is not None:  # a multimodal model: LF's plugin for its processor expands the media (media.py)
            self.mm_plugin = plugin

    @override
    def fix_jinja_template(self, tokenizer: PreTrainedTokenizer) -> None:
        self.encoder(tokenizer)  # a tokenizer without a chat template fails here, with the fix in the message

    @override
    def _get_jinja_template(self, tokenizer: PreTrainedTokenizer) -> str:
        return tokenizer.chat_template

    @override
    def encode_multiturn(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None = None,
        tools: str | None = None,
        discarding_history_cot: bool = False,  # the template's own history rule applies
    ) -> list[tuple[list[int], list[int]]]:
        encoded = self._encode_sample(self.encoder(tokenizer), messages, system, tools)
        last = max((i for i, m in enumerate(messages) if m["role"] in (Role.ASSISTANT, Role.FUNCTION)), default=-1)
        for index, why in encoded.untrained:
            if index == last:  # an earlier turn left as context is the template's history rule, by design
                self._report(why, messages)
        return encoded.pairs()

    def _encode_sample(self, encoder: "NativeEncoder", messages: list[dict[str, str]], system: str | None,
                       tools: str | None):
        """The encoder's result; a sample it cannot encode raises SampleError (the seam names the sample)."""
        from jinja2.exceptions import TemplateError

        from ..data.sample_errors import DATA_FIX, TEMPLATE_FIX, SampleError
        from .native import NativeTemplateError
        from .settings import extract

        settings, system = extract(system)  # the sample's template settings ride in `_system` (settings.py)
        try:
            return encoder.encode(messages, system or self.default_system or None, tools, self.enable_thinking, settings)
        except NativeTemplateError as err:  # the sample's data: a function_call or tools value that is not JSON, ...
            raise SampleError(str(err), DATA_FIX, messages, system, tools) from None
        except TemplateError as err:  # the chat template's own `raise_exception(...)`, or a key it requires
            raise SampleError(f"the chat template raised: {err}", TEMPLATE_FIX, messages, system, tools) from None

    def _report(self, why: str, messages: list[dict[str, str]]) -> None:
        import logging

        count = self._reported[why] = self._reported.get(why, 0) + 1
        if count <= 3 or count & (count - 1) == 0:  # the first few, then at powers of two
            first = next((m["content"] for m in messages if m["role"] == Role.USER), "")[:60]
            logging.getLogger("lf_thinkplugin").warning(
                "[lf_thinkplugin] template native: the last assistant turn of a sample (first user message %r) is not "
                "trained: %s (%d such samples so far). Check it with `lf-think doctor`; `thinkplugin.expand_turns` or "
                "another template may fit.", first, why, count)
