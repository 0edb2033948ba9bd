"""Versioned prompt templates and the pure `render_prompt` function.

One training sample is one turn: the prompt is rebuilt every turn from the task, the last H
observation/action pairs, the current observation and the admissible actions (the paper's
agent loop). A template id (e.g. "sokoban/v1") names one exact wording; changing the wording
means a new id, and the spec that uses it a new version.

The sentence "Prior to this step, you have already taken N step(s)." is kept verbatim across
templates: turn-aware estimators (EMPG) read the turn index from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arlarena_envs.errors import SpecError

ANSWER_FORMAT = (
    "Now it's your turn to act. First reason step by step about the current situation inside "
    "<think> </think> tags. Then choose exactly one admissible action and write it inside "
    "<action> </action> tags."
)


@dataclass(frozen=True)
class PromptTemplate:
    template_id: str
    intro: str  # who the agent is and what the environment is
    rules: str = ""  # env-specific rules and symbol legends
    show_task: bool = True
    max_chars: int | None = None  # above this, fall back to the no-history form (WebShop: 13,000)


TEMPLATES: dict[str, PromptTemplate] = {}


def register_template(t: PromptTemplate) -> PromptTemplate:
    if t.template_id in TEMPLATES and TEMPLATES[t.template_id] != t:
        raise SpecError(f"template {t.template_id!r} is already defined differently; use a new id")
    TEMPLATES[t.template_id] = t
    return t


register_template(
    PromptTemplate(
        template_id="sokoban/v1",
        intro="You are an expert agent playing Sokoban on a grid.",
        rules=(
            "Symbols: # wall, _ floor, O target, X box, P player, \u221a box on target, "
            "S player on target. Push every box onto a target. You move one cell per action "
            "(up, down, left or right); walking into a box pushes it if the cell behind it is "
            "free. Boxes cannot be pulled."
        ),
        show_task=False,
    )
)
register_template(
    PromptTemplate(
        template_id="webshop/v1",
        intro="You are an expert autonomous agent shopping in the WebShop online store.",
        rules=(
            "Search for products, open them, choose the required options and buy the one that "
            "matches the instruction. Actions look like search[<your query>] or "
            "click[<a clickable on the page>]."
        ),
        max_chars=13_000,
    )
)
register_template(
    PromptTemplate(
        template_id="alfworld/v1",
        intro="You are an expert agent operating in the ALFRED embodied household environment.",
    )
)
register_template(
    PromptTemplate(
        template_id="textworld/v1",
        intro="You are an expert player of a TextWorld text adventure game.",
    )
)


def get_template(template_id: str) -> PromptTemplate:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise SpecError(f"unknown prompt template {template_id!r}; known: {sorted(TEMPLATES)}") from None


def _quote_actions(actions: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{a}'" for a in actions) + "]"


def render_prompt(
    template_id: str,
    *,
    task: str,
    observation: str,
    admissible_actions: Sequence[str] | None,
    history: Sequence[tuple[str, str]],
    step_count: int,
    history_length: int = 2,
) -> str:
    """Render one turn's prompt.

    history: (observation, action) pairs of the past steps, oldest first (only the last
    `history_length` are shown); step_count: steps taken so far in the episode."""
    t = get_template(template_id)
    head = [t.intro]
    if t.rules:
        head.append(t.rules)
    if t.show_task and task:
        head.append(f"Your task is to: {task}")
    tail = []
    if admissible_actions is not None:
        tail.append(f"Your admissible actions of the current situation are: {_quote_actions(admissible_actions)}.")
    tail.append(ANSWER_FORMAT)

    no_history = "\n".join(head + [f"Your current observation is:\n{observation}"] + tail)
    if history_length <= 0 or step_count == 0 or not history:
        return no_history
    shown = list(history)[-history_length:]
    first = step_count - len(shown) + 1
    lines = [
        f"[Observation {first + i}: '{obs}', Action {first + i}: '{act}']" for i, (obs, act) in enumerate(shown)
    ]
    middle = [
        f"Prior to this step, you have already taken {step_count} step(s). Below are the most recent "
        f"{len(shown)} observations and the corresponding actions you took:",
        *lines,
        f"You are now at step {step_count + 1} and your current observation is:\n{observation}",
    ]
    prompt = "\n".join(head + middle + tail)
    if t.max_chars is not None and len(prompt) > t.max_chars:
        return no_history
    return prompt
