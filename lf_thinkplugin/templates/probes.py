"""The doctor's probe conversations: the shapes of reasoning data a template must render right.

Messages use LF's training layout (alternating user / assistant, system separate) and keep reasoning
inline in the assistant content, as LF's datasets do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Probe:
    name: str
    messages: tuple[dict[str, str], ...]
    system: str | None = None
    note: str = field(default="", compare=False)
    tools: str | None = None  # LF's `tools` column (JSON list of function definitions)


def _u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


_LONG_USER = " ".join(
    f"Step {i}: a train leaves station {chr(65 + i % 26)} at {7 + i % 12}:{i % 60:02d} and travels {40 + i} km." for i in range(40)
) + " Which train arrives last, and when?"
_LONG_REASONING = "\n".join(
    f"Train {i} covers {40 + i} km at 80 km/h, so it needs {(40 + i) * 60 // 80} minutes." for i in range(40)
) + "\nComparing all arrival times, the last one is train 39."
_LONG_ANSWER = "Train 39 arrives last. " * 12 + "\n\n| train | minutes |\n|---|---|\n| 39 | 59 |"

PROBES: tuple[Probe, ...] = (
    Probe("single_turn", (_u("What is 17 * 3?"), _a("<think>\n17 * 3 = 51.\n</think>\n\n17 * 3 = 51."))),
    Probe(
        "system_prompt",
        (_u("Is 91 prime?"), _a("<think>\n91 = 7 * 13, so it is composite.\n</think>\n\nNo: 91 = 7 × 13.")),
        system="You are a careful math tutor. Answer briefly.",
    ),
    Probe(
        "multi_turn_reasoning_in_history",
        (
            _u("Name a prime above 10."),
            _a("<think>\n11 has no divisors but 1 and itself.\n</think>\n\n11."),
            _u("And the next one?"),
            _a("<think>\n12 is even, 13 is prime.\n</think>\n\n13."),
        ),
        note="history reasoning: official templates drop it when rendering later turns",
    ),
    Probe("non_thinking_answer", (_u("Say hello."), _a("Hello!"))),
    Probe(
        "multi_turn_non_thinking",
        (_u("Hi."), _a("Hi! How can I help?"), _u("Tell me a fact about cats."), _a("Cats sleep about 15 hours a day.")),
    ),
    Probe("empty_reasoning", (_u("What is 2 + 2?"), _a("<think>\n\n</think>\n\n4"))),
    Probe("compact_think_tags", (_u("Is 10 even?"), _a("<think>10 / 2 = 5.</think>Yes, 10 is even.")), note="`<think>x</think>` with no newlines"),
    Probe(
        "chinese",
        (
            _u("北京是哪个国家的首都？"),
            _a("<think>\n北京是中华人民共和国的首都。\n</think>\n\n中国。"),
            _u("上海呢？"),
            _a("<think>\n上海不是首都，是直辖市。\n</think>\n\n上海是中国的直辖市，不是首都。"),
        ),
        system="你是一个乐于助人的助手。",
    ),
    Probe(
        "long_turns",
        (
            _u(_LONG_USER),
            _a(f"<think>\n{_LONG_REASONING}\n</think>\n\n{_LONG_ANSWER}"),
            _u("Summarise that in one sentence."),
            _a("<think>\nOne sentence: train 39 is last.\n</think>\n\nTrain 39 arrives last, 59 minutes after it leaves."),
        ),
        system="You solve timetable puzzles.",
    ),
    Probe(
        "mixed_history",
        (
            _u("Hi!"),
            _a("Hello! What shall we compute?"),
            _u("Add 123 and 877."),
            _a("<think>\n123 + 877 = 1000.\n</think>\n\n1000."),
        ),
        note="a non-thinking turn in history, a thinking turn last",
    ),
)


_WEATHER = json.dumps([{"name": "get_weather", "description": "Weather of a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
TOOL_PROBES: tuple[Probe, ...] = (
    Probe(
        "tool_call_chain",
        (
            _u("Weather in Paris?"),
            {"role": "function", "content": '<think>\nI need the tool.\n</think>\n\n{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"role": "observation", "content": '{"temp": 21}'},
            _a("<think>\nThe tool says 21.\n</think>\n\nIt is 21 degrees in Paris."),
        ),
        tools=_WEATHER,
        note="LF's function_call / observation roles and tools column: the template's tool_calls / tool messages",
    ),
    Probe(
        "tool_call_after_chat",
        (
            _u("Hi"),
            _a("Hello! Ask me about the weather."),
            _u("Rome?"),
            {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Rome"}}'},
            {"role": "observation", "content": '{"temp": 25}'},
            _a("<think>\n25 from the tool.\n</think>\n\n25 degrees in Rome."),
        ),
        system="You report the weather.",
        tools=_WEATHER,
    ),
)
SCAN_PROBES = PROBES + TOOL_PROBES  # the doctor's scan (and `template: auto`): tool calls included


def probe(name: str) -> Probe:
    for p in SCAN_PROBES:
        if p.name == name:
            return p
    raise KeyError(f"no probe named {name!r}; known: {', '.join(p.name for p in PROBES)}")
